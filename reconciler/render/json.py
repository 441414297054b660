"""JSON for programs: validation, plans, explanations, apply and verify results.

Picked by the CLI through :mod:`reconciler.render.formats` for ``--output json`` (and the
closing line of ``--output jsonl``). Every document carries ``format_version``; a plan's JSON is
also the plan file that ``reconcile apply PLAN.json`` reads, so its shape is the plan's own
(:meth:`reconciler.plan.actions.Plan.to_dict`). Every JSON line is stamped with an ISO-8601 UTC
``time`` (:func:`iso_utc`). ``color`` is accepted for a uniform signature and
ignored.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from reconciler.apply.run import ApplyResult
from reconciler.apply.verify import VerifyResult
from reconciler.manifests.validate import ValidationResult
from reconciler.plan.actions import Action, Plan
from reconciler.plan.explain import Explanation

JSON_FORMAT_VERSION = 1


def iso_utc(when: datetime | None = None) -> str:
    """``2024-01-25T08:00:00.123Z``: ``when`` (naive means UTC, as the state stores it), or
    now."""
    moment = when.replace(tzinfo=UTC) if when and when.tzinfo is None else when
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(payload: Any, **options: Any) -> str:
    return json.dumps(payload, indent=2, ensure_ascii=False, **options)


def validation_json(result: ValidationResult, color: bool = False) -> str:
    return _dumps(
        {
            "format_version": JSON_FORMAT_VERSION,
            "valid": result.ok,
            "manifests": str(result.manifests_dir),
            "media_root": str(result.media_root),
            "summary": {
                **result.counts,
                "errors": len(result.errors),
                "warnings": len(result.warnings),
            },
            "problems": [p.to_dict() for p in result.problems],
        }
    )


def plan_json(plan: Plan, color: bool = False) -> str:
    return _dumps(plan.to_dict())


def explain_json(ex: Explanation, color: bool = False) -> str:
    return _dumps({"format_version": JSON_FORMAT_VERSION, **ex.to_dict()}, default=str)


def _placement(action: Action) -> dict[str, Any]:
    return {"asset": action.asset, "platform": action.platform, "reason": action.reason}


def apply_record(result: ApplyResult) -> dict[str, Any]:
    """An apply run as one JSON object: its summary, its jobs, and what did not run."""
    return {
        "format_version": JSON_FORMAT_VERSION,
        "run_id": result.run_id,
        "exit_code": int(result.exit_code),
        "summary": {
            **result.counts(),
            "blocked": len(result.blocked),
            "held": len(result.held),
            "waiting": len(result.waiting),
            "open_conflicts": result.open_conflicts,
            "queued": sum(1 for j in result.jobs if j.status == "pending") if result.queued else 0,
            "already_queued": len(result.with_workers),
        },
        "recovered": result.recovered,
        "jobs": [
            {
                "job_code": j.code,
                "job_type": j.job_type,
                "asset": j.action.asset,
                "platform": j.action.platform,
                "rule": j.action.rule,
                "status": j.status,
                "error": j.error,
                "retries": j.retries,
                "key": j.key,
                "eligible_at": j.eligible_at.isoformat() if j.eligible_at else None,
            }
            for j in result.jobs
        ],
        "blocked": [_placement(a) for a in result.blocked],
        "held": [_placement(a) for a in result.held],
        "waiting": [
            {
                "asset": a.asset,
                "platform": a.platform,
                "action": a.action,
                "waiting": a.waiting,
                "scheduled_for": a.scheduled_for,
            }
            for a in result.waiting
        ],
    }


def apply_json(result: ApplyResult, color: bool = False) -> str:
    record = apply_record(result)
    jobs = record["jobs"]
    if not jobs:
        return _dumps(record)
    record["jobs"] = []
    text = _dumps(record)
    return text.replace('"jobs": []', f'"jobs": [\n    {_flat_items(jobs, 3)}\n  ]', 1)


def _flat_items(items: list[dict[str, Any]], depth: int) -> str:
    """``items`` (dicts of plain values: strings, numbers, None) as ``indent=2`` renders them
    at ``depth``, joined as list items are. The C encoder, which knows no indent, writes the
    very same text when the indent is put in its separator (a flat dict nests nothing):
    100,000 jobs render in half the time, without the list of millions of string pieces the
    pure-Python encoder (the one ``indent`` needs) joins at the end."""
    pad = "\n" + "  " * depth
    encode = json.JSONEncoder(ensure_ascii=False, separators=("," + pad, ": ")).encode
    inner = "\n" + "  " * (depth - 1)
    return ("," + inner).join("{" + pad + encode(item)[1:-1] + inner + "}" for item in items)


def apply_jsonl(result: ApplyResult, color: bool = False) -> str:
    """The closing line of a JSON-lines stream: the run's summary, stamped as the events are."""
    return json.dumps(
        {
            "time": iso_utc(),
            "summary": apply_record(result)["summary"],
            "run_id": result.run_id,
            "exit_code": int(result.exit_code),
        }
    )


def verify_json(result: VerifyResult, color: bool = False) -> str:
    return _dumps(
        {
            "format_version": JSON_FORMAT_VERSION,
            "checked": result.checked,
            "ok": result.ok,
            "conflicts": result.conflicts,
            "resynced": result.resynced,
            "errors": result.errors,
            "health": {p: {"status": s, "detail": d} for p, (s, d) in result.health.items()},
        }
    )
