"""The base of every settings group: a frozen model that refuses unknown keys."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = [
    "Group",
    "check_http_url",
]


class Group(BaseModel):
    """A settings group (`prometheus`, `carbon`, ...): frozen, unknown keys refused."""

    # hide_input_in_errors: a raw ValidationError printed anywhere never shows a (secret) value;
    # config.errors renders the values itself, masked.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


def check_http_url(url: str) -> str:
    """A base URL's validator: http(s) only, no trailing slash."""
    if not url.startswith(("http://", "https://")) or len(url) < len("http://x"):
        raise ValueError(f"must be an http:// or https:// URL, got {url!r}")
    return url.rstrip("/")
