"""The ``youtube`` driver: the YouTube Data API v3 and its resumable upload protocol.

An upload starts with ``POST {upload_endpoint}/videos?uploadType=resumable&part=snippet,status``
carrying the video's metadata; the ``Location`` it answers is the session URI, which is saved
in the state file before a byte is sent. The file then goes in ``PUT`` chunks of a multiple of
256 KiB with ``Content-Range``; 308 answers say how much arrived (``Range``). After an
interruption, in this run or after a restart, ``PUT`` with ``Content-Range: bytes */SIZE``
asks for the offset and the upload goes on from there; a changed file, or a session the
platform no longer knows, starts over. Once uploaded, ``videos.list`` is polled until the
video is processed: a placement is synced only then, and processing that failed, or a
rejected video, fails the job. A metadata change is ``videos.update``; a changed file is a new
upload, after which the old video is deleted (YouTube cannot replace a video's bytes).

OAuth2: the platform's ``auth`` references a refresh token; ``client_id`` and
``client_secret`` are secret references too. An access token is fetched from ``token_url``
and fetched again on a 401. The daily quota (``quota_daily_units``, default 10,000) and the
cost of each operation (``quota_costs``) are configuration; units are counted in the state
file per quota day (midnight Pacific time), and when the quota is spent — counted, or said so
by a ``quotaExceeded`` answer — jobs are deferred until it resets.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests

from reconciler.drivers import web
from reconciler.drivers.base import (
    Deferred,
    DriverError,
    PermanentError,
    Progress,
    RemoteObject,
    TemporaryError,
    resolve_secret,
)
from reconciler.drivers.http import _json
from reconciler.drivers.state import Session
from reconciler.drivers.videoapi import VideoApiDriver
from reconciler.model import HealthStatus, Platform, SecretRef
from reconciler.observe.payload import HashedReader, Payload
from reconciler.redact import register

UNIT = 256 * 1024  # chunks are multiples of this
DEFAULT_COSTS = {"upload": 1600, "update": 50, "list": 1, "delete": 50}
TOKEN_URL = "https://oauth2.googleapis.com/token"
FAILED_UPLOAD = {"failed", "rejected", "deleted"}
FAILED_PROCESSING = {"failed", "terminated"}


def _pacific() -> Any:
    try:
        return ZoneInfo("America/Los_Angeles")
    except ZoneInfoNotFoundError:  # no time zone data: Pacific standard time
        from datetime import timezone

        return timezone(timedelta(hours=-8))


class YouTubeDriver(VideoApiDriver):
    READY = ("processing", "succeeded")

    def __init__(self, platform: Platform) -> None:
        super().__init__(platform)
        c = self.config
        self.upload_base = str(
            c.get("upload_endpoint") or self.base.replace("/youtube/v3", "/upload/youtube/v3")
        ).rstrip("/")
        self.token_url = str(c.get("token_url", TOKEN_URL))
        self.chunk = max(1, int(c.get("chunk_size_kib", 8192)) // 256) * UNIT
        self.privacy = str(c.get("privacy_status", "private"))
        self.category = str(c.get("category_id", "22"))
        self.daily_units = int(c.get("quota_daily_units", 10_000))
        self.costs = {**DEFAULT_COSTS, **dict(c.get("quota_costs") or {})}
        self._token: str | None = None
        self._token_lock = threading.Lock()

    # -- OAuth2 and calls ------------------------------------------------------------------
    def _refresh(self) -> str:
        form = {"grant_type": "refresh_token", "refresh_token": self.secret()}
        for name in ("client_id", "client_secret"):
            ref = self.config.get(name)
            if isinstance(ref, dict):
                ref = SecretRef(ref.get("secret_env"), ref.get("secret_file"))
                form[name] = resolve_secret(ref, f"platform {self.platform.code} {name}")
        doing = f"refreshing the OAuth2 access token of {self.platform.code}"
        try:
            response = web.call(self.http, "POST", self.token_url, doing, data=form)
        except PermanentError as exc:
            raise PermanentError(f"{exc}; the refresh token may be revoked") from None
        token = _json(response, doing).get("access_token")
        if not token:
            raise PermanentError(f"{doing}: the answer holds no access_token")
        register(str(token))  # a credential too: never recorded or printed
        return str(token)

    def _access(self, stale: str | None = None) -> str:
        with self._token_lock:
            if self._token is None or self._token == stale:
                self._token = self._refresh()
            return self._token

    def _call(
        self, method: str, url: str, doing: str, cost: str | None = None,
        ok: tuple[int, ...] = (), **kw: Any,
    ) -> requests.Response:  # fmt: skip
        """A request with the access token: refreshed once on a 401, quota counted."""
        if cost is not None:
            self._spend(cost)
        headers = dict(kw.pop("headers", {}))
        token = self._access()
        for attempt in (1, 2):
            headers["Authorization"] = f"Bearer {token}"
            try:
                response = self.http.request(
                    method, url, headers=headers, timeout=web.TIMEOUT, **kw
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TemporaryError(f"{doing}: {type(exc).__name__}") from None
            if response.status_code == 401 and attempt == 1:
                token = self._access(stale=token)
                continue
            if response.status_code in (403, 429) and _quota_reason(response):
                self._spent_out()
            return web.check(response, doing, ok)
        raise AssertionError("unreachable")

    # -- quota -----------------------------------------------------------------------------
    def _day(self) -> tuple[date, datetime]:
        """The quota day now, and when the next one starts (UTC)."""
        zone = _pacific()
        local = datetime.now(zone)
        midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return local.date(), midnight.astimezone(UTC).replace(tzinfo=None)

    def _spend(self, operation: str) -> None:
        if self.state is None:
            return
        day, reset = self._day()
        used, exhausted = self.state.quota(day)
        cost = int(self.costs.get(operation, 1))
        if exhausted or used + cost > self.daily_units:
            raise Deferred(
                f"the daily API quota of {self.platform.code} is spent ({used} of "
                f"{self.daily_units} units used; {operation} costs {cost}); deferred until it "
                f"resets at {reset:%Y-%m-%d %H:%M} UTC",
                reset,
            )
        self.state.spend(day, cost)

    def _spent_out(self) -> None:
        day, reset = self._day()
        if self.state is not None:
            self.state.spend(day, 0, exhausted=True)
        raise Deferred(
            f"YouTube says the daily quota of {self.platform.code} is spent; deferred until "
            f"it resets at {reset:%Y-%m-%d %H:%M} UTC",
            reset,
        )

    # -- upload ----------------------------------------------------------------------------
    def _send(
        self,
        payload: Payload,
        key: str,
        metadata: dict[str, Any],
        session: Session | None,
        progress: Progress | None,
    ) -> Session:
        doing = f"uploading {key} to {self.platform.code}"
        size = payload.size
        offset = 0
        if session is not None and session.session_url:
            asked = self._offset(session, size, doing, payload)
            if isinstance(asked, Session):
                return asked
            if asked is None:
                session = None  # the platform forgot the session: start over
            else:
                offset = asked
        reader = self._reader_at(payload, session, offset)
        if session is not None and reader is None:  # what was sent cannot be vouched for
            self._abandon(session)
            self.forget(key)
            session = None
        if session is None:
            session, offset, reader = (
                self._start(key, metadata, size, payload.expected, doing),
                0,
                payload.reader(),
            )
        assert session.session_url is not None and reader is not None
        while True:
            if not reader.back_to(offset):  # the platform kept bytes not vouched for
                raise self._start_over(session, doing)
            start, end = offset, min(offset + self.chunk, size)
            response = self._put(
                session.session_url, doing, data=web.Chunk(reader, end - start, progress),
                headers={"Content-Range": f"bytes {start}-{end - 1}/{size}" if size else
                         f"bytes */{size}"},
            )  # fmt: skip
            if response.status_code == 308:
                offset = _next_offset(response)
                session = self._confirmed(session, reader, offset)
                self.keep(session)
                continue
            return self._uploaded(session, response, doing, payload, reader)

    def _start(
        self, key: str, metadata: dict[str, Any], size: int, sha256: str, doing: str
    ) -> Session:
        body = {
            "snippet": {
                "title": str(metadata.get("title") or metadata.get("code") or key)[:100],
                "description": str(metadata.get("description") or "")[:5000],
                "categoryId": self.category,
            },
            "status": {"privacyStatus": self.privacy},
        }
        response = self._call(
            "POST",
            f"{self.upload_base}/videos?uploadType=resumable&part=snippet,status",
            f"{doing}: starting the resumable session",
            cost="upload",
            json=body,
            headers={
                "X-Upload-Content-Length": str(size),
                "X-Upload-Content-Type": str(metadata.get("mime_type") or "video/*"),
            },
        )
        location = response.headers.get("Location")
        if not location:
            raise PermanentError(f"{doing}: the platform gave no session URI (Location)")
        session = Session(key, "youtube", "uploading", sha256, size, session_url=location)
        self.keep(session, before_sending=True)  # on disk before the first byte goes
        return session

    def _put(self, url: str, doing: str, **kw: Any) -> requests.Response:
        """One PUT to the session URI; 404/410 mean the session is gone."""
        response = self._call("PUT", url, doing, ok=(308, 404, 410), **kw)
        if response.status_code in (404, 410):
            raise TemporaryError(f"{doing}: the upload session expired; starting over")
        return response

    def _offset(
        self, session: Session, size: int, doing: str, payload: Payload
    ) -> int | Session | None:
        """Ask the session how much arrived: an offset, the finished upload, or None when the
        platform no longer knows the session."""
        assert session.session_url is not None
        response = self._call(
            "PUT", session.session_url, f"{doing}: asking where the upload stopped",
            ok=(308, 404, 410), headers={"Content-Range": f"bytes */{size}"}, data=b"",
        )  # fmt: skip
        if response.status_code in (404, 410):
            self.forget(session.key)
            return None
        if response.status_code == 308:
            return _next_offset(response)
        # finished without its answer reaching us: the part sent before must be vouched for
        reader = self._reader_at(payload, session, session.bytes_confirmed)
        if reader is None:
            video = _json(response, doing).get("id")
            raise self._start_over(session.moved(remote_id=str(video) if video else None), doing)
        for _ in reader.blocks(payload.size - reader.tell()):
            pass  # the rest, sent by the run that stopped, read again
        return self._uploaded(session, response, doing, payload, reader)

    def _uploaded(
        self,
        session: Session,
        response: requests.Response,
        doing: str,
        payload: Payload,
        reader: HashedReader,
    ) -> Session:
        video_id = _json(response, doing).get("id")
        if not video_id:
            raise PermanentError(f"{doing}: the finished upload names no video id")
        done = session.moved(
            state="uploaded",
            remote_id=str(video_id),
            remote_url=_watch_url(str(video_id)),
            bytes_confirmed=payload.size,
        )
        self._confirm(payload, reader, done)
        self.keep(done)
        return done

    def _abandon(self, session: Session) -> None:
        """A video made by an upload that is not the copy is deleted: one whose id is known,
        or one a session finished without the answer reaching us (a run killed after the last
        chunk): the session URI, asked where it stopped, answers with that video's id. An
        unfinished session made no video."""
        with contextlib.suppress(DriverError):  # best effort: it must not hide why
            video = session.remote_id or self._finished_video(session)
            if video:
                self._remove(video, session.key)

    def _finished_video(self, session: Session) -> str | None:
        if not session.session_url:
            return None
        response = self._call(
            "PUT", session.session_url, f"asking what became of the session of {session.key}",
            ok=(308, 404, 410), headers={"Content-Range": f"bytes */{session.file_size}"},
            data=b"",
        )  # fmt: skip
        if response.status_code in (308, 404, 410):
            return None
        try:
            found = response.json().get("id")
        except (ValueError, AttributeError):
            return None
        return str(found) if found else None

    def _poll(self, key: str, session: Session) -> str | None:
        """One videos.list: processed, still processing, or failed/rejected (permanent)."""
        assert session.remote_id is not None
        doing = f"checking the processing of {key} on {self.platform.code}"
        item = self._video(session.remote_id, "status,processingDetails", doing)
        if item is None:
            self.forget(key)
            raise TemporaryError(f"{doing}: the uploaded video is gone; sending it again")
        status = item.get("status") or {}
        details = item.get("processingDetails") or {}
        upload_status = status.get("uploadStatus")
        processing = details.get("processingStatus")
        if upload_status in FAILED_UPLOAD or processing in FAILED_PROCESSING:
            why = (
                status.get("rejectionReason")
                or status.get("failureReason")
                or details.get("processingFailureReason")
                or processing
                or upload_status
            )
            self._abandon(session)
            self.forget(key)  # the next run uploads it again
            raise PermanentError(
                f"YouTube did not accept {key} (video {session.remote_id}): "
                f"{upload_status}, processing {processing}: {why}"
            )
        if upload_status == "processed" or processing == "succeeded":
            return ""
        return None

    def _link(self, remote_id: str) -> str:
        return _watch_url(remote_id)

    def _video(self, video_id: str, parts: str, doing: str) -> dict[str, Any] | None:
        response = self._call(
            "GET", f"{self.base}/videos", doing, cost="list",
            params={"part": parts, "id": video_id},
        )  # fmt: skip
        items = _json(response, doing).get("items") or []
        return items[0] if items else None

    # -- the rest --------------------------------------------------------------------------
    def stat(self, key: str, size: int | None = None) -> RemoteObject | None:
        found = self.index(key)
        if found is None:
            return None
        video_id, _, sent = found
        item = self._video(video_id, "status", f"looking up {key} on {self.platform.code}")
        if item is None:
            return None
        status = (item.get("status") or {}).get("uploadStatus")
        # YouTube reports no checksum and never changes a video's bytes: the one sent stands
        return RemoteObject(sent, None, {"video_id": video_id, "uploadStatus": status})

    def _remove(self, video_id: str, key: str) -> None:
        self._call(
            "DELETE", f"{self.base}/videos", f"deleting {key} from {self.platform.code}",
            cost="delete", ok=(404,), params={"id": video_id},
        )  # fmt: skip

    def update_metadata(self, key: str, metadata: dict[str, Any]) -> None:
        body = {
            "id": self.known(key),
            "snippet": {
                "title": str(metadata.get("title") or metadata.get("code") or key)[:100],
                "description": str(metadata.get("description") or "")[:5000],
                "categoryId": self.category,
            },
        }
        self._call(
            "PUT", f"{self.base}/videos", f"updating the metadata of {key} on YouTube",
            cost="update", params={"part": "snippet"}, json=body,
        )  # fmt: skip

    def health_check(self) -> tuple[HealthStatus, str]:
        try:
            self._access()
        except (TemporaryError, PermanentError) as exc:
            return HealthStatus.DOWN, str(exc)
        return HealthStatus.HEALTHY, "an OAuth2 access token was obtained"


def _next_offset(response: requests.Response) -> int:
    """From a 308's ``Range: bytes=0-N``: the next byte to send (0 when nothing arrived)."""
    header = response.headers.get("Range", "")
    if "-" not in header:
        return 0
    return int(header.rsplit("-", 1)[1]) + 1


def _quota_reason(response: requests.Response) -> bool:
    try:
        errors = (response.json().get("error") or {}).get("errors") or []
    except (ValueError, AttributeError):
        return False
    return any(e.get("reason") in ("quotaExceeded", "dailyLimitExceeded") for e in errors)


def _watch_url(video_id: str) -> str:
    return f"https://www.youtube.com/watch?v={video_id}"
