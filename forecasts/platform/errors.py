"""The adapters' error tree. Adapters never leak raw httpx/ApiException errors.

SourceError
 +-- SourceUnavailable   transient: timeout, connection, 5xx, 429, circuit open (retry later)
 |    +-- SourceDeadlineExceeded  the whole call (body included) outlived its deadline
 +-- SourceRequestError  the request itself is refused: 400/401/403/404/422 (fix config)
 +-- SourceDataError     the answer is unusable: bad JSON, HTML page, wrong unit, empty
      +-- SourceResponseTooLarge  the body, once decompressed, is over the byte cap
"""

from __future__ import annotations

__all__ = [
    "SourceDataError",
    "SourceDeadlineExceeded",
    "SourceError",
    "SourceRequestError",
    "SourceResponseTooLarge",
    "SourceUnavailable",
]


class SourceError(Exception):
    """Base of adapter errors. `source` names the adapter; messages never carry secrets."""

    def __init__(
        self,
        message: str,
        *,
        source: str,
        status: int | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.source = source
        self.status = status
        #: The source's own machine-readable error kind when it sent one (Prometheus'
        #: `errorType`: bad_data, execution, timeout, ...).
        self.error_type = error_type

    def __str__(self) -> str:
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{self.source}: {self.args[0]}{status}"


class SourceUnavailable(SourceError):
    """The source could not be reached or is overloaded; retrying later may work."""

    def __init__(
        self,
        message: str,
        *,
        source: str,
        status: int | None = None,
        retry_after_seconds: float | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message, source=source, status=status, error_type=error_type)
        self.retry_after_seconds = retry_after_seconds


class SourceRequestError(SourceError):
    """The source refused the request (auth, plan, unknown zone, bad parameters)."""


class SourceDataError(SourceError):
    """The source answered, but not with data we can trust."""


class SourceDeadlineExceeded(SourceUnavailable):
    """The whole call, body included, took longer than its deadline (a slow-dripping body)."""


class SourceResponseTooLarge(SourceDataError):
    """The response body, after decompression, is over the byte cap (a huge body, a
    decompression bomb, an endless chunked stream): reading stopped at the cap."""
