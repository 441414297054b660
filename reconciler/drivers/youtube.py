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
by a ``quotaExceeded`` answer — jobs are deferred until it resets
(:mod:`reconciler.drivers.youtube_quota`). A video uploaded by other means is found by its id
for an import (:meth:`YouTubeDriver.find`); there is no discovery.
"""

from __future__ import annotations

import contextlib
import re
import threading
from typing import Any

import requests

from reconciler.drivers import web
from reconciler.drivers.base import (
    DriverError,
    Found,
    PermanentError,
    Progress,
    RemoteObject,
    TemporaryError,
    resolve_secret,
)
from reconciler.drivers.state import Session, SessionState
from reconciler.drivers.videoapi import VideoApiDriver, description_of, title_of
from reconciler.drivers.youtube_quota import DailyQuota, says_spent
from reconciler.model import HealthStatus, Platform, SecretRef
from reconciler.observe.payload import HashedReader, Payload
from reconciler.redact import register

UNIT = 256 * 1024  # chunks are multiples of this
TOKEN_URL = "https://oauth2.googleapis.com/token"
FAILED_UPLOAD = {"failed", "rejected", "deleted"}
FAILED_PROCESSING = {"failed", "terminated"}
VIDEO_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # one id (a comma would list several)


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
        self.quota = DailyQuota(platform.code, c)
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
        token = web.json_object(response, doing).get("access_token")
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
        self, method: str, url: str, doing: str, ok: tuple[int, ...] = (),
        cost: str | None = None, **kw: Any,
    ) -> requests.Response:  # fmt: skip
        """A request with the access token (refreshed once on a 401), its quota counted."""
        if cost is not None:
            self.quota.spend(self.state, cost)
        return super()._call(method, url, doing, ok, **kw)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._access()}"}

    def _renew(self, auth: dict[str, str]) -> bool:
        self._access(stale=auth["Authorization"].removeprefix("Bearer "))
        return True

    def _refused(self, response: requests.Response, doing: str) -> None:
        if says_spent(response):
            self.quota.spent_out(self.state)

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
            "snippet": self._snippet(key, metadata),
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
        session = Session(
            key, "youtube", SessionState.UPLOADING, sha256, size, session_url=location
        )
        self.keep(session, before_sending=True)  # on disk before the first byte goes
        return session

    def _snippet(self, key: str, metadata: dict[str, Any]) -> dict[str, str]:
        """The video's title, description and category, as videos.insert/update take them."""
        return {
            "title": title_of(key, metadata)[:100],
            "description": description_of(metadata)[:5000],
            "categoryId": self.category,
        }

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
            video = web.json_object(response, doing).get("id")
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
        video_id = web.json_object(response, doing).get("id")
        if not video_id:
            raise PermanentError(f"{doing}: the finished upload names no video id")
        done = session.moved(
            state=SessionState.UPLOADED,
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
        items = web.json_object(response, doing).get("items") or []
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

    def id_problem(self, remote_id: str) -> str | None:
        return None if VIDEO_ID.fullmatch(remote_id) else f"'{remote_id}' is not a YouTube video id"

    def find(self, remote_id: str) -> Found | None:
        """The video YouTube knows by the id ``remote_id`` (one videos.list, counted against
        the quota as a list call): its title, its size when YouTube tells it (fileDetails,
        shown to the video's owner only) and no checksum, which YouTube never gives; None
        when there is no such video."""
        if problem := self.id_problem(remote_id):
            raise PermanentError(problem)
        doing = f"looking up video {remote_id} on {self.platform.code}"
        item = self._video(remote_id, "status,fileDetails,snippet", doing)
        if item is None:
            return None
        size = str((item.get("fileDetails") or {}).get("fileSize"))  # a uint64: JSON text
        title = (item.get("snippet") or {}).get("title")
        return Found(
            remote_id, None, None, int(size) if size.isascii() and size.isdigit() else None,
            _watch_url(remote_id), None if title is None else str(title),
        )  # fmt: skip

    def _remove(self, video_id: str, key: str) -> None:
        self._call(
            "DELETE", f"{self.base}/videos", f"deleting {key} from {self.platform.code}",
            cost="delete", ok=(404,), params={"id": video_id},
        )  # fmt: skip

    def update_metadata(self, key: str, metadata: dict[str, Any]) -> None:
        body = {
            "id": self.known(key),
            "snippet": self._snippet(key, metadata),
        }
        self._call(
            "PUT", f"{self.base}/videos", f"updating the metadata of {key} on YouTube",
            cost="update", params={"part": "snippet"}, json=body,
        )  # fmt: skip

    def health_check(self) -> tuple[str, str]:
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


def _watch_url(video_id: str) -> str:
    return f"https://www.youtube.com/watch?v={video_id}"
