"""YouTube's daily API quota: units counted per quota day (midnight Pacific time) in what the
driver persists, and the deferral once they are spent.

:class:`DailyQuota` is used by :class:`reconciler.drivers.youtube.YouTubeDriver` before each
call that costs units (:meth:`DailyQuota.spend`) and when YouTube itself answers that the
quota is spent (:func:`says_spent`, then :meth:`DailyQuota.spent_out`). Without a state to
count in (a driver made without one) nothing is counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests

from reconciler.drivers.base import Deferred
from reconciler.drivers.state import DriverState

DEFAULT_COSTS = {"upload": 1600, "update": 50, "list": 1, "delete": 50}
DEFAULT_DAILY_UNITS = 10_000
SPENT_REASONS = ("quotaExceeded", "dailyLimitExceeded")


def _pacific() -> tzinfo:
    try:
        return ZoneInfo("America/Los_Angeles")
    except ZoneInfoNotFoundError:  # no time zone data: Pacific standard time
        return timezone(timedelta(hours=-8))


class DailyQuota:
    """The units one platform may spend per quota day, and what each operation costs."""

    def __init__(self, platform: str, config: Mapping[str, Any]) -> None:
        self.platform = platform
        self.daily_units = int(config.get("quota_daily_units", DEFAULT_DAILY_UNITS))
        self.costs = {**DEFAULT_COSTS, **dict(config.get("quota_costs") or {})}

    @staticmethod
    def day() -> tuple[date, datetime]:
        """The quota day now, and when the next one starts (UTC)."""
        local = datetime.now(_pacific())
        midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return local.date(), midnight.astimezone(UTC).replace(tzinfo=None)

    def spend(self, state: DriverState | None, operation: str) -> None:
        """Count ``operation``'s units; Deferred (nothing counted) when they would exceed
        what is left of the day's quota."""
        if state is None:
            return
        day, reset = self.day()
        used, exhausted = state.quota(day)
        cost = int(self.costs.get(operation, 1))
        if exhausted or used + cost > self.daily_units:
            raise Deferred(
                f"the daily API quota of {self.platform} is spent ({used} of "
                f"{self.daily_units} units used; {operation} costs {cost}); deferred until it "
                f"resets at {reset:%Y-%m-%d %H:%M} UTC",
                reset,
            )
        state.spend(day, cost)

    def spent_out(self, state: DriverState | None) -> NoReturn:
        """YouTube said the quota is spent: recorded so, and Deferred until it resets."""
        day, reset = self.day()
        if state is not None:
            state.spend(day, 0, exhausted=True)
        raise Deferred(
            f"YouTube says the daily quota of {self.platform} is spent; deferred until "
            f"it resets at {reset:%Y-%m-%d %H:%M} UTC",
            reset,
        )


def says_spent(response: requests.Response) -> bool:
    """Whether a 403 or 429 answer gives a spent quota as its reason."""
    if response.status_code not in (403, 429):
        return False
    try:
        errors = (response.json().get("error") or {}).get("errors") or []
    except (ValueError, AttributeError):
        return False
    return any(e.get("reason") in SPENT_REASONS for e in errors)
