"""Platform drivers: how bytes reach each kind of platform.

:func:`driver_for` builds the driver a Platform names. The interface and the two error types
are in :mod:`.base`; each driver lives in its own module, imported only when a platform uses
it (boto3 costs time to import).
"""

from __future__ import annotations

from importlib import import_module

from reconciler.drivers.base import Driver, PermanentError
from reconciler.model import Platform
from reconciler.store.db import StateStore

DRIVERS = {
    "local": ("reconciler.drivers.local", "LocalDriver"),
    "s3": ("reconciler.drivers.s3", "S3Driver"),
    "http": ("reconciler.drivers.http", "HttpDriver"),
    "youtube": ("reconciler.drivers.youtube", "YouTubeDriver"),
    "vimeo": ("reconciler.drivers.vimeo", "VimeoDriver"),
}


def driver_for(platform: Platform, store: StateStore | None = None) -> Driver:
    """The driver of ``platform``; with ``store``, attached to its place in the state file
    (upload sessions, remote ids, quota)."""
    try:
        module, name = DRIVERS[platform.driver]
    except KeyError:
        raise PermanentError(f"no driver named {platform.driver}") from None
    driver = getattr(import_module(module), name)(platform)
    if store is not None:
        from reconciler.drivers.state import DriverState

        driver.attach(DriverState(store, platform.code))
    return driver
