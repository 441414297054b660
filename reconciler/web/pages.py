"""The HTML pages of ``reconcile serve``, rendered on the server from Jinja2 templates (beside
this module, escaped by default) over the same results the API answers; the live parts (jobs
and events) then poll the API from ``static/app.js``. Forms post the session's CSRF token.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from reconciler import viewing
from reconciler.errors import UsageError
from reconciler.model import SyncStatus
from reconciler.render.phrases import plan_summary, reason_of, versions
from reconciler.store.dashboard import SORTS
from reconciler.store.queries import JOB_STATUSES
from reconciler.store.records import RESOLUTIONS
from reconciler.web import api, present
from reconciler.web.chart import activity_svg
from reconciler.web.context import Refused, actor, served, user_of
from reconciler.web.security import CSRF_FIELD, csrf_of, csrf_ok, new_csrf

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
STATES = (SyncStatus.SYNCED, SyncStatus.OUTDATED, SyncStatus.SYNCING, SyncStatus.FAILED)


def render(request: Request, name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    ctx = served(request)
    user = user_of(request)
    html = TEMPLATES.get_template(name).render(
        request=request,
        user=user,
        signing_in=ctx.users is not None,
        can_act=ctx.can_act and user is not None,
        csrf=csrf_of(request) if ctx.users is not None else "",
        csrf_field=CSRF_FIELD,
        problem=ctx.manifests.problem,
        **values,
    )
    return HTMLResponse(html, status_code)


def bar(row: dict[str, Any]) -> list[tuple[str, int]]:
    """A platform's copies by state, for its little bar."""
    counts = {
        SyncStatus.SYNCED: row["up_to_date"],
        SyncStatus.OUTDATED: row["outdated"],
        SyncStatus.SYNCING: row["in_progress"],
        SyncStatus.FAILED: row["failed"],
    }
    return [(str(s), int(counts[s] or 0)) for s in STATES]


def dashboard(request: Request) -> Response:
    where = served(request).where
    platforms = present.rows(viewing.status(where))
    chart = activity_svg(present.rows(viewing.activity(where)), datetime.now(UTC))
    return render(
        request,
        "dashboard.html",
        platforms=platforms,
        bars={p["platform_code"]: bar(p) for p in platforms},
        chart=chart,
    )


def assets(request: Request) -> Response:
    search, sort, desc, offset, limit = api.distribution_args(request)
    found = viewing.distribution(served(request).where, search, sort, desc, offset, limit)

    def link(**change: Any) -> str:
        args = {"q": search, "sort": sort, "desc": "1" if desc else "0", "offset": offset}
        args.update(change)
        return "/assets?" + urlencode({k: v for k, v in args.items() if v not in ("", None)})

    return render(
        request,
        "assets.html",
        page=present.page(found),
        search=search,
        sort=sort,
        desc=desc,
        sorts=list(SORTS),
        link=link,
    )


def asset(request: Request) -> Response:
    ctx = served(request)
    view = viewing.asset(ctx.where, ctx.manifests.current(), request.path_params["code"])
    explained = None
    if view.explanation is not None:
        from reconciler.render.text import explain_text

        explained = explain_text(view.explanation)
    return render(request, "asset.html", view=present.asset(view), explained=explained)


def thumbnail(request: Request) -> Response:
    ctx = served(request)
    found = viewing.master_of(ctx.manifests.current(), request.path_params["code"])
    made = ctx.thumbnails.of(*found) if found else None
    if made is None:
        return Response("no thumbnail", 404, media_type="text/plain")
    return Response(made, media_type="image/png", headers={"cache-control": "private, max-age=60"})


def conflicts(request: Request) -> Response:
    include = request.query_params.get("all") == "1"
    found = viewing.conflicts(served(request).where, include)
    return render(
        request,
        "conflicts.html",
        conflicts=present.rows(found),
        include=include,
        uses=list(RESOLUTIONS),
    )


async def resolve(request: Request) -> Response:
    form = await request.form()
    by = actor(request, _text(form.get(CSRF_FIELD)))
    use, note = _text(form.get("use")), _text(form.get("note"))
    if use is None or use not in RESOLUTIONS:
        raise UsageError(f"use must be one of {', '.join(RESOLUTIONS)}")
    conflict_id: int = request.path_params["id"]
    await run_in_threadpool(viewing.resolve, served(request).where, conflict_id, use, by, note)
    return RedirectResponse("/conflicts?all=1", 303)


async def sync_now(request: Request) -> Response:
    form = await request.form()
    by = actor(request, _text(form.get(CSRF_FIELD)))
    code, platform = request.path_params["code"], request.path_params["platform"]
    await run_in_threadpool(viewing.request_sync, served(request).where, code, platform, by)
    return RedirectResponse(f"/assets/{quote(code)}", 303)


def jobs(request: Request) -> Response:
    status = api.text_param(request, "status")
    found = viewing.jobs(served(request).where, status, 200)
    return render(
        request, "jobs.html", jobs=present.rows(found), status=status, statuses=JOB_STATUSES
    )


def events(request: Request) -> Response:
    asset, platform = api.text_param(request, "asset"), api.text_param(request, "platform")
    found = viewing.events(served(request).where, asset, platform, 100)
    return render(
        request, "events.html", events=present.rows(found), asset=asset, platform=platform
    )


def plan(request: Request) -> Response:
    ctx = served(request)
    manifest_set = ctx.manifests.current()
    if manifest_set is None:
        raise UsageError(ctx.manifests.problem or "the manifests do not validate")
    made = viewing.pending_plan(manifest_set, ctx.where)
    shown = [a for a in made.actions if a.action != "noop"]
    return render(
        request,
        "plan.html",
        summary=plan_summary(made),
        actions=shown,
        versions=versions,
        reason_of=reason_of,
        markdown=present.plan(made)["markdown"],
    )


async def login(request: Request) -> Response:
    ctx = served(request)
    if ctx.users is None:
        return RedirectResponse("/", 303)
    wanted = request.query_params.get("next") or "/"
    # only a path of this server: not //host nor /\\host, which browsers take as another host
    target = wanted if re.fullmatch(r"/(?![/\\])[^\\\s]*", wanted) else "/"
    if request.method == "GET":
        return render(request, "login.html", target=target, failed=False)
    if ctx.throttled():
        raise Refused(429, "too many failed sign-ins; wait a minute and try again")
    form = await request.form()
    name, secret = _text(form.get("name")) or "", _text(form.get("secret")) or ""
    if not csrf_ok(request, _text(form.get(CSRF_FIELD))) or not ctx.users.check(name, secret):
        ctx.failed()
        request.session["csrf"] = new_csrf()  # a token serves one attempt
        return render(request, "login.html", 401, target=target, failed=True)
    ctx.end_session(request.session.get("sid"))
    request.session.clear()
    request.session["sid"] = ctx.start_session(name)
    request.session["csrf"] = new_csrf()
    return RedirectResponse(target, 303)


async def logout(request: Request) -> Response:
    form = await request.form()
    if csrf_ok(request, _text(form.get(CSRF_FIELD))):
        served(request).end_session(request.session.get("sid"))
        request.session.clear()
    return RedirectResponse("/login", 303)


def _text(value: Any) -> str | None:
    return value[:2000] if isinstance(value, str) else None


ROUTES = [
    Route("/", dashboard),
    Route("/assets", assets),
    Route("/assets/{code}", asset),
    Route("/assets/{code}/platforms/{platform}/sync", sync_now, methods=["POST"]),
    Route("/thumbs/{code}", thumbnail),
    Route("/conflicts", conflicts),
    Route("/conflicts/{id:int}/resolve", resolve, methods=["POST"]),
    Route("/jobs", jobs),
    Route("/events", events),
    Route("/plan", plan),
    Route("/login", login, methods=["GET", "POST"]),
    Route("/logout", logout, methods=["POST"]),
]
