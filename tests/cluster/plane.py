"""A real Kubernetes control plane on loopback for the cluster test tier.

etcd, kube-apiserver (with the aggregator), kube-controller-manager (HPA, Deployment,
ReplicaSet, namespace, garbage collector, service-account controllers) and, on demand,
kube-scheduler: Kubernetes v1.37.2 built from the Go module proxy by `tests/kube/build.sh`
(`make kube-plane`) into `~/.cache/gridshift-kube/plane-<hash of go.mod+go.sum>/bin`. No
kubelet runs: Deployments get ReplicaSets and Pods, the scheduler binds Pods to Nodes created
through the API, and nothing ever starts a container.

What a test needs to know about such a plane (all seen on it):

* Loopback only. Endpoints refuse loopback addresses, so an APIService (or anything the
  aggregator proxies to) points at a Service of `type: ExternalName`, `externalName: localhost`
  (`external_name_service`); the aggregator dials `localhost:<service port>` and checks the
  serving certificate for `<service>.<namespace>.svc`.
* Nodes created through the API get the `node.kubernetes.io/not-ready:NoSchedule` taint:
  `create_node` removes it (and the node lifecycle controller is off, so no other taint comes).
* Pods bound to a node never terminate (no kubelet confirms it): `force_delete_pods`.
* Certificates (cluster CA, apiserver serving cert, admin client cert in `system:masters`,
  front-proxy CA and client cert, service-account key pair) are made per session in a temp dir;
  `ca` issues more (serving certs for gridshift's servers).
* `--use-service-account-credentials`: every controller acts as its own service account, so
  the HPA controller reads external metrics as `kube-system/horizontal-pod-autoscaler` and
  needs deploy/'s RBAC like on a real cluster.

`require_plane_binaries()` skips the test with how to build them where they are absent.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

__all__ = [
    "KUBE_DIR",
    "KubePlane",
    "ManagedProcess",
    "keda_bin_dir",
    "plane_bin_dir",
    "require_plane_binaries",
    "running_plane",
    "start_process",
    "wait_until",
]

KUBE_DIR = Path(__file__).resolve().parents[1] / "kube"
PLANE_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
BUILD_HINT = (
    "make kube-plane (tests/kube/build.sh: Go 1.26 and the Go module proxy; ~15 min cold on "
    "2 cores, seconds warm)"
)


def _cache_root() -> Path:
    return Path(os.environ.get("KUBE_PLANE_CACHE", Path.home() / ".cache" / "gridshift-kube"))


def _module_bin_dir(module: str) -> Path:
    """Where build.sh puts a module's binaries: keyed by the hash of its go.mod and go.sum."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update((KUBE_DIR / module / name).read_bytes())
    return _cache_root() / f"{module}-{digest.hexdigest()[:16]}" / "bin"


def plane_bin_dir() -> Path:
    return _module_bin_dir("plane")


def keda_bin_dir() -> Path:
    return _module_bin_dir("keda")


def require_plane_binaries() -> Path:
    """The plane's bin directory; skips the test where `make kube-plane` has not built it."""
    bin_dir = plane_bin_dir()
    missing = [b for b in PLANE_BINARIES if not (bin_dir / b).is_file()]
    if missing or not (bin_dir / ".complete").is_file():
        pytest.skip(
            f"real control plane not built in {bin_dir} ({', '.join(missing)}): {BUILD_HINT}"
        )
    return bin_dir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any], *, timeout_s: float, what: str, every_s: float = 0.25
) -> Any:
    """Poll `predicate` until it returns something truthy; API and transport errors count as
    not yet. Fails with the last value or error seen."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            last = predicate()
            if last:
                return last
        except (ApiException, httpx.HTTPError, OSError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s:g} s waiting for {what}; last: {last!r}"
            )
        time.sleep(every_s)


@dataclass
class ManagedProcess:
    """A plane component: its process and its log file (stdout and stderr)."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def check_alive(self) -> bool:
        """False while it runs (so `check_alive() or ready()` polls); raises once it exited."""
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n{self.tail()}")
        return False

    def stop(self, timeout_s: float = 15) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_process(
    name: str, argv: Sequence[str], workdir: Path, *, env: Mapping[str, str] | None = None
) -> ManagedProcess:
    """Start one component with its output in `workdir/<name>.log`."""
    log = workdir / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, cwd=workdir, env=env
        )
    return ManagedProcess(name, process, log)


def _kubeconfig(server: str, *, ca_file: Path, cert_file: Path, key_file: Path) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "plane",
                    "cluster": {"server": server, "certificate-authority": str(ca_file)},
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {"client-certificate": str(cert_file), "client-key": str(key_file)},
                }
            ],
            "contexts": [{"name": "plane", "context": {"cluster": "plane", "user": "admin"}}],
            "current-context": "plane",
        }
    )


@dataclass
class KubePlane:
    """A running plane: its URL, admin credentials and helpers over the real API."""

    server: str
    workdir: Path
    bin_dir: Path
    ca: trustme.CA
    ca_file: Path
    kubeconfig: Path
    front_proxy_ca_file: Path
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    start_seconds: float = 0.0
    _api: k8s.ApiClient | None = None

    # -- clients -------------------------------------------------------------------------
    # The typed API classes come back as Any: their models make every field Optional, and a
    # test reads them as the real API server filled them in.
    @property
    def api(self) -> k8s.ApiClient:
        if self._api is None:
            self._api = k8s_config.new_client_from_config(config_file=str(self.kubeconfig))
        return self._api

    @property
    def core(self) -> Any:
        return k8s.CoreV1Api(self.api)

    @property
    def apps(self) -> Any:
        return k8s.AppsV1Api(self.api)

    @property
    def custom(self) -> Any:
        return k8s.CustomObjectsApi(self.api)

    def http(self, **kwargs: Any) -> httpx.Client:
        """An httpx client on the API server with the admin client certificate."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(str(self.workdir / "admin.crt"), str(self.workdir / "admin.key"))
        return httpx.Client(
            base_url=self.server, verify=context, timeout=kwargs.pop("timeout", 10.0), **kwargs
        )

    def get(self, path: str) -> Any:
        """GET one API path as admin; the JSON body (raises on a non-2xx answer)."""
        with self.http() as http:
            answer = http.get(path)
            answer.raise_for_status()
            return answer.json()

    def kubectl(
        self, *args: str, input_text: str | None = None, check: bool = True, timeout_s: float = 120
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {done.returncode}:\n{done.stderr}{done.stdout}"
            )
        return done

    def apply(
        self, manifest: str | Mapping[str, Any] | Sequence[Mapping[str, Any]], *extra: str
    ) -> str:
        """`kubectl apply --server-side` of YAML text or objects; returns kubectl's output."""
        if not isinstance(manifest, str):
            docs = [manifest] if isinstance(manifest, Mapping) else list(manifest)
            manifest = yaml.safe_dump_all([dict(d) for d in docs])
        return self.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", "-", *extra, input_text=manifest
        ).stdout

    # -- certificates and identities ----------------------------------------------------
    def serving_cert(self, name: str, *hosts: str) -> tuple[Path, Path]:
        """A serving certificate from the cluster CA for `hosts`: (cert file, key file)."""
        leaf = self.ca.issue_cert(*hosts, common_name=hosts[0] if hosts else name)
        cert, key = self.workdir / f"{name}.crt", self.workdir / f"{name}.key"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        return cert, key

    def ca_bundle_b64(self) -> str:
        return base64.b64encode(self.ca_file.read_bytes()).decode()

    def service_account_kubeconfig(self, namespace: str, name: str, *, seconds: int = 3600) -> Path:
        """A kubeconfig authenticating as a service account (a TokenRequest token), so what
        runs with it gets exactly that account's RBAC, as in a pod."""
        token = self.core.create_namespaced_service_account_token(
            name,
            namespace,
            k8s.AuthenticationV1TokenRequest(
                spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
            ),
        ).status.token
        path = self.workdir / f"sa-{namespace}-{name}.kubeconfig"
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "plane",
                            "cluster": {
                                "server": self.server,
                                "certificate-authority": str(self.ca_file),
                            },
                        }
                    ],
                    "users": [{"name": name, "user": {"token": token}}],
                    "contexts": [
                        {
                            "name": "sa",
                            "context": {"cluster": "plane", "user": name, "namespace": namespace},
                        }
                    ],
                    "current-context": "sa",
                }
            )
        )
        return path

    # -- objects -------------------------------------------------------------------------
    def create_namespace(self, name: str) -> str:
        self.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
        wait_until(
            lambda: self.core.read_namespaced_service_account("default", name),
            timeout_s=60,
            what=f"the default service account in {name}",
        )
        return name

    @contextlib.contextmanager
    def namespace(self, name: str) -> Iterator[str]:
        """A namespace for the duration of a test (deleted on exit, not waited for)."""
        self.create_namespace(name)
        try:
            yield name
        finally:
            self.delete_namespace(name)

    def delete_namespace(self, name: str) -> None:
        """Force-delete its pods (no kubelet confirms) and delete it, not waiting: while an
        aggregated API (an APIService) is unavailable, the namespace controller cannot
        discover every resource and the namespace stays Terminating
        (NamespaceDeletionDiscoveryFailure), so tests never reuse a namespace name."""
        self.force_delete_pods(name)
        with contextlib.suppress(ApiException):
            self.core.delete_namespace(name)

    def force_delete_pods(self, namespace: str) -> None:
        for pod in self.core.list_namespaced_pod(namespace).items:
            with contextlib.suppress(ApiException):
                self.core.delete_namespaced_pod(
                    pod.metadata.name, namespace, grace_period_seconds=0
                )

    def create_node(
        self, name: str, *, labels: Mapping[str, str], capacity: Mapping[str, str] | None = None
    ) -> None:
        """A Node as a kubelet would register it (Ready, with capacity), minus the not-ready
        taint the API server puts on nodes without a Ready condition."""
        resources = {"cpu": "16", "memory": "64Gi", "pods": "110", **(capacity or {})}
        self.core.create_node(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}},
            }
        )
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.core.patch_node_status(
            name,
            {
                "status": {
                    "capacity": resources,
                    "allocatable": resources,
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "KubeletReady",
                            "message": "no kubelet: a test node",
                            "lastHeartbeatTime": now,
                            "lastTransitionTime": now,
                        }
                    ],
                }
            },
        )

        def untainted() -> bool:
            node = self.core.read_node(name)
            taints = node.spec.taints or []
            if not taints:
                return True
            self.core.patch_node(name, {"spec": {"taints": None}})
            return False

        wait_until(untainted, timeout_s=30, what=f"node {name} without taints")

    def delete_node(self, name: str) -> None:
        with contextlib.suppress(ApiException):
            self.core.delete_node(name)

    def external_name_service(self, namespace: str, name: str, *, port: int) -> None:
        """Replace Service `name` by one of type ExternalName -> localhost (what the
        aggregator can reach on loopback), with `port` as its port."""
        with contextlib.suppress(ApiException):
            self.core.delete_namespaced_service(name, namespace)
        wait_until(
            lambda: _absent(lambda: self.core.read_namespaced_service(name, namespace)),
            timeout_s=30,
            what=f"service {namespace}/{name} deleted",
        )
        self.core.create_namespaced_service(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "type": "ExternalName",
                    "externalName": "localhost",
                    "ports": [{"name": "https", "port": port}],
                },
            },
        )

    # -- kube-scheduler ------------------------------------------------------------------
    @contextlib.contextmanager
    def scheduler(
        self, config: Mapping[str, Any], *, name: str = "kube-scheduler"
    ) -> Iterator[ManagedProcess]:
        """kube-scheduler with `config` (a KubeSchedulerConfiguration; its clientConnection
        and leader election are set here), stopped on exit."""
        cfg = json.loads(json.dumps(config))
        cfg["clientConnection"] = {"kubeconfig": str(self.kubeconfig)}
        cfg["leaderElection"] = {"leaderElect": False}
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        proc = start_process(
            name,
            [str(self.bin_dir / "kube-scheduler"), f"--config={path}", "--secure-port=0", "-v=2"],
            self.workdir,
        )
        self.processes[name] = proc
        try:
            wait_until(
                lambda: proc.check_alive() or "Starting Kubernetes Scheduler" in proc.tail(200_000),
                timeout_s=60,
                what="kube-scheduler started",
            )
            yield proc
        finally:
            proc.stop()
            self.processes.pop(name, None)

    def check_alive(self) -> bool:
        """False while every component runs; raises with the log of one that exited."""
        return any(proc.check_alive() for proc in self.processes.values())


def _absent(read: Callable[[], Any]) -> bool:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def _write_certs(workdir: Path) -> dict[str, Any]:
    ca = trustme.CA(organization_name="gridshift test cluster CA")
    ca_file = workdir / "ca.crt"
    ca.cert_pem.write_to_path(str(ca_file))
    serving = ca.issue_cert(
        "127.0.0.1",
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        common_name="kube-apiserver",
    )
    serving.cert_chain_pems[0].write_to_path(str(workdir / "apiserver.crt"))
    serving.private_key_pem.write_to_path(str(workdir / "apiserver.key"))
    admin = ca.issue_cert("admin", common_name="admin", organization_name="system:masters")
    admin.cert_chain_pems[0].write_to_path(str(workdir / "admin.crt"))
    admin.private_key_pem.write_to_path(str(workdir / "admin.key"))
    front_proxy_ca = trustme.CA(organization_name="gridshift test front-proxy CA")
    front_proxy_ca.cert_pem.write_to_path(str(workdir / "front-proxy-ca.crt"))
    proxy = front_proxy_ca.issue_cert("front-proxy-client", common_name="front-proxy-client")
    proxy.cert_chain_pems[0].write_to_path(str(workdir / "front-proxy-client.crt"))
    proxy.private_key_pem.write_to_path(str(workdir / "front-proxy-client.key"))
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (workdir / "sa.key").write_bytes(
        sa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    (workdir / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return {"ca": ca, "ca_file": ca_file}


def _apiserver_args(bin_dir: Path, workdir: Path, *, etcd_url: str, port: int) -> list[str]:
    w = workdir
    return [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        # loopback cannot be an Endpoints address: no reconciler for the kubernetes Service
        "--endpoint-reconciler-type=none",
        "--service-cluster-ip-range=10.96.0.0/16",
        f"--tls-cert-file={w / 'apiserver.crt'}",
        f"--tls-private-key-file={w / 'apiserver.key'}",
        f"--client-ca-file={w / 'ca.crt'}",
        "--authorization-mode=RBAC",
        f"--service-account-key-file={w / 'sa.pub'}",
        f"--service-account-signing-key-file={w / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        # the aggregator: front-proxy client cert, and the request headers it sets
        f"--requestheader-client-ca-file={w / 'front-proxy-ca.crt'}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={w / 'front-proxy-client.crt'}",
        f"--proxy-client-key-file={w / 'front-proxy-client.key'}",
        "--profiling=false",
        "--v=1",
    ]


def _controller_manager_args(
    bin_dir: Path, workdir: Path, kubeconfig: Path, *, hpa_sync_seconds: int
) -> list[str]:
    return [
        str(bin_dir / "kube-controller-manager"),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        "--secure-port=0",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={workdir / 'sa.key'}",
        f"--root-ca-file={workdir / 'ca.crt'}",
        # no kubelets: the node lifecycle controller would taint every node unreachable
        "--controllers=*,-node-lifecycle-controller,-node-ipam-controller",
        f"--horizontal-pod-autoscaler-sync-period={hpa_sync_seconds}s",
        "--profiling=false",
        "--v=1",
    ]


@contextlib.contextmanager
def running_plane(
    workdir: Path, *, hpa_sync_seconds: int = 2, ready_timeout_s: float = 120
) -> Iterator[KubePlane]:
    """etcd + kube-apiserver + kube-controller-manager on 127.0.0.1; stopped on exit."""
    bin_dir = require_plane_binaries()
    workdir.mkdir(parents=True, exist_ok=True)
    certs = _write_certs(workdir)
    etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
    server = f"https://127.0.0.1:{api_port}"
    kubeconfig = workdir / "admin.kubeconfig"
    kubeconfig.write_text(
        _kubeconfig(
            server,
            ca_file=certs["ca_file"],
            cert_file=workdir / "admin.crt",
            key_file=workdir / "admin.key",
        )
    )
    plane = KubePlane(
        server=server,
        workdir=workdir,
        bin_dir=bin_dir,
        ca=certs["ca"],
        ca_file=certs["ca_file"],
        kubeconfig=kubeconfig,
        front_proxy_ca_file=workdir / "front-proxy-ca.crt",
    )
    started = time.monotonic()
    try:
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        plane.processes["etcd"] = start_process(
            "etcd",
            [
                str(bin_dir / "etcd"),
                f"--data-dir={workdir / 'etcd'}",
                f"--listen-client-url={etcd_url}",
                f"--listen-peer-url=http://127.0.0.1:{etcd_peer}",
            ],
            workdir,
        )
        wait_until(
            lambda: (
                plane.check_alive() or httpx.get(f"{etcd_url}/health", timeout=2).status_code == 200
            ),
            timeout_s=ready_timeout_s,
            what="etcd healthy",
        )
        plane.processes["kube-apiserver"] = start_process(
            "kube-apiserver",
            _apiserver_args(bin_dir, workdir, etcd_url=etcd_url, port=api_port),
            workdir,
        )
        with plane.http() as http:
            wait_until(
                lambda: plane.check_alive() or http.get("/readyz").status_code == 200,
                timeout_s=ready_timeout_s,
                what="kube-apiserver /readyz",
            )
        plane.processes["kube-controller-manager"] = start_process(
            "kube-controller-manager",
            _controller_manager_args(
                bin_dir, workdir, kubeconfig, hpa_sync_seconds=hpa_sync_seconds
            ),
            workdir,
        )
        # the service-account controllers are up once `default` has its service account
        wait_until(
            lambda: (
                plane.check_alive()
                or plane.core.read_namespaced_service_account("default", "default")
            ),
            timeout_s=ready_timeout_s,
            what="kube-controller-manager (the default service account)",
        )
        plane.start_seconds = time.monotonic() - started
        yield plane
    finally:
        for name in reversed(list(plane.processes)):
            plane.processes[name].stop()
        if plane._api is not None:
            plane._api.close()


def process_rss_bytes(pid: int) -> int:
    """Resident memory of one process (Linux /proc), 0 where it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0
