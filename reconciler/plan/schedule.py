"""Rule schedules: when a rule's waiting changes may run.

A rule with ``schedule_cron`` batches the changes to copies it has already made (updates,
metadata updates, deletes): they run when the schedule comes due, that is when a cron
occurrence has passed since the rule last ran (a rule that never ran is due at once). New
copies (creates) go out on change, so a new asset reaches its platforms without waiting.
A rule with ``auto_sync: false`` never runs on its own: only ``reconcile --rule CODE``
runs it. A re-sync that a person asked for (``conflicts resolve --use source``) does not
wait for the schedule, but it does wait for ``--rule`` when the rule has ``auto_sync: false``.
Cron expressions are parsed by croniter.

Used by the planner (:func:`waiting_reason`, through
:func:`reconciler.plan.planner.with_schedules`, marks each change that waits) and by apply
(:func:`timing` and :func:`next_occurrence`: after a run, apply resets the clock of each due
scheduled rule that ran and records when it runs next, for ``reconcile status``). Apply
also decides, from the ``waiting`` mark and ``--rule``, which changes run now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from croniter import croniter

from reconciler.model import ActionKind


class Scheduled(Protocol):
    """What a schedule decision reads of a rule (a SyncRule, or a reused plan's copy)."""

    @property
    def code(self) -> str: ...
    @property
    def auto_sync(self) -> bool: ...
    @property
    def schedule_cron(self) -> str | None: ...


@dataclass(frozen=True)
class RuleTiming:
    """A rule's schedule settings alone, as a reused plan keeps them."""

    code: str
    auto_sync: bool
    schedule_cron: str | None


# creates are never held back
GATED = frozenset({ActionKind.UPDATE, ActionKind.UPDATE_METADATA, ActionKind.DELETE})


@dataclass(frozen=True)
class Timing:
    due: bool
    next_run: datetime | None  # naive UTC; None when due now or unscheduled


def next_occurrence(cron: str, after: datetime) -> datetime:
    """The first time the cron expression fires strictly after ``after`` (naive UTC)."""
    start = after.replace(tzinfo=UTC)
    fired = croniter(cron, start).get_next(datetime)
    return fired.astimezone(UTC).replace(tzinfo=None)


def timing(rule: Scheduled, last_run: datetime | None, now: datetime) -> Timing:
    if not rule.schedule_cron:
        return Timing(True, None)
    if last_run is None:
        return Timing(True, None)
    upcoming = next_occurrence(rule.schedule_cron, last_run)
    return Timing(upcoming <= now, None if upcoming <= now else upcoming)


def waiting_reason(
    action_kind: str,
    rule: Scheduled | None,
    last_run: datetime | None,
    now: datetime,
    forced_rule: str | None,
    requested: bool = False,
) -> tuple[str | None, datetime | None]:
    """Why a change waits instead of running now, and until when; (None, None) to run.

    ``requested``: a person asked for this copy to be re-synced; that wins over the schedule.
    """
    if rule is None or forced_rule == rule.code:
        return None, None
    if not rule.auto_sync:
        return (f"auto_sync is false: it runs only with `reconcile --rule {rule.code}`", None)
    if action_kind not in GATED or requested:
        return None, None
    when = timing(rule, last_run, now)
    if when.due or when.next_run is None:
        return None, None
    return (
        f"scheduled for {when.next_run:%Y-%m-%d %H:%M} UTC ({rule.schedule_cron})",
        when.next_run,
    )
