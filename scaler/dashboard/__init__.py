"""The built-in dashboard: static HTML/JS/CSS packaged with the code, no CDN.

`load_dashboard_assets()` reads the packaged files once (at app creation), so the handlers
serve bytes from memory. The page polls `/status/history`, `/status` and `/status/extender`
and draws its charts with plain SVG (no third-party library).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Final

__all__ = ["ASSET_MEDIA_TYPES", "DashboardAssets", "load_dashboard_assets"]

ASSET_MEDIA_TYPES: Final = MappingProxyType(
    {
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".svg": "image/svg+xml",
    }
)


@dataclass(frozen=True, slots=True)
class DashboardAssets:
    """The page and its assets (name -> (bytes, media type))."""

    index_html: bytes
    assets: MappingProxyType[str, tuple[bytes, str]]

    def get(self, name: str) -> tuple[bytes, str] | None:
        return self.assets.get(name)


def load_dashboard_assets() -> DashboardAssets:
    root = resources.files(__name__)
    index = (root / "index.html").read_bytes()
    found: dict[str, tuple[bytes, str]] = {}
    for entry in (root / "assets").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        media_type = ASSET_MEDIA_TYPES.get(suffix)
        if media_type is not None and entry.is_file():
            found[entry.name] = (entry.read_bytes(), media_type)
    return DashboardAssets(index_html=index, assets=MappingProxyType(found))
