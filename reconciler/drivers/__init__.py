"""Platform drivers: how bytes reach each kind of platform.

:func:`driver_for` builds the driver a Platform names. The interface and the two error types
are in :mod:`.base`; each driver lives in its own module, imported only when a platform uses
it (boto3 costs time to import).
"""

from __future__ import annotations

from importlib import import_module

from reconciler.drivers.base import Driver, PermanentError
from reconciler.models import Platform

DRIVERS = {
    "local": ("reconciler.drivers.local", "LocalDriver"),
    "s3": ("reconciler.drivers.s3", "S3Driver"),
}


def driver_for(platform: Platform) -> Driver:
    try:
        module, name = DRIVERS[platform.driver]
    except KeyError:
        raise PermanentError(f"no driver named {platform.driver}") from None
    cls = getattr(import_module(module), name)
    return cls(platform)
