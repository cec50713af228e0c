"""A UK Carbon Intensity replay server on 127.0.0.1 (recorded fixtures, real sockets) for the
fault-injection tests: national and regional answers around `tests.unit.carbon.conftest.T0`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer

from tests.unit.carbon.conftest import ReplayServer, Reply, _Handler


@contextmanager
def uk_replay_server() -> Iterator[ReplayServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    server = ReplayServer(httpd)
    httpd.replay = server  # type: ignore[attr-defined]
    server.route("/intensity/", Reply.fixture("uk", "national_fw48h"))
    server.route("/regional/", Reply.fixture("uk", "regional_object"))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
