"""One gridshift listener, alone in its process, for `test_listener_attack.py`.

`python -m tests.benchmarks.listener_attack_server LISTENER CERT_DIR` serves, on
127.0.0.1 and a free port, with the production defaults of `ListenerLimits`:

* `metrics-api`: the External Metrics API over TLS (a test CA in CERT_DIR), anonymous
  allowed (the attack is anonymous, as in the issue);
* `extender`: the extender webhook (`create_app` on `platform.serving.build_server`);
* `status`: the scaler's status/dashboard app;
* `agent`: the GPU agent's metrics app;
* `keda`: the KEDA gRPC external scaler (plaintext).

It prints `READY <port>` and serves until stdin closes.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry

from forecasts.platform.listener import ThreadedServer, bind_socket
from forecasts.platform.listener import build_server as build_listener
from forecasts.time import FrozenClock
from tests.snapshots import TAKEN_AT, sample_holder


def _metrics_api(cert_dir: Path) -> tuple[int, object]:
    from scaler.apiauth import Authorizer, ReloadingTlsContext
    from scaler.metrics_api import ExternalMetricsApi, MetricsApiServer

    server = MetricsApiServer(
        ExternalMetricsApi(sample_holder(), clock=FrozenClock(TAKEN_AT)),
        host="127.0.0.1",
        port=0,
        authenticator=None,
        authorizer=Authorizer(allow_anonymous=True),
        tls=ReloadingTlsContext(cert_file=cert_dir / "tls.crt", key_file=cert_dir / "tls.key"),
    )
    server.start()
    return server.address[1], server


def _asgi(app: object) -> tuple[int, object]:
    server = ThreadedServer(
        build_listener(app, loop="uvloop"),  # type: ignore[arg-type]
        bind_socket("127.0.0.1", 0),
        name="attacked",
    )
    server.start()
    return server.address[1], server


def _extender() -> tuple[int, object]:
    from tests.integration.test_extender_http import app

    return _asgi(app())


def _status() -> tuple[int, object]:
    from scaler.status_api import create_status_app

    return _asgi(create_status_app(sample_holder(), registry=CollectorRegistry()))


def _agent() -> tuple[int, object]:
    from extender.agent import create_agent_app

    return _asgi(create_agent_app(CollectorRegistry()))


def _keda() -> tuple[int, object]:
    from scaler.keda import KedaExternalScaler, KedaScalerServer

    stop = threading.Event()
    scaler = KedaExternalScaler(sample_holder(), stream_poll_interval_seconds=1.0, stop=stop)
    server = KedaScalerServer(scaler, address="127.0.0.1:0", stop=stop)
    server.start()
    return server.port, server


def main() -> None:
    name, cert_dir = sys.argv[1], Path(sys.argv[2])
    starters = {
        "metrics-api": lambda: _metrics_api(cert_dir),
        "extender": _extender,
        "status": _status,
        "agent": _agent,
        "keda": _keda,
    }
    port, _server = starters[name]()
    print(f"READY {port}", flush=True)
    sys.stdin.read()  # serve until the benchmark closes our stdin


if __name__ == "__main__":
    main()
