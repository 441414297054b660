"""HTTP plumbing shared by the API drivers (``http``, ``youtube``, ``vimeo``), over requests.

:func:`request` is the one place a request is sent and its transport failure classified: a
connection error or timeout is temporary, a request that cannot be made permanent.
:func:`check` turns a response into a driver failure by the one rule every driver follows:
429 and 5xx are temporary (``Retry-After`` honoured, in seconds or as an HTTP date), any other
4xx is permanent. :func:`call` is both; :meth:`reconciler.drivers.http.ApiDriver._call` adds a
platform's credentials and its own answers to them. :func:`json_object` reads an answer's
body. :class:`Chunk` streams a slice of a payload with progress through its hashing reader,
so that a chunk is never held whole in memory and every byte sent is hashed.
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import requests

from reconciler.drivers.base import Cancelled, PermanentError, TemporaryError
from reconciler.observe.payload import HashedReader, SourceChanged
from reconciler.redact import redact

TIMEOUT = (10.0, 120.0)  # connect, read
TEMPORARY_STATUS = {408, 429, 500, 502, 503, 504}
USER_AGENT = "media-sync-reconciler"
BLOCK = 256 * 1024


class _Session(requests.Session):
    """A requests session that never carries a credential to another origin: requests
    strips only ``Authorization`` on a redirect to another host; any header holding a
    resolved secret (an API key in ``X-API-Key``, say) is stripped too."""

    def rebuild_auth(self, prepared_request: Any, response: Any) -> None:
        super().rebuild_auth(prepared_request, response)
        if self.should_strip_auth(response.request.url, prepared_request.url):
            for name, value in list(prepared_request.headers.items()):
                if isinstance(value, str) and redact(value) != value:
                    del prepared_request.headers[name]


def session() -> requests.Session:
    s = _Session()
    s.headers["User-Agent"] = USER_AGENT
    return s


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def reason(response: requests.Response) -> str:
    """The platform's own words for a failure, short."""
    return redact(_reason(response))[:200]  # redacted before it is cut: no half secret


def _reason(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip().splitlines()
        return text[0][:1000] if text else response.reason or ""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error.get("status") or error)[:1000]
        for field in ("error", "message", "developer_message", "detail"):
            if body.get(field):
                return str(body[field])[:1000]
    return json.dumps(body)[:1000]


def check(response: requests.Response, doing: str, ok: tuple[int, ...] = ()) -> requests.Response:
    """The response when it succeeded (2xx, or a status in ``ok``); else the failure."""
    status = response.status_code
    if 200 <= status < 300 or status in ok:
        return response
    why = reason(response)
    message = f"{doing}: HTTP {status}" + (f" {why}" if why else "")
    if status in TEMPORARY_STATUS:
        raise TemporaryError(message, retry_after(response.headers.get("Retry-After")))
    if status in (401, 403):
        message += " (check the platform's credentials and their permissions)"
    raise PermanentError(message)


def request(
    http: requests.Session, method: str, url: str, doing: str, **kw: Any
) -> requests.Response:
    """One request, whatever its status; connection trouble is temporary."""
    try:
        return http.request(method, url, timeout=kw.pop("timeout", TIMEOUT), **kw)
    except Cancelled:
        raise
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TemporaryError(f"{doing}: {type(exc).__name__}: {_short(exc)}") from None
    except requests.RequestException as exc:
        raise PermanentError(f"{doing}: {_short(exc)}") from None


def call(
    http: requests.Session, method: str, url: str, doing: str, ok: tuple[int, ...] = (), **kw: Any
) -> requests.Response:
    """One request, its failure classified (:func:`request`, then :func:`check`)."""
    return check(request(http, method, url, doing, **kw), doing, ok)


def json_object(response: requests.Response, doing: str) -> dict[str, Any]:
    """The answer's body, which must be a JSON object."""
    try:
        body = response.json()
    except ValueError:
        raise PermanentError(f"{doing}: the platform did not answer JSON") from None
    if not isinstance(body, dict):
        raise PermanentError(f"{doing}: the platform's answer is not a JSON object")
    return body


def byte_count(value: Any) -> int | None:
    """A size a platform reported, when it is a whole number (not a flag or a text)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _short(exc: Exception) -> str:
    text = redact(str(exc))  # before it is cut: a token in a header shows in the message
    return text.splitlines()[0][:200] if text else type(exc).__name__


class Chunk:
    """The next ``length`` bytes of a payload, read through its hashing ``reader`` in blocks
    as requests sends them (a chunk is never held whole in memory); ``sent`` is called with
    the position in the file reached so far, and may raise Cancelled. A body sent again (a
    307 or 308 redirect keeps it; a request retried with a fresh access token) is read again
    from its start, the reader rewound so that every byte is hashed once."""

    def __init__(
        self, reader: HashedReader, length: int, sent: Callable[[int], None] | None = None
    ) -> None:
        self.reader, self.length, self.sent = reader, length, sent
        self.start = reader.tell()
        reader.mark()

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        if self.reader.tell() != self.start and not self.reader.back_to(self.start):
            raise PermanentError("an upload body could not be sent again; this is a bug")
        for block in self.reader.blocks(self.length, BLOCK):
            yield block
            if self.sent is not None:
                self.sent(self.reader.tell())
        if self.reader.tell() < self.start + self.length:
            raise SourceChanged(self.reader.payload, f"{self.reader.tell()} bytes")
