"""Who may look and who may act on the dashboard: the users file, sign-in, CSRF tokens, the
hosts the server answers for, and the headers every answer carries.

* Without a users file the server answers only on a loopback address and is read-only: no
  one can act, so there is nothing to steal a session for.
* With ``--auth-file FILE`` every page and API call needs a signed-in user. The file holds one
  ``NAME:SECRET`` line per person (``#`` comments); it must not be readable by group or others,
  like ``~/.pgpass``. A browser signs in with the name and secret (a session cookie signed with
  a key made at start, ``SameSite=Strict``, ``HttpOnly``); a program sends
  ``Authorization: Bearer SECRET``. The secret never appears on a command line, in a page, in
  an answer or in a log.
* Every mutating request from a browser session carries the session's CSRF token (a hidden
  form field or the ``X-CSRF-Token`` header); a bearer token is no ambient credential, so it
  needs none.
* The ``Host`` header must name this server (loopback names, the bound address, or an
  ``--allowed-host``): a page on another site cannot reach the dashboard through DNS
  rebinding.
"""

from __future__ import annotations

import errno
import hmac
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from starlette.requests import Request

from reconciler.errors import UsageError

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


@dataclass(frozen=True)
class Users:
    """The users file: secrets by name."""

    secrets: dict[str, str] = field(repr=False)

    def check(self, name: str, secret: str) -> bool:
        expected = self.secrets.get(name)
        # compared in constant time, and a compare is made for an unknown name too
        return hmac.compare_digest((expected or "\0").encode(), secret.encode()) and bool(expected)

    def bearer(self, secret: str) -> str | None:
        """The user whose secret this is."""
        found = None
        for name, expected in self.secrets.items():
            if hmac.compare_digest(expected.encode(), secret.encode()):
                found = name
        return found


def read_users(path: Path) -> Users:
    """Read a users file; a :class:`UsageError` naming the file (and line) when it is unusable:
    missing, readable by others, empty, or with a line that is not ``NAME:SECRET``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UsageError(f"--auth-file {path} is a symlink; name the file itself") from None
        raise UsageError(f"--auth-file {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"--auth-file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise UsageError(
                f"--auth-file {path} can be read by others (mode {stat.S_IMODE(st.st_mode):o}); "
                f"chmod 600 {path}"
            )
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as handle:
        raw = handle.read(1 << 20)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"--auth-file {path} is not UTF-8 text") from None
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, secret = line.partition(":")
        name, secret = name.strip(), secret.strip()
        if not sep or not name or len(secret) < 8:
            raise UsageError(
                f"{path}:{number}: expected NAME:SECRET with a secret of 8 characters or more"
            )
        if name in found:
            raise UsageError(f"{path}:{number}: {name} is named twice")
        found[name] = secret
    if not found:
        raise UsageError(f"--auth-file {path} names no user (one NAME:SECRET line each)")
    return Users(found)


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def csrf_of(request: Request) -> str:
    """The session's CSRF token, made on first use."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = new_csrf()
        request.session["csrf"] = token
    return token


def csrf_ok(request: Request, given: str | None) -> bool:
    expected = request.session.get("csrf")
    return (
        isinstance(expected, str)
        and isinstance(given, str)
        and hmac.compare_digest(expected.encode(), given.encode())
    )


def bearer_of(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None
