"""Every deploy overlay applied to the real API server with the plane's kubectl (v1.37.2,
kustomize v5), as deploy/README.md tells users to: `kubectl apply -k deploy/overlays/<name>`.

Aspects: a server-side dry run of each overlay exits 0 (every object passes the API server's
own validation and admission, CRDs and RBAC included) on the first try, before anything of it
exists (its Namespace applied first: a dry run cannot create the namespace the rest goes
into); then the real apply exits 0 and every object is there; re-applying it changes nothing
(no object gets a new resourceVersion: the manifests are stable under the server's
defaulting). The
overlays apply on a cluster without prometheus-operator wherever they render no
monitoring.coreos.com object; where one still renders, minimal CRDs for those kinds are
installed first and the test says so.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.cluster.install import DEPLOY, MONITORING_CRDS, SCALER_NAMESPACE, SCALER_SERVICE
from tests.cluster.plane import KubePlane

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

OVERLAYS = ("extender", "gpu-agent", "scaler-hpa", "scaler-keda", "scaler-sharded")


def rendered(plane: KubePlane, overlay: str) -> list[dict[str, object]]:
    text = plane.kubectl("kustomize", str(DEPLOY / "overlays" / overlay)).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def versions(plane: KubePlane, path: str) -> dict[tuple[str, str, str], str]:
    """(kind, namespace, name) -> resourceVersion of every object of the overlay."""
    listed = json.loads(plane.kubectl("get", "-k", path, "-o", "json").stdout)
    return {
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o["metadata"][
            "resourceVersion"
        ]
        for o in listed["items"]
    }


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
    # a server-side dry run cannot create the namespace its other objects go into (each
    # fails NotFound): like `kubectl create namespace` before a first install, the
    # overlay's Namespace objects are applied first
    namespaces = [o for o in objects if o["kind"] == "Namespace"]
    if namespaces:
        plane.apply(namespaces)
    dry = plane.kubectl("apply", "-k", path, "--dry-run=server")
    assert dry.returncode == 0
    assert "(server dry run)" in dry.stdout, dry.stdout
    applied = plane.kubectl("apply", "-k", path).stdout
    for obj in objects:
        meta = obj["metadata"]
        assert isinstance(meta, dict)
        assert f"/{meta['name']} " in applied, (obj["kind"], meta["name"], applied)
    # re-applying changes nothing: no object gets a new resourceVersion (kubectl still
    # says "configured" for PodDisruptionBudgets: spec.selector has patch strategy
    # "replace", so its patch always carries the selector, and the server finds no change)
    before = versions(plane, path)
    assert len(before) == len(objects)
    plane.kubectl("apply", "-k", path)
    assert versions(plane, path) == before
    if overlay.startswith("scaler"):
        plane.kubectl(
            "-n", SCALER_NAMESPACE, "scale", "deployment/gridshift-scaler", "--replicas=0"
        )
