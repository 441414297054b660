"""YouTube's quota day: it ends at midnight Pacific time, which is 07:00 UTC under daylight
saving time and 08:00 UTC otherwise, on every machine, with or without a system zoneinfo."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime

import pytest

from reconciler.drivers.youtube_quota import quota_day


@pytest.mark.parametrize(
    ("now", "day", "reset"),
    [
        # summer (PDT, UTC-7): the day of 15 July ends at 07:00 UTC on the 16th
        (datetime(2026, 7, 16, 6, 59, tzinfo=UTC), date(2026, 7, 15), datetime(2026, 7, 16, 7)),
        (datetime(2026, 7, 16, 7, 0, tzinfo=UTC), date(2026, 7, 16), datetime(2026, 7, 17, 7)),
        # winter (PST, UTC-8): the day of 15 January ends at 08:00 UTC on the 16th
        (datetime(2026, 1, 16, 7, 59, tzinfo=UTC), date(2026, 1, 15), datetime(2026, 1, 16, 8)),
        (datetime(2026, 1, 16, 8, 0, tzinfo=UTC), date(2026, 1, 16), datetime(2026, 1, 17, 8)),
        # the day clocks go forward (8 March 2026) has 23 hours: it starts at 08:00 UTC and
        # ends at 07:00 UTC; the day they go back (1 November) has 25
        (datetime(2026, 3, 8, 8, 0, tzinfo=UTC), date(2026, 3, 8), datetime(2026, 3, 9, 7)),
        (datetime(2026, 11, 1, 7, 0, tzinfo=UTC), date(2026, 11, 1), datetime(2026, 11, 2, 8)),
    ],
)
def test_the_quota_day_ends_at_midnight_pacific_time(
    now: datetime, day: date, reset: datetime
) -> None:
    assert quota_day(now) == (day, reset)


def test_pacific_time_is_known_without_a_system_zoneinfo() -> None:
    """With no zoneinfo folder to search (PYTHONTZPATH points nowhere), the tzdata package
    still gives summer time: no fixed UTC-8 stands in for it."""
    env = {**os.environ, "PYTHONTZPATH": os.devnull + "-none"}
    code = (
        "from datetime import UTC, datetime\n"
        "from reconciler.drivers.youtube_quota import quota_day\n"
        "print(quota_day(datetime(2026, 7, 1, 12, tzinfo=UTC))[1].isoformat())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2026-07-02T07:00:00"
