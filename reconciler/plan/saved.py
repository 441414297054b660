"""A saved plan is a request, not an authority: it is checked against a fresh plan before it
runs.

``reconcile apply PLAN.json`` applies exactly what was reviewed, but a plan file is only text:
anyone who can edit it could point an action at ``/etc/passwd``, change a checksum, or add a
delete. So apply plans again from freshly validated manifests and freshly hashed masters,
under the run lock, and compares: every change the saved plan asks for must be the very same
change now (same kind, rule, file, path, checksum, size, rendition, versions), and the state
must be the one the plan was made from. Any difference refuses the whole plan; what runs are
the fresh actions, never the file's. Changes the fresh plan has beyond the saved one were not
reviewed, and are left for the next run. A plan of ``--no-refresh``, made from the masters as
the state recorded them, is refused outright: an apply sends what it has read.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path
from types import UnionType
from typing import Any, get_args, get_origin, get_type_hints

from reconciler.model import ActionKind
from reconciler.plan.actions import Action, Plan, PlanError

COMPARED = (  # (not the absolute path: another checkout of the same manifests is fine)
    "action",
    "rule",
    "file",
    "checksum",
    "size_bytes",
    "mime_type",
    "rendition_id",
    "rendition_suffix",
    "source_version",
    "target_version",
    "metadata_hash",
    "transform_hash",
    "moved_from",
    "previous_key",
    "import_id",
)
SHOWN = 3  # differences listed in the message


class PlanMismatch(PlanError):
    """The saved plan does not match what the manifests, the masters and the state say now."""


MAX_PLAN_BYTES = 256 * 1024 * 1024
TOP_FIELDS: dict[str, tuple[type, ...]] = {
    "format_version": (int,),
    "created_at": (str,),
    "manifests": (str,),
    "media_root": (str,),
    "state": (str,),
    "state_exists": (bool,),
    "state_fingerprint": (str,),
    "actions": (list,),
}
OPTIONAL_TOP: dict[str, tuple[type, ...]] = {
    "prune": (bool,),
    "rule": (str, type(None)),
    "platform": (str, type(None)),
    "notes": (list,),
    "cached_renditions": (list,),
    "destinations": (dict,),
    "refresh": (str,),
    "observed_at": (str, type(None)),
    "planned_against": (dict, type(None)),
}
# what a plan that may be applied read: the masters (a plan file without "refresh" is older
# than --no-refresh, and read them), and maybe the platforms too
APPLICABLE = ("masters", "platforms")


def read_saved_plan(path: Path) -> Plan:
    """The plan saved in ``path``, or :class:`PlanError` in one line: a file that is not JSON,
    not a plan's shape, or holds values of the wrong type (checked before anything uses
    them, so an edited file can only ever be refused, never crash the command)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO never blocks
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ValueError("it is not a regular file")
            with os.fdopen(fd, "rb", closefd=False) as handle:
                raw = handle.read(MAX_PLAN_BYTES + 1)
        finally:
            os.close(fd)
        if len(raw) > MAX_PLAN_BYTES:
            raise ValueError("it is larger than any plan")
        data = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise PlanError(f"{path} is not a saved plan: {_why(exc)}") from None
    problem = _shape_problem(data)
    if problem is not None:
        raise PlanError(f"{path} is not a saved plan: {problem}; make the plan again")
    if data.get("refresh", "masters") not in APPLICABLE:
        raise PlanError(
            f"{path} was planned with --no-refresh, against the masters as the state recorded "
            "them, and cannot be applied: make the plan again where the media are, without "
            "--no-refresh"
        )
    try:
        return Plan.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanError(f"{path} is not a saved plan: {_why(exc)}") from None


def _why(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "it is nested too deeply"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _shape_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return "it is not a JSON object"
    problem = _top_problem(data)
    for i, action in enumerate(data["actions"] if problem is None else []):
        problem = _action_problem(i, action)
        if problem is not None:
            break
    return problem


def _top_problem(data: dict[str, Any]) -> str | None:
    for name in TOP_FIELDS:
        if name not in data:
            return f"it has no '{name}'"
    for name, kinds in {**TOP_FIELDS, **OPTIONAL_TOP}.items():
        if name in data and not _is(data[name], kinds):
            return f"'{name}' is not {_names(kinds)}"
    for field in ("manifests", "media_root", "state"):
        if "\0" in data[field]:
            return f"'{field}' holds a NUL byte"
    return None


def _action_problem(i: int, action: Any) -> str | None:
    if not isinstance(action, dict):
        return f"action {i + 1} is not a JSON object"
    for name, value in action.items():
        allowed = ACTION_FIELDS.get(name)
        if allowed is not None and not _is(value, allowed):
            return f"action {i + 1}: '{name}' is not {_names(allowed)}"
        if isinstance(value, str) and "\0" in value:
            return f"action {i + 1}: '{name}' holds a NUL byte"
    return None


def _is(value: Any, kinds: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in kinds:
        return False  # JSON true is not a number here
    return isinstance(value, kinds)


def _names(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", int: "a number", bool: "true or false", list: "a list",
             dict: "an object", type(None): "null"}  # fmt: skip
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _action_fields() -> dict[str, tuple[type, ...]]:
    """The JSON types each Action field may hold, from its annotation (a StrEnum is a
    string in JSON)."""
    kinds: dict[str, tuple[type, ...]] = {}
    for name, hint in get_type_hints(Action).items():
        found: list[type] = []
        for part in get_args(hint) if get_origin(hint) is UnionType else (hint,):
            kind = get_origin(part) or part
            json_kind = next((k for k in (bool, int, str, dict) if issubclass(kind, k)), kind)
            if json_kind not in found:
                found.append(json_kind)
        kinds[name] = tuple(found)
    return kinds


ACTION_FIELDS = _action_fields()


def made_for(
    saved: Plan, manifests: Path, media_root: Path | None, state: Path | str
) -> str | None:
    """A note when the plan names other folders than the ones this apply works on. The plan
    file never chooses which manifests run, which files may be published or where state is
    written: those are always the apply command's own, and every action is checked against a
    fresh plan made from them (another checkout of the same manifests applies fine)."""
    wanted = {
        "--manifests": (manifests, saved.manifests_dir),
        "--media-root": (media_root if media_root is not None else manifests, saved.media_root),
        "--state": (state, saved.state_path),
    }
    moved = [
        f"{option} {given} (the plan names {planned})"
        for option, (given, planned) in wanted.items()
        if os.path.realpath(given) != os.path.realpath(planned)
    ]
    if not moved:
        return None
    return "applied with " + ", ".join(moved) + "; every action was checked against them"


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
    asked_for: set[tuple[str, str]] = set()
    for asked in saved.actions:
        if not asked.is_change:
            continue
        if (asked.asset, asked.platform) in asked_for:
            differences.append(f"{asked.asset} on {asked.platform}: asked for more than once")
            continue
        asked_for.add((asked.asset, asked.platform))
        current = now.get((asked.asset, asked.platform))
        difference = _difference(asked, current)
        if difference is None and saved.destinations.get(asked.platform) != (
            fresh.destinations.get(asked.platform)
        ):
            difference = (
                f"{asked.asset} on {asked.platform}: the platform now sends its bytes "
                "elsewhere (its driver settings changed since the plan was made)"
            )
        if difference is not None:
            differences.append(difference)
            continue
        assert current is not None
        if asked.waiting is not None and current.waiting is None:  # reviewed as waiting
            current = replace(current, waiting=asked.waiting, scheduled_for=asked.scheduled_for)
        chosen.append(current)
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
    if asked.action == ActionKind.ADOPT and current.action == ActionKind.CREATE:
        current = replace(current, action=ActionKind.ADOPT)  # apply adopts what it finds
    if not current.is_change:
        hint = " (pass --prune to apply its deletes)" if asked.action == ActionKind.DELETE else ""
        return f"{where}: planned {asked.action}, but it is {current.action} now{hint}"
    if asked.waiting is None and current.waiting is not None:
        return (
            f"{where}: planned to run now, but it waits ({current.waiting}); pass --rule "
            f"{current.rule} to run it now"
        )
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
