"""A SyncRule's ``schedule_cron``: the text croniter is given, and why a value is unusable.

Used by :mod:`.crossrefs` (to check a rule) and :mod:`.build` (to store the expression the
schedule will read), so that both see the same text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from croniter import CroniterBadDateError, croniter

from reconciler.manifests.quoting import quote

CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
CRON_HORIZON_YEARS = 10  # a schedule must fire within this; croniter itself gives up at 50


def cron_text(value: Any) -> str | None:
    """A schedule_cron as croniter is given it: without surrounding blanks."""
    return value.strip() if isinstance(value, str) else None


def cron_error(expression: str, now: datetime | None = None) -> str | None:
    """Why a schedule_cron value is unusable, or None.

    Beyond its syntax, the expression must fire at least once within
    :data:`CRON_HORIZON_YEARS` of ``now``: '0 0 30 2 *' (February 30th) is well formed, but
    croniter raises CroniterBadDateError on it when the schedule is next computed.
    """
    text = cron_text(expression) or ""
    shown = quote(text, noun="expression")
    if text not in CRON_MACROS:
        if len(text.split()) != 5:
            return (
                f"{shown} is not a cron expression of five fields (minute hour "
                "day-of-month month day-of-week), such as '0 9 * * 1'"
            )
        if not croniter.is_valid(text):
            return f"{shown} is not a valid cron expression; for example '0 */6 * * *'"
    start = now if now is not None else datetime.now(UTC)
    try:
        croniter(text, start, max_years_between_matches=CRON_HORIZON_YEARS).get_next(datetime)
    except CroniterBadDateError:  # well-formed cron syntax, nothing else: safe to show whole
        return (
            f"'{text}' never fires: no time in the next {CRON_HORIZON_YEARS} years matches it "
            "(a day that the month does not have, such as February 30th?)"
        )
    except Exception:  # whatever else croniter raises, schedule.py would raise too
        return f"{shown} is not a valid cron expression; for example '0 */6 * * *'"
    return None
