"""Platform health, checked and told the same way by an apply run and by ``reconcile verify``.

:func:`check` asks each platform's driver; a check that raises means the platform is down,
with the (redacted) reason. :func:`events` turns the answers into ``health_check`` events.
Recording them on ``sync_platforms`` is :func:`reconciler.store.placements.record_health`.
Callers: :mod:`reconciler.apply.admission` and :mod:`reconciler.apply.verify`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from reconciler.drivers.base import Driver
from reconciler.model import EventStatus, EventType, HealthStatus
from reconciler.redact import redact
from reconciler.store.events import EventRow

Health = dict[str, tuple[str, str]]  # platform code -> (status, detail)


def check(driver_of: Callable[[str], Driver], platforms: Iterable[str]) -> Health:
    """Each platform's health, in code order; a failing check is ``down`` with its reason."""
    health: Health = {}
    for platform in sorted(platforms):
        try:
            health[platform] = driver_of(platform).health_check()
        except Exception as exc:  # a broken check means down
            health[platform] = (HealthStatus.DOWN, redact(str(exc)))
    return health


def is_down(health: Health, platform: str) -> bool:
    """Whether the platform was found down (a platform not checked is not)."""
    return health.get(platform, (HealthStatus.HEALTHY, ""))[0] == HealthStatus.DOWN


def events(health: Health) -> list[EventRow]:
    """One ``health_check`` event per platform checked."""
    return [
        EventRow(
            EventType.HEALTH_CHECK,
            EventStatus.FAILED if status == HealthStatus.DOWN else EventStatus.SUCCESS,
            f"{platform} is {status}: {detail}",
            {"platform": platform},
        )
        for platform, (status, detail) in health.items()
    ]
