"""The JSON API under ``/api``: the same data the pages show, as the report commands' JSON
gives it, and the two actions (resolve a conflict, sync a copy now). Its OpenAPI description
is ``/api/openapi.json``, made from :data:`ENDPOINTS`.

A bad parameter is a 400 with ``{"error": "..."}``; the errors of the use cases are mapped by
:mod:`reconciler.web.app`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reconciler import __version__, viewing
from reconciler.errors import UsageError
from reconciler.store.dashboard import SORTS
from reconciler.store.records import RESOLUTIONS
from reconciler.web import present
from reconciler.web.context import actor, served, user_of
from reconciler.web.security import CSRF_HEADER, csrf_of


def integer(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{name} must be a whole number, not '{text[:40]}'") from None
    if not low <= value <= high:
        raise UsageError(f"{name} must be between {low} and {high}")
    return value


def flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes", "on")


def text_param(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    return value[:200] if value else None


def status(request: Request) -> Response:
    return JSONResponse(present.report(viewing.status(served(request).where)))


def distribution_args(request: Request) -> tuple[str, str, bool, int, int]:
    limit = integer(request, "limit", 50, 1, 500)
    offset = integer(request, "offset", 0, 0, 10**9)
    sort = request.query_params.get("sort") or "needs_update"
    if sort not in SORTS:
        raise UsageError(f"cannot sort by '{sort[:40]}'; one of {', '.join(SORTS)}")
    desc = request.query_params.get("desc", "1" if sort == "needs_update" else "0")
    return text_param(request, "q") or "", sort, desc == "1", offset, limit


def distribution(request: Request) -> Response:
    found = viewing.distribution(served(request).where, *distribution_args(request))
    return JSONResponse(present.page(found))


def asset(request: Request) -> Response:
    ctx = served(request)
    view = viewing.asset(ctx.where, ctx.manifests.current(), request.path_params["code"])
    return JSONResponse(present.asset(view))


def conflicts(request: Request) -> Response:
    found = viewing.conflicts(served(request).where, flag(request, "all"))
    return JSONResponse(present.report(found))


def jobs(request: Request) -> Response:
    limit = integer(request, "limit", 200, 1, 5000)
    found = viewing.jobs(served(request).where, text_param(request, "status"), limit)
    return JSONResponse(present.report(found))


def events(request: Request) -> Response:
    limit = integer(request, "limit", 100, 1, 5000)
    where = served(request).where
    found = viewing.events(
        where, text_param(request, "asset"), text_param(request, "platform"), limit
    )
    return JSONResponse(present.report(found))


def activity(request: Request) -> Response:
    hours = integer(request, "hours", 24, 1, 24 * 31)
    return JSONResponse(present.report(viewing.activity(served(request).where, hours)))


def plan(request: Request) -> Response:
    ctx = served(request)
    manifest_set = ctx.manifests.current()
    if manifest_set is None:
        raise UsageError(ctx.manifests.problem or "the manifests do not validate")
    return JSONResponse(present.plan(viewing.pending_plan(manifest_set, ctx.where)))


MAX_BODY = 64 * 1024  # an action's JSON body is a few dozen bytes


async def _body(request: Request) -> dict[str, Any]:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise UsageError(f"the request body is over {MAX_BODY // 1024} KiB")
    if not raw:
        return {}
    try:
        found = json.loads(raw)
    except (ValueError, RecursionError):
        raise UsageError("the request body is not JSON") from None
    if not isinstance(found, dict):
        raise UsageError("the request body must be a JSON object")
    return found


async def resolve(request: Request) -> Response:
    by = actor(request, request.headers.get(CSRF_HEADER))
    body = await _body(request)
    use, note = body.get("use"), body.get("note")
    if not isinstance(use, str) or use not in RESOLUTIONS:
        raise UsageError(f"use must be one of {', '.join(RESOLUTIONS)}")
    if note is not None and not isinstance(note, str):
        raise UsageError("note must be text")
    conflict_id: int = request.path_params["id"]
    done = await run_in_threadpool(
        viewing.resolve, served(request).where, conflict_id, use, by, note
    )
    return JSONResponse(
        {
            "id": done.conflict_id,
            "resolution": str(done.resolution),
            "resolved_by": done.resolved_by,
            "asset": done.asset,
            "platform": done.platform,
            "resync": done.resync,
        }
    )


async def sync_now(request: Request) -> Response:
    by = actor(request, request.headers.get(CSRF_HEADER))
    code, platform = request.path_params["code"], request.path_params["platform"]
    await run_in_threadpool(viewing.request_sync, served(request).where, code, platform, by)
    return JSONResponse({"asset": code, "platform": platform, "requested_by": by})


def session(request: Request) -> Response:
    """Who is signed in, whether actions exist, and (for a session) its CSRF token."""
    ctx = served(request)
    name = user_of(request)
    found: dict[str, Any] = {"user": name, "can_act": ctx.can_act and name is not None}
    if name is not None:
        found["csrf_token"] = csrf_of(request)
    return JSONResponse(found)


def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())


# path, method, endpoint, summary, query parameters
ENDPOINTS: list[tuple[str, str, Callable[..., Any], str, tuple[str, ...]]] = [
    ("/api/status", "GET", status, "Sync status per platform (as reconcile status)", ()),
    ("/api/distribution", "GET", distribution, "A page of the distribution report",
     ("q", "sort", "desc", "offset", "limit")),
    ("/api/assets/{code}", "GET", asset, "One asset: record, copies, explanation, events", ()),
    ("/api/conflicts", "GET", conflicts, "Open conflicts (all=1: resolved ones too)", ("all",)),
    ("/api/conflicts/{id:int}/resolve", "POST", resolve,
     "Resolve a conflict: body {use: source|target|ignore, note}", ()),
    ("/api/assets/{code}/platforms/{platform}/sync", "POST", sync_now,
     "Send one copy again at the next reconcile", ()),
    ("/api/jobs", "GET", jobs, "Jobs, newest first", ("status", "limit")),
    ("/api/events", "GET", events, "Events, newest first", ("asset", "platform", "limit")),
    ("/api/activity", "GET", activity, "Jobs completed and failed per hour and platform",
     ("hours",)),
    ("/api/plan", "GET", plan, "What the next reconcile would do (a dry run)", ()),
    ("/api/session", "GET", session, "Who is signed in; the session's CSRF token", ()),
    ("/api/openapi.json", "GET", openapi, "This description", ()),
]  # fmt: skip


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for route, method, _, summary, query in ENDPOINTS:
        path = route.replace(":int", "")
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in ("code", "id", "platform")
            if "{" + name + "}" in path
        ] + [{"name": name, "in": "query", "schema": {"type": "string"}} for name in query]
        operation: dict[str, Any] = {
            "summary": summary,
            "parameters": params,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {}}},
                "400": {"description": "a bad parameter: {error}"},
                "401": {"description": "sign in first (with --auth-file)"},
            },
        }
        if method == "POST":
            operation["responses"]["403"] = {"description": "read-only, or no CSRF token"}
            operation["security"] = [{"bearer": []}, {"session": []}]
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "media sync reconciler dashboard", "version": __version__},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
            }
        },
    }


ROUTES = [Route(path, endpoint, methods=[method]) for path, method, endpoint, _, _ in ENDPOINTS]
