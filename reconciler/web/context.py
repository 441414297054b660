"""What every request of ``reconcile serve`` works with: the workspace, its manifests, the
users file, whether the server is read-only, and the thumbnails made so far; and the checks
that a request may read and may act."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from starlette.requests import Request

from reconciler import ops
from reconciler.viewing import Manifests
from reconciler.web.security import Users, bearer_of, csrf_ok
from reconciler.web.thumbs import Thumbnails


@dataclass
class Served:
    where: ops.Workspace
    users: Users | None  # None: no sign-in; the server is loopback-only and read-only
    read_only: bool
    manifests: Manifests = field(init=False)
    thumbnails: Thumbnails = field(default_factory=Thumbnails)
    # signed-in sessions by id: the cookie holds only the id, so that signing out (or a
    # restart) ends a session even for someone who kept a copy of the cookie
    sessions: dict[str, str] = field(default_factory=dict)
    # requests that read the state at once: each opens a DuckDB file read-only, and a writer
    # (`reconcile watch`) waits while any reader has it open, so many readers starve it
    readers: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(READERS))
    _failures: deque[float] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.manifests = Manifests(self.where)

    @property
    def can_act(self) -> bool:
        """Whether mutating actions exist at all on this server."""
        return self.users is not None and not self.read_only

    def start_session(self, name: str) -> str:
        sid = secrets.token_urlsafe(24)
        self.sessions[sid] = name
        return sid

    def end_session(self, sid: object) -> None:
        if isinstance(sid, str):
            self.sessions.pop(sid, None)

    def throttled(self) -> bool:
        """Too many failed sign-ins (form or bearer) in the last minute: refuse the next ones
        for a while, so that guessing a secret takes years, not hours."""
        with self._lock:
            now = time.monotonic()
            while self._failures and now - self._failures[0] > FAILURE_WINDOW:
                self._failures.popleft()
            return len(self._failures) >= MAX_FAILURES

    def failed(self) -> None:
        with self._lock:
            self._failures.append(time.monotonic())


READERS = 2
MAX_FAILURES = 20  # failed sign-ins per FAILURE_WINDOW seconds, all users together
FAILURE_WINDOW = 60.0


class Refused(Exception):
    """A request that may not do what it asks: 401 (nobody signed in) or 403."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def served(request: Request) -> Served:
    found: Served = request.app.state.served
    return found


def user_of(request: Request) -> str | None:
    """The signed-in user: by bearer token, else by session; None when nobody is."""
    ctx = served(request)
    if ctx.users is None:
        return None
    token = bearer_of(request)
    if token is not None:
        if ctx.throttled():
            raise Refused(429, "too many failed sign-ins; wait a minute")
        found = ctx.users.bearer(token)
        if found is None:
            ctx.failed()
        return found
    sid = request.session.get("sid")
    name = ctx.sessions.get(sid) if isinstance(sid, str) else None
    return name if name is not None and name in ctx.users.secrets else None


def actor(request: Request, csrf: str | None) -> str:
    """The user a mutating request acts as, or :class:`Refused`: none without sign-in or on a
    read-only server; a browser session's request needs its CSRF token too."""
    ctx = served(request)
    if not ctx.can_act:
        why = "--read-only" if ctx.read_only else "no --auth-file, so nobody can sign in"
        raise Refused(403, f"this dashboard is read-only ({why})")
    name = user_of(request)
    if name is None:
        raise Refused(401, "sign in first")
    if bearer_of(request) is None and not csrf_ok(request, csrf):
        raise Refused(403, "missing or wrong CSRF token; reload the page and try again")
    return name
