"""The package version, read from the installed metadata."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("gridshift")
except PackageNotFoundError:  # running from a checkout without install
    __version__ = "0.1.0+local"
