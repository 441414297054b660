"""Platform drivers: how bytes reach each kind of platform.

:func:`driver_for` builds the driver a Platform names. The interface and the two error types
are in :mod:`.base`; each driver lives in its own module, imported only when a platform uses
it (boto3 costs time to import). What a driver persists (upload sessions, remote ids,
quota) comes through the :class:`~reconciler.drivers.state.SessionRecords` its caller passes
in; drivers never import the store. Apply, verify and recovery call :func:`driver_for`.
"""

from __future__ import annotations

from importlib import import_module

from reconciler.drivers.base import Driver, PermanentError
from reconciler.drivers.state import DriverState, SessionRecords
from reconciler.model import Platform

DRIVERS = {
    "local": ("reconciler.drivers.local", "LocalDriver"),
    "s3": ("reconciler.drivers.s3", "S3Driver"),
    "http": ("reconciler.drivers.http", "HttpDriver"),
    "youtube": ("reconciler.drivers.youtube", "YouTubeDriver"),
    "vimeo": ("reconciler.drivers.vimeo", "VimeoDriver"),
}


def driver_for(platform: Platform, records: SessionRecords | None = None) -> Driver:
    """The driver of ``platform``; with ``records``, attached to what it persists there
    (upload sessions, remote ids, quota)."""
    try:
        module, name = DRIVERS[platform.driver]
    except KeyError:
        raise PermanentError(f"no driver named {platform.driver}") from None
    driver = getattr(import_module(module), name)(platform)
    if records is not None:
        driver.attach(DriverState(records, platform.code))
    return driver
