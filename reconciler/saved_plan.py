"""A saved plan is a request, not an authority: it is checked against a fresh plan before it
runs.

``reconcile apply PLAN.json`` applies exactly what was reviewed, but a plan file is only text:
anyone who can edit it could point an action at ``/etc/passwd``, change a checksum, or add a
delete. So apply plans again from freshly validated manifests and freshly hashed masters,
under the run lock, and compares: every change the saved plan asks for must be the very same
change now (same kind, rule, file, path, checksum, size, rendition, versions), and the state
must be the one the plan was made from. Any difference refuses the whole plan; what runs are
the fresh actions, never the file's. Changes the fresh plan has beyond the saved one were not
reviewed, and are left for the next run.
"""

from __future__ import annotations

from dataclasses import replace

from reconciler.plan import Action, Plan, PlanError

COMPARED = (
    "action",
    "rule",
    "file",
    "path",
    "checksum",
    "size_bytes",
    "mime_type",
    "rendition_id",
    "rendition_suffix",
    "source_version",
    "target_version",
    "metadata_hash",
    "transform_hash",
)
SHOWN = 3  # differences listed in the message


class PlanMismatch(PlanError):
    """The saved plan does not match what the manifests, the masters and the state say now."""


def checked(saved: Plan, fresh: Plan) -> Plan:
    """The fresh plan, narrowed to the changes the saved plan asks for; or
    :class:`PlanMismatch` naming the differences."""
    if fresh.state_fingerprint != saved.state_fingerprint:
        raise PlanMismatch(
            "the state has moved on since this plan was made (another run, a verify "
            "or a resolved conflict changed it); make the plan again"
        )
    now = {(a.asset, a.platform): a for a in fresh.actions}
    differences: list[str] = []
    chosen: list[Action] = []
    for asked in saved.actions:
        if not asked.is_change:
            continue
        current = now.get((asked.asset, asked.platform))
        difference = _difference(asked, current)
        if difference is not None:
            differences.append(difference)
            continue
        assert current is not None
        # a saved change runs when the saved plan said it runs (made with --rule, say)
        chosen.append(replace(current, waiting=asked.waiting, scheduled_for=asked.scheduled_for))
    if differences:
        listed = "; ".join(differences[:SHOWN])
        more = f"; and {len(differences) - SHOWN} more" if len(differences) > SHOWN else ""
        raise PlanMismatch(
            f"the saved plan does not match the manifests and the masters any more "
            f"({len(differences)} of its changes differ: {listed}{more}); nothing was "
            "applied: make the plan again"
        )
    picked = {(a.asset, a.platform) for a in chosen}
    skipped = [a for a in fresh.changes if (a.asset, a.platform) not in picked]
    result = replace(
        fresh,
        actions=chosen + [a for a in fresh.actions if not a.is_change],
        notes=list(fresh.notes),
    )
    if skipped:
        result.notes.append(
            f"{len(skipped)} changes that the saved plan does not hold were not applied; "
            "the next `reconcile` makes them"
        )
    return result


def _difference(asked: Action, current: Action | None) -> str | None:
    where = f"{asked.asset} on {asked.platform}"
    if current is None:
        return f"{where}: planned {asked.action}, but the manifests no longer declare it"
    if not current.is_change:
        return f"{where}: planned {asked.action}, but it is {current.action} now"
    for name in COMPARED:
        was, now = getattr(asked, name), getattr(current, name)
        if was != now:
            return f"{where}: {name} was {_short(was)} in the plan, {_short(now)} now"
    return None


def _short(value: object) -> str:
    text = "none" if value is None else str(value)
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return text[:12] + "..."  # a checksum
    return text if len(text) <= 80 else text[:77] + "..."
