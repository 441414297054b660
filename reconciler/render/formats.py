"""Which renderer each ``--output`` format means, per kind of result.

One result object, several formats (check-jsonschema's ``REPORTER_BY_NAME``): the CLI looks a
renderer up here by ``--output`` and echoes what it returns. The renderers themselves live in
:mod:`~reconciler.render.text`, :mod:`~reconciler.render.json`,
:mod:`~reconciler.render.markdown`, :mod:`~reconciler.render.github` (workflow commands) and
:mod:`~reconciler.render.tables`; each takes the result
and ``color`` (whether to colour: the CLI's decision) and returns a string.
"""

from __future__ import annotations

from collections.abc import Callable

from reconciler.apply.run import ApplyResult
from reconciler.apply.verify import VerifyResult
from reconciler.manifests.validate import ValidationResult
from reconciler.plan.actions import Plan
from reconciler.plan.explain import Explanation
from reconciler.render import github, json, markdown, tables, text
from reconciler.store.queries import Report

VALIDATION_RENDERERS: dict[str, Callable[[ValidationResult, bool], str]] = {
    "text": text.validation_text,
    "json": json.validation_json,
    "markdown": markdown.validation_markdown,
    "github": github.validation_github,
}

REPORT_RENDERERS: dict[str, Callable[[Report, bool], str]] = {
    "text": tables.report_text,
    "json": tables.report_json,
    "csv": tables.report_csv,
}

PLAN_RENDERERS: dict[str, Callable[[Plan, bool], str]] = {
    "text": text.plan_text,
    "json": json.plan_json,
    "markdown": markdown.plan_markdown,
    "github": github.plan_github,
}

EXPLAIN_RENDERERS: dict[str, Callable[[Explanation, bool], str]] = {
    "text": text.explain_text,
    "json": json.explain_json,
}

APPLY_RENDERERS: dict[str, Callable[[ApplyResult, bool], str]] = {
    "text": text.apply_text,
    "json": json.apply_json,
    "jsonl": json.apply_jsonl,
}

VERIFY_RENDERERS: dict[str, Callable[[VerifyResult, bool], str]] = {
    "text": text.verify_text,
    "json": json.verify_json,
}
