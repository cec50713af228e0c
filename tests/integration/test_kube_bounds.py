"""The Kubernetes client's answers are bounded (`forecasts.platform.kubeclient`).

Through the production client (`config.wiring.kube_api_client`), against
`tests.faultproxy.FaultProxy` answering in the API server's place on loopback:

* a LIST whose body is over the byte cap, a gzip bomb, an endless chunked body: a
  `KubeResponseTooLarge` (an `ApiException`) at the cap, fast, not the whole body in memory;
* a body dripping a byte every 50 ms: `KubeDeadlineExceeded` at the call's deadline (its
  timeout x the tries the retry policy allows), not after the whole drip;
* a watch whose line never ends: `KubeResponseTooLarge` at the event cap; the reflector
  counts it and relists, its thread alive;
* five dripping bodies read at once: one timer thread cuts them all (not one per read,
  which a long watch held for its whole life), each still at its own deadline, and the
  thread ends when no read is in progress;
* a TokenReview answered with an oversized body fails as an API error;
* through the same proxy in `PASS`, an ordinary LIST of the API-server stand-in
  (`tests.apiserver.FakeApiServer`) reads as before, preloaded or not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from config.wiring import kube_api_client
from forecasts.platform.kubeclient import (
    BoundedApiClient,
    KubeDeadlineExceeded,
    KubeResponseTooLarge,
)
from forecasts.platform.reflector import Reflector
from scaler.kube import DelegatedTokenReviewer
from tests.apiserver import FakeApiServer
from tests.faultproxy import Fault, FaultProxy

pytestmark = pytest.mark.integration

CAP = 1024 * 1024


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    with FakeApiServer() as api:
        host, port = api.url.removeprefix("http://").rsplit(":", 1)
        with FaultProxy(host, int(port), endless_seconds=20.0) as running:
            yield running


def client(proxy: FaultProxy) -> BoundedApiClient:
    configuration = k8s.Configuration()
    configuration.host = proxy.url
    api = kube_api_client(configuration)
    assert isinstance(api, BoundedApiClient)
    api.max_response_bytes = CAP
    api.max_event_bytes = CAP
    return api


@pytest.mark.parametrize("fault", [Fault.OVERSIZED, Fault.GZIP_BOMB, Fault.ENDLESS])
def test_a_list_over_the_cap_is_refused_at_the_cap(proxy: FaultProxy, fault: Fault) -> None:
    proxy.fault = fault
    started = time.monotonic()
    with pytest.raises(KubeResponseTooLarge, match=f"over {CAP} bytes"):
        k8s.CoreV1Api(client(proxy)).list_node(_request_timeout=10)
    assert time.monotonic() - started < 5.0


def test_a_dripping_body_ends_at_the_call_deadline(proxy: FaultProxy) -> None:
    proxy.fault = Fault.DRIP  # 1,000 bytes at 50 ms each: 50 s
    started = time.monotonic()
    with pytest.raises(KubeDeadlineExceeded, match="longer than 1s"):
        # a 0.5 s timeout, tried twice (kube_api_client re-sends after a read error once)
        k8s.CoreV1Api(client(proxy)).list_node(_request_timeout=0.5)
    assert time.monotonic() - started < 2.5


def test_reads_in_progress_share_one_deadline_thread(proxy: FaultProxy) -> None:
    proxy.fault = Fault.DRIP  # each body 50 s long at a byte per 50 ms
    bounded = client(proxy)
    api = k8s.CoreV1Api(bounded)
    threads_before = threading.active_count()
    started = time.monotonic()
    streams = []
    for _ in range(5):
        # 1 s and 2 tries: each body is cut at 2 s, its first byte read now
        answer: Any = api.list_node(_preload_content=False, _request_timeout=1.0)
        stream = answer.stream()
        assert next(stream) == b"{"
        streams.append(stream)
    assert threading.active_count() - threads_before == 1, "one timer thread for five reads"
    assert bounded.read_deadline_thread_running
    for stream in streams:
        with pytest.raises(KubeDeadlineExceeded, match="longer than 2s"):
            for _chunk in stream:
                pass
    assert time.monotonic() - started < 4.5
    deadline = time.monotonic() + 2
    while bounded.read_deadline_thread_running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not bounded.read_deadline_thread_running, "no thread between calls"


class _Store:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def replace_all(self, objects: Any) -> None:
        self.seen.append(("list", len(objects)))

    def apply(self, event_type: str, obj: Any) -> None:
        self.seen.append((event_type, obj))


def test_an_endless_watch_line_is_refused_and_the_reflector_relists(proxy: FaultProxy) -> None:
    api = k8s.CoreV1Api(client(proxy))
    errors: list[str] = []
    reflector = Reflector(
        api.list_node,
        _Store(),
        name="nodes",
        log=logging.getLogger("test"),
        request_timeout_seconds=5.0,
        retry_seconds=0.2,
        on_error=errors.append,
    )
    reflector.list_once()
    proxy.fault = Fault.ENDLESS
    with pytest.raises(KubeResponseTooLarge, match="one watch event over"):
        reflector.watch_once()
    stop = threading.Event()
    thread = threading.Thread(target=reflector.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not errors and time.monotonic() < deadline:
        time.sleep(0.02)
    proxy.fault = Fault.PASS
    relists = reflector.relists
    deadline = time.monotonic() + 5
    while reflector.relists == relists and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    reflector.stop()
    thread.join(timeout=10)
    assert errors[:1] == ["api"]
    assert reflector.relists > relists  # listed again once the stream was sane
    assert not thread.is_alive()


def test_an_oversized_token_review_answer_fails_as_an_api_error(proxy: FaultProxy) -> None:
    proxy.fault = Fault.OVERSIZED
    reviewer = DelegatedTokenReviewer(client(proxy), request_timeout_seconds=5.0)
    with pytest.raises(ApiException) as failed:
        reviewer.review("token")
    assert isinstance(failed.value, KubeResponseTooLarge)


def test_ordinary_answers_read_as_before(proxy: FaultProxy) -> None:
    api = k8s.CoreV1Api(client(proxy))
    nodes = api.list_node(_request_timeout=5)
    assert nodes.items == []
    raw: Any = api.list_node(_preload_content=False, _request_timeout=5)
    assert b'"items"' in raw.data
