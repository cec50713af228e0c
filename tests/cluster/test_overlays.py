"""Every deploy overlay applied to the real API server with the plane's kubectl (v1.37.2,
kustomize v5), as deploy/README.md tells users to: `kubectl apply -k deploy/overlays/<name>`.

Aspects: a server-side dry run of each overlay exits 0 (every object passes the API server's
own validation and admission, CRDs and RBAC included) on the first try, before anything of it
exists; then the real apply exits 0, and re-applying it changes nothing (`unchanged` for every
object: the manifests are stable under the server's defaulting); the objects are there. The
overlays apply on a cluster without prometheus-operator wherever they render no
monitoring.coreos.com object; where one still renders, minimal CRDs for those kinds are
installed first and the test says so.
"""

from __future__ import annotations

import pytest
import yaml

from tests.cluster.install import DEPLOY, MONITORING_CRDS, SCALER_NAMESPACE, SCALER_SERVICE
from tests.cluster.plane import KubePlane

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

OVERLAYS = ("extender", "gpu-agent", "scaler-hpa", "scaler-keda")


def rendered(plane: KubePlane, overlay: str) -> list[dict[str, object]]:
    text = plane.kubectl("kustomize", str(DEPLOY / "overlays" / overlay)).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_applies_with_kubectl(plane: KubePlane, overlay: str) -> None:
    objects = rendered(plane, overlay)
    monitoring = [o for o in objects if str(o["apiVersion"]).startswith("monitoring.coreos.com")]
    if monitoring:
        # until deploy/ moves them into an optional component, the overlay needs the
        # operator's CRDs to apply at all (kubectl exits 1: no matches for kind)
        plane.kubectl("apply", "-f", str(MONITORING_CRDS))
        plane.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", "-f", str(MONITORING_CRDS)
        )
    if overlay.startswith("scaler"):
        # other tests replace the scaler's Service by an ExternalName one (loopback); start
        # from the shipped Service
        plane.kubectl(
            "-n", SCALER_NAMESPACE, "delete", "service", SCALER_SERVICE, "--ignore-not-found"
        )
    path = str(DEPLOY / "overlays" / overlay)
    dry = plane.kubectl("apply", "-k", path, "--dry-run=server")
    assert dry.returncode == 0
    assert "(server dry run)" in dry.stdout, dry.stdout
    applied = plane.kubectl("apply", "-k", path).stdout
    for obj in objects:
        meta = obj["metadata"]
        assert isinstance(meta, dict)
        assert f"/{meta['name']} " in applied, (obj["kind"], meta["name"], applied)
    again = plane.kubectl("apply", "-k", path).stdout.splitlines()
    assert again
    assert all(line.endswith(" unchanged") for line in again), again
    for obj in objects:
        meta = obj["metadata"]
        assert isinstance(meta, dict)
        scope = ["-n", str(meta["namespace"])] if "namespace" in meta else []
        kind = str(obj["kind"]).lower()
        group = str(obj["apiVersion"]).rpartition("/")[0]
        plane.kubectl("get", *scope, f"{kind}.{group}" if group else kind, str(meta["name"]))
    if overlay.startswith("scaler"):
        plane.kubectl(
            "-n", SCALER_NAMESPACE, "scale", "deployment/gridshift-scaler", "--replicas=0"
        )
