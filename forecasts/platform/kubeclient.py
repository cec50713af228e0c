"""Bounded reads from the Kubernetes API server: the one ApiClient gridshift builds.

The kubernetes client reads whatever the API server (or whatever answers in its place)
sends: a LIST, a TokenReview or SubjectAccessReview answer is read whole into memory, gzip
decompressed without limit, and a body dripping a byte at a time keeps the call alive
however long, since urllib3's timeouts bound each socket read, not the call. A watch line
(one event) grows until its newline arrives.

`BoundedApiClient` wraps every response it returns (preloaded or not) so that:

* the body, after decompression, is read within `max_response_bytes`, else
  `KubeResponseTooLarge` (a gzip bomb is stopped at the cap: each read decompresses at most
  what is left of it);
* one watch event (a line of the stream) is within `max_event_bytes`, else
  `KubeResponseTooLarge`: an endless line cannot grow the watch's buffer;
* the whole call, from the request to the body's last byte, ends by its deadline, else
  `KubeDeadlineExceeded`: the call's `_request_timeout` (connect + read for a pair; the
  default when none) times the tries the client's retry policy allows. A read blocked past
  the deadline is cut by shutting the socket down, by one timer thread per client that runs
  while any read is in progress (a long watch does not hold a thread of its own).

Both errors are `ApiException`s (status 0, like the client's own transport failures), so
every caller's existing handling of a failed API call applies to them.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import urllib3
import urllib3.exceptions
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

__all__ = [
    "DEFAULT_DEADLINE_SECONDS",
    "DEFAULT_MAX_EVENT_BYTES",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "BoundedApiClient",
    "KubeDeadlineExceeded",
    "KubeResponseTooLarge",
]

#: A LIST page of 500 Nodes is a few MB; a whole unpaginated LIST of a large cluster's Nodes
#: tens of MB. Past this the answer is not one we can hold in the extender's 512 MiB.
DEFAULT_MAX_RESPONSE_BYTES = 128 * 1024 * 1024
#: One watch event holds one object; etcd refuses objects over 1.5 MiB.
DEFAULT_MAX_EVENT_BYTES = 8 * 1024 * 1024
#: A call made without `_request_timeout` (the client's default is none at all).
DEFAULT_DEADLINE_SECONDS = 60.0
_READ_BYTES = 64 * 1024


class KubeResponseTooLarge(ApiException):
    """A response body, or one watch event, over its byte cap once decompressed."""

    def __init__(self, reason: str) -> None:
        super().__init__(status=0, reason=reason)


class KubeDeadlineExceeded(ApiException):
    """The whole call, body included, outlived its deadline (a slow-dripping body)."""

    def __init__(self, reason: str) -> None:
        super().__init__(status=0, reason=reason)


def _tries(configuration: k8s.Configuration) -> int:
    """1 + the read retries of the client's urllib3 policy (a re-sent idempotent call)."""
    retries = getattr(configuration, "retries", None)
    if isinstance(retries, urllib3.Retry):
        read = retries.read if retries.read is not None else retries.total
        return 1 + max(0, int(read or 0))
    return 1


def _call_seconds(request_timeout: object, default: float) -> float:
    """The time one try may take, from the client's `_request_timeout`."""
    if isinstance(request_timeout, int | float) and not isinstance(request_timeout, bool):
        return float(request_timeout)
    if isinstance(request_timeout, tuple) and len(request_timeout) == 2:
        connect, read = request_timeout
        return float(connect or 0) + float(read or 0) or default
    return default


class _Cutoff:
    """Shuts one response's socket down when its deadline passes (`_Cutoffs` fires it),
    unless cancelled first: a blocked read then returns."""

    def __init__(self, response: Any, deadline: float) -> None:
        self.deadline = deadline
        self.fired = False
        self._response: Any = response
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self._response is None

    def fire(self) -> None:
        with self._lock:
            if self._response is None:
                return
            self.fired = True
            # ValueError/RuntimeError: already closed, or released to the pool
            with contextlib.suppress(ValueError, RuntimeError, OSError):
                self._response.shutdown()
            self._response = None

    def cancel(self) -> None:
        with self._lock:
            self._response = None


class _Cutoffs:
    """The deadlines of a client's reads in progress, watched by ONE timer thread that runs
    only while a read is in progress (none between calls): however many bodies and watch
    streams are being read at once, one thread, not one per read."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Cutoff]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    @property
    def watching(self) -> bool:
        """Whether the timer thread runs."""
        with self._cond:
            return self._thread is not None

    def add(self, response: Any, deadline: float) -> _Cutoff:
        cutoff = _Cutoff(response, deadline)
        with self._cond:
            heapq.heappush(self._heap, (deadline, next(self._seq), cutoff))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="kube-read-deadlines", daemon=True
                )
                self._thread.start()
            else:
                self._cond.notify()
        return cutoff

    def cancel(self, cutoff: _Cutoff) -> None:
        cutoff.cancel()
        with self._cond:
            self._cond.notify()  # the thread drops it and ends once nothing is left

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._thread = None
                    return
                wait_s = self._heap[0][0] - time.monotonic()
                if wait_s > 0:
                    self._cond.wait(wait_s)
                    continue
                heapq.heappop(self._heap)[2].fire()


class _BoundedResponse:
    """A urllib3 response whose body reads are bounded (see the module doc); everything
    else (status, headers, release_conn, close, ...) is the response's own."""

    def __init__(
        self,
        response: urllib3.BaseHTTPResponse,
        *,
        cutoffs: _Cutoffs,
        deadline: float,
        deadline_seconds: float,
        max_bytes: int,
        max_event_bytes: int,
    ) -> None:
        self._response = response
        self._cutoffs = cutoffs
        self._deadline = deadline
        self._deadline_s = deadline_seconds
        self._max_bytes = max_bytes
        self._max_event_bytes = max_event_bytes
        self._body: bytes | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._response, name)

    def _chunks(self, *, decode_content: bool) -> Iterator[bytes]:
        """Each network read's bytes (decompressed when asked, at most 64 KiB at once)
        until the body ends; past the deadline `KubeDeadlineExceeded`."""
        cutoff = self._cutoffs.add(self._response, self._deadline)
        try:
            while True:
                if time.monotonic() >= self._deadline:
                    raise self._too_slow()
                try:
                    chunk = self._response.read1(_READ_BYTES, decode_content=decode_content)
                except (urllib3.exceptions.HTTPError, OSError):
                    if cutoff.fired or time.monotonic() >= self._deadline:
                        raise self._too_slow() from None
                    raise
                if not chunk:
                    if cutoff.fired:
                        raise self._too_slow()
                    return
                yield chunk
        finally:
            self._cutoffs.cancel(cutoff)

    def _too_slow(self) -> KubeDeadlineExceeded:
        self._response.close()
        return KubeDeadlineExceeded(
            f"the API server's answer took longer than {self._deadline_s:g}s (body included)"
        )

    def _too_large(self, what: str, cap: int) -> KubeResponseTooLarge:
        self._response.close()
        return KubeResponseTooLarge(f"{what} over {cap} bytes (decompressed); reading stopped")

    @property
    def data(self) -> bytes:
        if self._body is None:
            body = bytearray()
            for chunk in self._chunks(decode_content=True):
                body += chunk
                if len(body) > self._max_bytes:
                    raise self._too_large("the API server's answer", self._max_bytes)
            self._body = bytes(body)
            self._response.release_conn()
        return self._body

    def read(self, amt: int | None = None, **_: Any) -> bytes:
        if amt is not None:
            raise NotImplementedError("bounded responses are read whole (.data) or streamed")
        return self.data

    def stream(self, amt: int | None = None, decode_content: bool | None = None) -> Iterator[bytes]:
        """The body as it arrives (a watch's event lines), each line within the event cap."""
        decode = bool(decode_content) if decode_content is not None else True
        since_newline = 0
        for chunk in self._chunks(decode_content=decode):
            end = chunk.rfind(b"\n")
            since_newline = since_newline + len(chunk) if end < 0 else len(chunk) - end - 1
            if since_newline > self._max_event_bytes:
                raise self._too_large("one watch event", self._max_event_bytes)
            yield chunk


class BoundedApiClient(k8s.ApiClient):
    """An `ApiClient` whose every response is bounded in bytes and time (module doc)."""

    def __init__(
        self,
        configuration: k8s.Configuration,
        *,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        default_deadline_seconds: float = DEFAULT_DEADLINE_SECONDS,
    ) -> None:
        super().__init__(configuration)
        self.max_response_bytes = max_response_bytes
        self.max_event_bytes = max_event_bytes
        self._default_s = default_deadline_seconds
        self._tries = _tries(configuration)
        self._cutoffs = _Cutoffs()

    @property
    def read_deadline_thread_running(self) -> bool:
        """Whether the one thread that cuts reads at their deadline runs (only while a read
        is in progress)."""
        return self._cutoffs.watching

    def call_api(  # type: ignore[no-untyped-def]
        self, method, url, header_params=None, body=None, post_params=None, _request_timeout=None
    ):
        started = time.monotonic()
        if _request_timeout is None:
            _request_timeout = self._default_s  # the client would wait forever
        deadline_s = _call_seconds(_request_timeout, self._default_s) * self._tries
        response_data = super().call_api(
            method, url, header_params, body, post_params, _request_timeout
        )
        response_data.response = _BoundedResponse(
            response_data.response,
            cutoffs=self._cutoffs,
            deadline=started + deadline_s,
            deadline_seconds=deadline_s,
            max_bytes=self.max_response_bytes,
            max_event_bytes=self.max_event_bytes,
        )
        return response_data
