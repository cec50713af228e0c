"""One small robust layer over httpx, shared by every HTTP adapter.

- timeouts (from the injected `httpx.Client`) and a wall-clock deadline for the whole call,
  body included (`read_bounded`): a body dripping one byte a second cannot outlive it;
- a cap on response bytes after decompression (`read_bounded`): a gzip bomb, a huge or an
  endless body stops at the cap, and memory never holds much more than it;
- retries with jittered exponential backoff on connection errors, timeouts, 5xx and 429,
  honouring `Retry-After` (seconds or HTTP date), never on other 4xx;
- a TTL cache per (source, key) so free-tier quotas are not burned;
- a circuit breaker per source;
- secrets scrubbed from every message this layer produces, in every encoding a provider
  may echo (raw, URL-encoded, JSON-escaped, base64, an echoed `Authorization` header).
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import random
import re
import time
import urllib.parse
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
from cachetools import TTLCache

from forecasts.platform.errors import (
    SourceDataError,
    SourceDeadlineExceeded,
    SourceError,
    SourceRequestError,
    SourceResponseTooLarge,
    SourceUnavailable,
)
from forecasts.time import Clock

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "CircuitBreaker",
    "HttpSource",
    "RetryPolicy",
    "basic_credentials",
    "read_bounded",
    "redact",
    "secret_forms",
]

log = logging.getLogger(__name__)

_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})

DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
"""Far above any answer gridshift asks for (a week of 5-minute Prometheus points for many
series is a few MB), far below what hurts a pod with a 512 MiB-1 GiB limit."""

_ACCEPT_ENCODING = "gzip, deflate"  # the encodings `_Inflater` bounds


class _Inflater:
    """Decompresses a body piecewise without ever producing more than asked for."""

    def __init__(self, encoding: str) -> None:
        codings = [c.strip() for c in encoding.lower().split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            raise ValueError(f"unsupported Content-Encoding {encoding!r}")
        self._zlib = None
        if codings:
            # gzip: wbits 16+15; deflate: zlib-wrapped (auto-detected with 32+15)
            self._zlib = zlib.decompressobj(31 if "gzip" in codings[0] else 47)

    def feed(self, data: bytes, *, room: int) -> bytes:
        """Up to `room` + 1 bytes decompressed from `data` (one over: the caller sees the cap
        is crossed without inflating the rest)."""
        if self._zlib is None:
            return data
        return self._zlib.decompress(data, room + 1)

    def pending(self) -> bool:
        return self._zlib is not None and bool(self._zlib.unconsumed_tail)

    def more(self, *, room: int) -> bytes:
        assert self._zlib is not None
        return self._zlib.decompress(self._zlib.unconsumed_tail, room + 1)


def _deadline_from(timeout: httpx.Timeout) -> float:
    parts = [t for t in (timeout.connect, timeout.read, timeout.write, timeout.pool) if t]
    return max(parts) if parts else 60.0


def read_bounded(
    client: httpx.Client,
    request: httpx.Request,
    *,
    source: str,
    auth: httpx.Auth | tuple[str, str] | None = None,
    max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    deadline_seconds: float | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> tuple[httpx.Response, bytes]:
    """Send `request` and read its body, decompressed, within `max_bytes` and a wall-clock
    `deadline_seconds` for the whole call (default: the client's longest timeout).

    Raises `SourceResponseTooLarge` past the cap and `SourceDeadlineExceeded` past the
    deadline; transport errors propagate as httpx errors. Each network read waits at most
    what is left of the deadline (the read timeout is lowered as the deadline nears), so a
    body dripping a byte a second ends at the deadline, not at timeout x bytes."""
    deadline_s = (
        deadline_seconds if deadline_seconds is not None else _deadline_from(client.timeout)
    )
    deadline = monotonic() + deadline_s
    request.headers["Accept-Encoding"] = _ACCEPT_ENCODING
    timeouts = request.extensions.setdefault("timeout", client.timeout.as_dict())
    for phase in ("connect", "read", "write", "pool"):
        current = timeouts.get(phase)
        timeouts[phase] = deadline_s if current is None else min(current, deadline_s)
    response = client.send(request, stream=True, auth=auth)
    try:
        try:
            # an in-memory response (a transport that built it from bytes) is read and
            # decoded already: there is nothing left to bound but its size
            raw: Iterator[bytes] = iter((response.content,))
            encoding = ""
        except httpx.ResponseNotRead:
            raw = response.iter_raw()  # each network read as it comes: no chunker waits
            encoding = response.headers.get("content-encoding", "")
        try:
            inflater = _Inflater(encoding)
        except ValueError as exc:
            raise SourceDataError(str(exc), source=source, status=response.status_code) from None
        declared = response.headers.get("content-length", "")
        if not encoding and declared.isdigit() and int(declared) > max_bytes:
            raise _too_large(source, max_bytes, response.status_code)
        body = bytearray()
        while True:
            left = deadline - monotonic()
            if left <= 0:
                raise _too_slow(source, deadline_s, len(body), response.status_code)
            timeouts["read"] = left  # httpcore reads this dict before each network read
            try:
                chunk = next(raw)
            except StopIteration:
                break
            except httpx.ReadTimeout:
                if deadline - monotonic() <= 0.05:
                    raise _too_slow(source, deadline_s, len(body), response.status_code) from None
                raise
            body += inflater.feed(chunk, room=max_bytes - len(body))
            while len(body) <= max_bytes and inflater.pending():
                body += inflater.more(room=max_bytes - len(body))
            if len(body) > max_bytes:
                raise _too_large(source, max_bytes, response.status_code)
        return response, bytes(body)
    except zlib.error as exc:
        raise SourceDataError(
            f"body does not decompress: {exc}", source=source, status=response.status_code
        ) from None
    finally:
        response.close()


def _too_large(source: str, max_bytes: int, status: int) -> SourceResponseTooLarge:
    return SourceResponseTooLarge(
        f"response body over {max_bytes} bytes (after decompression); stopped reading",
        source=source,
        status=status,
    )


def _too_slow(source: str, seconds: float, got: int, status: int) -> SourceDeadlineExceeded:
    return SourceDeadlineExceeded(
        f"call not complete within its {seconds:g}s deadline ({got} body bytes so far)",
        source=source,
        status=status,
    )


_AUTHORIZATION_ECHO = re.compile(
    r"(?i)((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:(?:basic|bearer|token|digest)\s+)?)"
    r"[^\s\"',;}]+"
)
_BASIC_CREDENTIALS = re.compile(r"(?i)\b(basic\s+)([A-Za-z0-9+/]{4,}={0,2})")


def _hide_basic(match: re.Match[str]) -> str:
    try:
        decoded = base64.b64decode(match.group(2), validate=True)
    except ValueError:
        return match.group(0)
    return f"{match.group(1)}***" if b":" in decoded else match.group(0)


def secret_forms(secret: str) -> set[str]:
    """Every spelling of `secret` a provider may echo back: as is, URL-encoded (path and
    form style), JSON-escaped (with and without ASCII escapes) and base64."""
    forms = {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret, safe=""),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }
    b64 = base64.b64encode(secret.encode()).decode("ascii")
    forms |= {b64, b64.rstrip("=")}
    return {f for f in forms if f}


def basic_credentials(username: str, password: str) -> str:
    """The base64 `user:password` of an `Authorization: Basic` header, to scrub too."""
    return base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def redact(text: str, secrets: Sequence[str]) -> str:
    """Replace each non-empty secret in `text` with `***`, in every form `secret_forms`
    lists, and whatever credentials an echoed `Authorization` header or a `Basic
    <base64 of user:password>` carries, whoever's they are."""
    for s in secrets:
        if s:
            for form in sorted(secret_forms(s), key=len, reverse=True):
                text = text.replace(form, "***")
    text = _AUTHORIZATION_ECHO.sub(lambda m: f"{m.group(1)}***", text)
    return _BASIC_CREDENTIALS.sub(_hide_basic, text)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries for transient failures. `attempts` counts the first try."""

    attempts: int = 4
    base_delay_seconds: float = 0.5
    max_delay_seconds: float = 30.0
    max_retry_after_seconds: float = 120.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter exponential backoff for the given (1-based) failed attempt."""
        cap = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (attempt - 1))
        return rng.uniform(0, cap)


@dataclass(slots=True)
class CircuitBreaker:
    """Opens after `failure_threshold` consecutive failures; lets one probe through after
    `reset_timeout_seconds` (half-open); closes on a success."""

    failure_threshold: int = 5
    reset_timeout_seconds: float = 60.0
    monotonic: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self.monotonic() - self.opened_at >= self.reset_timeout_seconds:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        return self.state != "open"

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None

    def record_failure(self) -> None:
        self.failures += 1
        if self.failures >= self.failure_threshold or self.opened_at is not None:
            self.opened_at = self.monotonic()

    def seconds_until_retry(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.reset_timeout_seconds - (self.monotonic() - self.opened_at))


def _retry_after_seconds(value: str | None, clock: Clock) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - clock.now()).total_seconds())


@dataclass(slots=True)
class HttpSource:
    """A named HTTP dependency: one client, one breaker, one cache, one retry policy.

    `secrets` are scrubbed from every error message and log line this object produces.
    """

    name: str
    client: httpx.Client
    clock: Clock
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    cache_ttl_seconds: float = 300.0
    secrets: Sequence[str] = field(default=(), repr=False)
    #: decompressed response bytes read at most; past it `SourceResponseTooLarge`
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    #: the whole call, body included, per attempt (None: the client's longest timeout)
    deadline_seconds: float | None = None
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False)
    _cache: TTLCache[tuple[str, ...], Any] = field(init=False, repr=False)
    _secrets: list[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._cache = TTLCache(
            maxsize=1024, ttl=max(self.cache_ttl_seconds, 1e-9), timer=self.breaker.monotonic
        )
        self._secrets = [s for s in self.secrets if s]

    def add_secret(self, secret: str) -> None:
        """Scrub `secret` too from now on (e.g. a bearer token obtained at run time)."""
        if secret and secret not in self._secrets:
            self._secrets.append(secret)

    def _scrub(self, text: str) -> str:
        return redact(text, self._secrets)

    def clear_cache(self) -> None:
        self._cache.clear()

    def close(self) -> None:
        """Close the client and its connections (when its owner stops)."""
        self.client.close()

    def request_json(
        self,
        method: str,
        url: str,
        *,
        params: httpx.QueryParams | Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        cache_key: tuple[str, ...] | None = None,
        on_unauthorized: Callable[[], Mapping[str, str]] | None = None,
        allow_empty: bool = False,
    ) -> Any:
        """Send a request and decode its JSON body, with retries, breaker and cache.

        `on_unauthorized`, when given, is called once on a 401 to obtain fresh headers
        (token renewal) before one more try. Returns None for an empty body when
        `allow_empty` (e.g. HTTP 204). `form` sends an `application/x-www-form-urlencoded`
        body (long Prometheus queries go by POST this way).
        """
        if cache_key is not None and cache_key in self._cache:
            return self._cache[cache_key]
        if isinstance(auth, tuple):
            self.add_secret(auth[1])
            self.add_secret(basic_credentials(*auth))
        attempts = self._attempts_allowed()
        hdrs = dict(headers or {})
        renewed = False
        attempt = 0
        while True:
            attempt += 1
            sent = self._send(
                method, url, params=params, headers=hdrs, json_body=json_body, form=form, auth=auth
            )
            if isinstance(sent, SourceUnavailable):
                err, retry_after = sent, None
            else:
                response, body = sent
                status = response.status_code
                if status == 401 and on_unauthorized is not None and not renewed:
                    renewed = True
                    hdrs.update(on_unauthorized())
                    attempt -= 1
                    continue
                if 200 <= status < 300:
                    self.breaker.record_success()
                    value = self._decode(body, response, allow_empty=allow_empty)
                    if cache_key is not None:
                        self._cache[cache_key] = value
                    return value
                err, retry_after = self._answer_error(url, response, body)
            self._wait_to_retry(attempt, attempts, err, retry_after)

    def _attempts_allowed(self) -> int:
        """How many tries the breaker allows now: none while open (raises), one probe while
        half-open (its outcome closes or re-opens it), else the retry policy's."""
        state = self.breaker.state
        if state == "open":
            raise SourceUnavailable(
                f"circuit open after {self.breaker.failures} consecutive failures; "
                f"next try in {self.breaker.seconds_until_retry():.0f}s",
                source=self.name,
            )
        return 1 if state == "half-open" else self.retry.attempts

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: httpx.QueryParams | Mapping[str, Any] | list[tuple[str, Any]] | None,
        headers: Mapping[str, str],
        json_body: Any,
        form: Mapping[str, str] | None,
        auth: httpx.Auth | tuple[str, str] | None,
    ) -> tuple[httpx.Response, bytes] | SourceUnavailable:
        """One try: the response and its (bounded) body, or the transient failure to retry
        on; raises what is not transient (`SourceRequestError`, a bomb, a bad encoding)."""
        try:
            request = self.client.build_request(
                method,
                url,
                params=httpx.QueryParams(params) if params is not None else None,
                headers=headers,
                json=json_body,
                data=form,
            )
            return read_bounded(
                self.client,
                request,
                auth=auth,
                source=self.name,
                max_bytes=self.max_response_bytes,
                deadline_seconds=self.deadline_seconds,
            )
        except SourceDeadlineExceeded as exc:
            return exc
        except SourceError:
            self.breaker.record_failure()  # a bomb or a garbled encoding: not transient
            raise
        except httpx.TimeoutException as exc:
            return SourceUnavailable(
                f"timed out ({type(exc).__name__}) calling {self._where(url)}", source=self.name
            )
        except httpx.TransportError as exc:
            return SourceUnavailable(
                f"connection failed ({type(exc).__name__}: {self._scrub(str(exc))}) "
                f"calling {self._where(url)}",
                source=self.name,
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            # Not transient: a malformed URL, a body we cannot decode, redirect loops.
            raise SourceRequestError(
                f"request to {self._where(url)} failed ({type(exc).__name__}: "
                f"{self._scrub(str(exc))})",
                source=self.name,
            ) from None

    def _answer_error(
        self, url: str, response: httpx.Response, body: bytes
    ) -> tuple[SourceUnavailable, float | None]:
        """A non-2xx answer: raises `SourceRequestError` when retrying cannot help (the
        dependency is up, our request is wrong), else the error to retry on and its
        Retry-After in seconds."""
        status = response.status_code
        detail, error_type = self._error_detail(body)
        if status not in _RETRYABLE_STATUS:
            self.breaker.record_success()
            raise SourceRequestError(
                f"{self._where(url)} refused the request: {detail}",
                source=self.name,
                status=status,
                error_type=error_type,
            )
        retry_after = _retry_after_seconds(response.headers.get("retry-after"), self.clock)
        err = SourceUnavailable(
            f"{self._where(url)} answered {status}: {detail}",
            source=self.name,
            status=status,
            retry_after_seconds=retry_after,
            error_type=error_type,
        )
        return err, retry_after

    def _wait_to_retry(
        self, attempt: int, attempts: int, err: SourceUnavailable, retry_after: float | None
    ) -> None:
        """Sleep before the next try (backoff, at least Retry-After); raises `err` (and
        counts a breaker failure) when the tries are spent or Retry-After is too long."""
        if attempt >= attempts:
            self.breaker.record_failure()
            raise err
        delay = self.retry.delay(attempt, self.rng)
        if retry_after is not None:
            if retry_after > self.retry.max_retry_after_seconds:
                self.breaker.record_failure()
                raise err
            delay = max(delay, retry_after)
        log.info("%s: retrying in %.2fs after: %s", self.name, delay, err)
        self.sleep(delay)

    def get_json(self, url: str, **kwargs: Any) -> Any:
        return self.request_json("GET", url, **kwargs)

    # ------------------------------------------------------------------ helpers
    def _where(self, url: str) -> str:
        # Path only: query strings may carry tokens or personal data.
        base = str(self.client.base_url).rstrip("/")
        path = url.split("?", 1)[0]
        return self._scrub(path if path.startswith("http") else f"{base}/{path.lstrip('/')}")

    def _decode(self, body: bytes, response: httpx.Response, *, allow_empty: bool) -> Any:
        if not body.strip():
            if allow_empty:
                return None
            raise SourceDataError(
                f"empty body from {self._where(str(response.request.url))}",
                source=self.name,
                status=response.status_code,
            )
        try:
            return msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            ctype = response.headers.get("content-type", "?")
            kind = "an HTML page" if b"<html" in body[:512].lower() else "invalid JSON"
            raise SourceDataError(
                f"expected JSON but got {kind} (content-type {ctype}, {len(body)} bytes): {exc}",
                source=self.name,
                status=response.status_code,
            ) from None

    def _error_detail(self, body: bytes) -> tuple[str, str | None]:
        """A short scrubbed description of an error body, and its `errorType` if any."""
        text = body[:2000].decode("utf-8", "replace")
        try:
            data = msgspec.json.decode(body)
        except msgspec.DecodeError:
            snippet = " ".join(text.split())[:200]
            return self._scrub(snippet or "(empty body)"), None
        parts: list[str] = []
        error_type: str | None = None
        if isinstance(data, dict):
            kind = data.get("errorType")
            if isinstance(kind, str) and kind:
                error_type = kind
                parts.append(kind)
            for key in ("error", "message", "msg", "title", "detail", "reason"):
                val = data.get(key)
                if isinstance(val, dict):
                    val = val.get("message") or val.get("code")
                if val:
                    parts.append(str(val))
        detail = "; ".join(parts) if parts else " ".join(text.split())[:200]
        return self._scrub(detail), error_type
