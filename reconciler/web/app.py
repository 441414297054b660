"""The ASGI application of ``reconcile serve``: the pages (:mod:`.pages`), the API
(:mod:`.api`) and the static files, behind the checks of :mod:`.security`: the Host header,
sign-in when a users file is given, and the headers every answer carries.

Errors become one line for a person, never a traceback: a bad parameter is 400, an unknown
asset 404, a state that refuses (an already resolved conflict) 409, a state kept busy past
the lock timeout 503, anything else 500 with the details in the server's log, redacted.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from reconciler.errors import LockTimeout, ReconcilerError, StateError
from reconciler.redact import redact
from reconciler.viewing import NotFound
from reconciler.web import api, pages
from reconciler.web.context import Refused, Served, user_of
from reconciler.web.security import LOOPBACK_HOSTS, SECURITY_HEADERS

OPEN_PATHS = ("/login", "/static/")
SESSION_HOURS = 12


def _status_of(exc: Exception) -> int:
    if isinstance(exc, Refused):
        return exc.status
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, LockTimeout):
        return 503
    if isinstance(exc, StateError):
        return 409
    if isinstance(exc, ReconcilerError):
        return 400
    return 500


BUSY = "the state is busy: another command is writing it; try again in a moment"


def _message_of(exc: Exception, status: int) -> str:
    if status == 500:
        return "internal error; the server's log says more"
    if status == 503:  # its message names the other process's command line: not for readers
        return BUSY
    return redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


async def failed(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):  # Starlette's own: no such page, a method not allowed
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc.detail)}, exc.status_code)
        return pages.render(
            request, "error.html", exc.status_code, status=exc.status_code, message=exc.detail
        )
    if isinstance(exc, ClientDisconnect):
        return Response(status_code=400)
    status = _status_of(exc)
    message = _message_of(exc, status)
    if status == 500:
        print(f"error: {request.method} {request.url.path}: {redact(repr(exc))}", file=sys.stderr)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status)
    if status == 401:
        return RedirectResponse(f"/login?next={quote(request.url.path)}", 303)
    return pages.render(request, "error.html", status, status=status, message=message)


class Gate(BaseHTTPMiddleware):
    """Security headers on every answer; with a users file, sign-in before anything but the
    sign-in page and the static files."""

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        served: Served = request.app.state.served
        path = request.url.path
        gated = served.users is not None and not path.startswith(OPEN_PATHS)
        try:
            anonymous = gated and user_of(request) is None
        except Refused as exc:  # too many failed sign-ins
            return _secured(await failed(request, exc))
        if anonymous:
            if path.startswith("/api/"):
                response: Response = JSONResponse({"error": "sign in first"}, 401)
                response.headers["www-authenticate"] = "Bearer"
            else:
                response = RedirectResponse(f"/login?next={quote(path)}", 303)
            return _secured(response)
        try:
            if path.startswith("/static/"):
                return _secured(await call_next(request))
            async with served.readers:  # few reads of the state at once: writers get turns
                return _secured(await call_next(request))
        except Exception as exc:  # one line for the user, never a traceback
            return _secured(await failed(request, exc))


def _secured(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        if name == "cache-control" and name in response.headers:
            continue
        response.headers.setdefault(name, value)
    return response


def create_app(served: Served, allowed_hosts: Sequence[str] = (), secret: bytes = b"") -> Starlette:
    """The application over ``served``; ``allowed_hosts``: the Host names it answers for
    besides the loopback ones; ``secret``: the key that signs session cookies (made at start
    when not given, so that a restart signs everybody out)."""
    import secrets as random

    hosts = sorted({*LOOPBACK_HOSTS, *allowed_hosts})
    middleware = [
        Middleware(TrustedHostMiddleware, allowed_hosts=hosts),
        Middleware(
            SessionMiddleware,
            secret_key=(secret or random.token_bytes(32)).hex(),
            session_cookie="reconcile_session",
            max_age=SESSION_HOURS * 3600,
            same_site="strict",
        ),
        Middleware(Gate),
    ]
    static = StaticFiles(directory=Path(__file__).with_name("static"))
    handlers: dict[Any, Any] = {ReconcilerError: failed, Refused: failed, HTTPException: failed}
    app = Starlette(
        routes=[*api.ROUTES, *pages.ROUTES, Mount("/static", static, name="static")],
        middleware=middleware,
        exception_handlers=handlers,
    )
    app.state.served = served
    return app
