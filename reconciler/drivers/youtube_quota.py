"""YouTube's daily API quota: units counted per quota day (midnight Pacific time) in what the
driver persists, and the deferral once they are spent.

:class:`DailyQuota` is used by :class:`reconciler.drivers.youtube.YouTubeDriver` before each
call that costs units (:meth:`DailyQuota.spend`) and when YouTube itself answers that the
quota is spent (:func:`says_spent`, then :meth:`DailyQuota.spent_out`). Without a state to
count in (a driver made without one) nothing is counted.

The quota day follows Pacific time with its daylight saving time (UTC-7 in summer, UTC-8 in
winter); the time zone comes from the ``tzdata`` package where the system has no zoneinfo
database, so it is never approximated with a fixed offset.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

import requests

from reconciler.drivers.base import Deferred
from reconciler.drivers.state import DriverState

DEFAULT_COSTS = {"upload": 1600, "update": 50, "list": 1, "delete": 50}
DEFAULT_DAILY_UNITS = 10_000
SPENT_REASONS = ("quotaExceeded", "dailyLimitExceeded")


PACIFIC = ZoneInfo("America/Los_Angeles")  # tzdata, a dependency, has it on every system


def quota_day(now: datetime) -> tuple[date, datetime]:
    """The quota day at the aware instant ``now``, and when the next one starts (naive UTC).

    The next day starts at the next midnight in Pacific time: 07:00 UTC under daylight saving
    time, 08:00 UTC otherwise."""
    local = now.astimezone(PACIFIC)
    following = local.date() + timedelta(days=1)
    midnight = datetime(following.year, following.month, following.day, tzinfo=PACIFIC)
    return local.date(), midnight.astimezone(UTC).replace(tzinfo=None)


class DailyQuota:
    """The units one platform may spend per quota day, and what each operation costs."""

    def __init__(self, platform: str, config: Mapping[str, Any]) -> None:
        self.platform = platform
        self.daily_units = int(config.get("quota_daily_units", DEFAULT_DAILY_UNITS))
        self.costs = {**DEFAULT_COSTS, **dict(config.get("quota_costs") or {})}

    @staticmethod
    def day() -> tuple[date, datetime]:
        """The quota day now, and when the next one starts (UTC)."""
        return quota_day(datetime.now(UTC))

    def spend(self, state: DriverState | None, operation: str) -> None:
        """Count ``operation``'s units; Deferred (nothing counted) when they would exceed
        what is left of the day's quota."""
        if state is None:
            return
        day, reset = self.day()
        cost = int(self.costs.get(operation, 1))
        taken, used = state.take(day, cost, self.daily_units)
        if not taken:
            raise Deferred(
                f"the daily API quota of {self.platform} is spent ({used} of "
                f"{self.daily_units} units used; {operation} costs {cost}); deferred until it "
                f"resets at {reset:%Y-%m-%d %H:%M} UTC",
                reset,
            )

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
