"""What every request of ``reconcile serve`` works with: the workspace, its manifests, the
users file, whether the server is read-only, and the thumbnails made so far; and the checks
that a request may read and may act."""

from __future__ import annotations

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

    def __post_init__(self) -> None:
        self.manifests = Manifests(self.where)

    @property
    def can_act(self) -> bool:
        """Whether mutating actions exist at all on this server."""
        return self.users is not None and not self.read_only


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
        return ctx.users.bearer(token)
    name = request.session.get("user")
    return name if isinstance(name, str) and name in ctx.users.secrets else None


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
