"""The real API server behind `tests.faultproxy.FaultProxy`, for tests of gridshift's own
Kubernetes I/O (watches, status patches, Leases, ConfigMaps, scale, actuation).

`ProxiedApi` is what those tests drive: `client()` is a `kubernetes` ApiClient whose requests go
through the proxy (plain HTTP to it, TLS as admin from it to kube-apiserver), so a test sees
every request gridshift sent (`requests`) and can inject a failure into the next matching one
(`fail_next`) or switch the whole connection to a fault (`proxy.fault`). The set-up helpers
(`put_object`, `get_object`, `delete_object`) talk to the API server directly, so they are
never recorded and never failed. Each test gets its own namespace (`ns`).
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from tests.cluster.plane import KubePlane
from tests.faultproxy import FaultProxy, RecordedRequest

__all__ = ["ProxiedApi", "kubeconfig_for", "proxied_api"]

NODE: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "extender" / "node.json").read_text()
)


def kubeconfig_for(url: str) -> str:
    """A kubeconfig whose current context talks to `url` (the proxy: plain HTTP, no
    credentials; the proxy authenticates upstream)."""
    return (
        "apiVersion: v1\nkind: Config\nclusters:\n"
        f"- name: proxy\n  cluster:\n    server: {url}\n"
        "contexts:\n- name: proxy\n  context:\n    cluster: proxy\n    user: proxy\n"
        "current-context: proxy\nusers:\n- name: proxy\n  user: {}\n"
    )


def admin_ssl_context(plane: KubePlane) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(plane.ca_file))
    context.load_cert_chain(str(plane.workdir / "admin.crt"), str(plane.workdir / "admin.key"))
    return context


@dataclass
class ProxiedApi:
    plane: KubePlane
    proxy: FaultProxy
    ns: str
    nodes: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.proxy.url

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.proxy.requests

    def fail_next(self, *args: Any, **kwargs: Any) -> None:
        """`FaultProxy.fail_next`: the next matching request gets an injected answer."""
        self.proxy.fail_next(*args, **kwargs)

    def client(self) -> k8s.ApiClient:
        configuration = k8s.Configuration()
        configuration.host = self.proxy.url
        return k8s.ApiClient(configuration)

    def kubeconfig(self) -> str:
        return kubeconfig_for(self.proxy.url)

    def path(self, template: str) -> str:
        """`template` with `{ns}` filled in with this test's namespace."""
        return template.format(ns=self.ns)

    # -- set-up and inspection, straight to the API server (not through the proxy) ------
    def put_object(self, collection: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create `obj` in `collection`, or replace the one of that name; a `status` in it is
        then written through the status subresource (the API server drops it on create and
        update). Returns the object as stored."""
        collection = self.path(collection)
        name = obj["metadata"]["name"]
        body = {k: v for k, v in obj.items() if k != "status"}
        body["metadata"] = {
            k: v for k, v in obj["metadata"].items() if k not in ("resourceVersion", "uid")
        }
        with self.plane.http() as http:
            answer = http.post(collection, json=body)
            if answer.status_code == 409:
                current = http.get(f"{collection}/{name}")
                current.raise_for_status()
                body["metadata"]["resourceVersion"] = current.json()["metadata"]["resourceVersion"]
                answer = http.put(f"{collection}/{name}", json=body)
            answer.raise_for_status()
            if "status" in obj:
                answer = http.patch(
                    f"{collection}/{name}/status",
                    json={"status": obj["status"]},
                    headers={"Content-Type": "application/merge-patch+json"},
                )
                answer.raise_for_status()
            return dict(answer.json())

    def get_object(self, path: str) -> dict[str, Any] | None:
        with self.plane.http() as http:
            answer = http.get(self.path(path))
            if answer.status_code == 404:
                return None
            answer.raise_for_status()
            return dict(answer.json())

    def gpu_node(
        self, name: str, region: str, *, gpus: int = 8, labels: dict[str, str] | None = None
    ) -> None:
        """A GPU node as the kubelet and gridshift's agent leave it (region label, GPU
        capacity, the agent's energy annotation of tests/fixtures/extender/node.json); nodes
        are cluster-scoped, so it is deleted when the test ends."""
        self.plane.create_node(
            name,
            labels={
                "topology.kubernetes.io/region": region,
                "nvidia.com/gpu.present": "true",
                **(labels or {}),
            },
            capacity={"nvidia.com/gpu": str(gpus)},
        )
        self.nodes.append(name)
        annotations = {k: v for k, v in NODE["metadata"]["annotations"].items()}
        self.plane.core.patch_node(name, {"metadata": {"annotations": annotations}})

    def delete_object(self, path: str) -> None:
        with self.plane.http() as http:
            answer = http.delete(self.path(path))
            answer.raise_for_status()


@contextlib.contextmanager
def proxied_api(plane: KubePlane, namespace: str, **proxy_kwargs: Any) -> Iterator[ProxiedApi]:
    """A fresh namespace and a proxy in front of the API server, both gone on exit."""
    with (
        plane.namespace(namespace),
        FaultProxy.for_api_server(plane.server, admin_ssl_context(plane), **proxy_kwargs) as proxy,
    ):
        api = ProxiedApi(plane, proxy, namespace)
        try:
            yield api
        finally:
            for node in api.nodes:
                plane.delete_node(node)
