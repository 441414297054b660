"""Declarative media sync reconciler: manifests in, platform copies in sync, state in DuckDB."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("media-sync-reconciler")
except PackageNotFoundError:  # running from a source checkout that is not installed
    __version__ = "0.0.0+source"
