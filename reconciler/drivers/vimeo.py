"""The ``vimeo`` driver: Vimeo's API with tus resumable uploads.

``POST {api_endpoint}/me/videos`` with ``upload.approach = tus`` and the file's size creates
the video and answers its URI and an ``upload_link``, which is saved in the state file before
a byte is sent. The file goes in ``PATCH`` requests carrying ``Upload-Offset`` (tus 1.0.0),
each answered with the new offset; after an interruption, in this run or after a restart,
``HEAD`` on the upload link tells the offset and the upload goes on from there (a changed
file, or a link the platform no longer knows, starts over). The video is then polled until
its transcode completes; an error fails the job. A metadata change is ``PATCH`` on the video,
a changed file a new video (the old one is deleted once the new one is up).

The platform's ``auth`` references an access token (sent as a bearer token). Vimeo's rate
limit headers are respected: when ``X-RateLimit-Remaining`` reaches 0, the driver waits for
``X-RateLimit-Reset`` (a 429 is temporary, retried after that time).

For adoption, a video is found by its number or uri (:meth:`VimeoDriver.find`) and the
account's videos are listed for discovery (:meth:`VimeoDriver.discover`).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
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
)
from reconciler.drivers.state import Session, SessionState
from reconciler.drivers.videoapi import VideoApiDriver, description_of, title_of
from reconciler.model import HealthStatus, Platform
from reconciler.observe.payload import Payload

ACCEPT = "application/vnd.vimeo.*+json;version=3.4"
TUS = {"Tus-Resumable": "1.0.0"}
MAX_RATE_WAIT = 60.0  # wait in place for a rate-limit reset at most this long
FOUND_FIELDS = "uri,name,link,upload.size"  # what an import or discovery asks of a video
VIDEO = re.compile(r"(?:/videos/|https://(?:www\.)?vimeo\.com/)?([0-9]{1,20})")


class VimeoDriver(VideoApiDriver):
    WAITING = "transcoding"
    READY = ("transcode", "complete")
    ID_DETAIL = "video_uri"
    LIST_PAGE = 100  # videos asked for per page of a listing (Vimeo's most)

    def __init__(self, platform: Platform) -> None:
        super().__init__(platform)
        self.chunk = max(1, int(self.config.get("chunk_size_kib", 8192))) * 1024

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"bearer {self.secret()}", "Accept": ACCEPT}

    def _refused(self, response: requests.Response, doing: str) -> None:
        if response.status_code == 429:
            wait = web.retry_after(response.headers.get("Retry-After"))
            raise TemporaryError(
                f"{doing}: HTTP 429 rate limited by Vimeo",
                wait if wait is not None else _reset_in(response),
            )

    def _pace(self, response: requests.Response) -> None:
        reset = _reset_in(response)
        if response.headers.get("X-RateLimit-Remaining") == "0" and reset:
            time.sleep(min(reset, MAX_RATE_WAIT))  # the next call would be refused

    def _url(self, uri: str) -> str:
        return uri if uri.startswith("http") else f"{self.base}{uri}"

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
            asked = self._offset(session.session_url, doing)
            if asked is None:  # the platform lost the upload: its empty video goes too
                self._abandon(session)
                self.forget(key)
                session = None
            else:
                offset = asked
        reader = self._reader_at(payload, session, offset)
        if session is not None and reader is None:  # what was sent cannot be vouched for
            self._abandon(session)
            self.forget(key)
            session = None
        if session is None:
            session, offset, reader = (
                self._create(key, metadata, size, payload.expected, doing),
                0,
                payload.reader(),
            )
        assert session.session_url is not None and reader is not None
        while offset < size:
            if not reader.back_to(offset):  # the platform kept bytes not vouched for
                raise self._start_over(session, doing)
            start, length = offset, min(self.chunk, size - offset)
            response = self._call(
                "PATCH", session.session_url, doing, ok=(404, 409, 410),
                data=web.Chunk(reader, length, progress),
                headers={**TUS, "Upload-Offset": str(start),
                         "Content-Type": "application/offset+octet-stream"},
            )  # fmt: skip
            if response.status_code in (404, 410):
                raise TemporaryError(f"{doing}: the upload link expired; starting over")
            if response.status_code == 409:  # our offset was wrong: ask again
                asked = self._offset(session.session_url, doing)
                offset = asked if asked is not None else 0
                continue
            offset = int(response.headers.get("Upload-Offset", start + length))
            session = self._confirmed(session, reader, offset)
            self.keep(session)
        session = session.moved(state=SessionState.UPLOADED, bytes_confirmed=size)
        self._confirm(payload, reader, session)
        self.keep(session)
        return session

    def _abandon_unrecorded(self, session: Session) -> None:
        self._abandon(session)
        super()._abandon_unrecorded(session)

    def _abandon(self, session: Session) -> None:
        """The video an upload was for, when that upload will not be finished: deleted, so
        that no empty or wrong video is left in the account."""
        if session.remote_id:
            with contextlib.suppress(DriverError):  # best effort: it must not hide why
                self._remove(session.remote_id, session.key)

    def _create(
        self, key: str, metadata: dict[str, Any], size: int, sha256: str, doing: str
    ) -> Session:
        body = {"upload": {"approach": "tus", "size": size}, **_naming(key, metadata)}
        response = self._call("POST", f"{self.base}/me/videos", f"{doing}: creating the video",
                               json=body)  # fmt: skip
        video = web.json_object(response, doing)
        uri = video.get("uri")
        link = (video.get("upload") or {}).get("upload_link")
        if not uri or not link:
            raise PermanentError(f"{doing}: the platform gave no video uri or upload_link")
        session = Session(key, "vimeo", SessionState.UPLOADING, sha256, size, str(link), str(uri),
                          video.get("link"))  # fmt: skip
        self.keep(session, before_sending=True)  # on disk before the first byte goes
        return session

    def _offset(self, link: str, doing: str) -> int | None:
        """The offset the upload link holds, or None when it is gone."""
        response = self._call(
            "HEAD", link, f"{doing}: asking where the upload stopped", ok=(404, 410),
            headers=TUS,
        )  # fmt: skip
        if response.status_code in (404, 410):
            return None
        return int(response.headers.get("Upload-Offset", 0))

    def _poll(self, key: str, session: Session) -> str | None:
        """One look at the video: transcoded, still transcoding, or an error (permanent)."""
        assert session.remote_id is not None
        doing = f"checking the transcode of {key} on {self.platform.code}"
        response = self._call(
            "GET", self._url(session.remote_id), doing, ok=(404,),
            params={"fields": "uri,link,upload.status,transcode.status"},
        )  # fmt: skip
        if response.status_code == 404:
            self.forget(key)
            raise TemporaryError(f"{doing}: the uploaded video is gone; sending it again")
        video = web.json_object(response, doing)
        upload = (video.get("upload") or {}).get("status")
        transcode = (video.get("transcode") or {}).get("status")
        if upload == "error" or transcode == "error":
            self._abandon(session)
            self.forget(key)
            raise PermanentError(
                f"Vimeo did not accept {key} ({session.remote_id}): upload {upload}, "
                f"transcode {transcode}"
            )
        if transcode == "complete":
            return str(video.get("link") or "")
        return None

    def _link(self, remote_id: str) -> str:
        return self._url(remote_id)

    # -- the rest --------------------------------------------------------------------------
    def stat(self, key: str, size: int | None = None) -> RemoteObject | None:
        found = self.index(key)
        if found is None:
            return None
        uri, _, sent = found
        response = self._call(
            "GET", self._url(uri), f"looking up {key} on {self.platform.code}", ok=(404,),
            params={"fields": "uri,upload.size,transcode.status"},
        )  # fmt: skip
        if response.status_code == 404:
            return None
        video = web.json_object(response, f"looking up {key}")
        held = web.byte_count((video.get("upload") or {}).get("size"))
        session = self.kept(key)
        if held is not None and session is not None and held != session.file_size:
            sent = None  # it holds another size than was sent: not that copy
        return RemoteObject(sent, held, {"uri": uri})

    def id_problem(self, remote_id: str) -> str | None:
        if VIDEO.fullmatch(remote_id.strip()):
            return None
        return f"'{remote_id}' is not a Vimeo video id or uri"

    def find(self, remote_id: str) -> Found | None:
        """The video Vimeo knows by ``remote_id``: its number, its uri ``/videos/N`` or its
        ``https://vimeo.com/N`` link. Its id in the answer is the uri form, the id an upload
        records; with its name, link and size, no checksum (Vimeo gives none). None when
        there is no such video."""
        match = VIDEO.fullmatch(remote_id.strip())
        if match is None:
            raise PermanentError(f"'{remote_id}' is not a Vimeo video id or uri")
        uri = f"/videos/{match.group(1)}"
        doing = f"looking up {uri} on {self.platform.code}"
        response = self._call(
            "GET", self._url(uri), doing, ok=(404,), params={"fields": FOUND_FIELDS}
        )
        if response.status_code == 404:
            return None
        return _found(web.json_object(response, doing), uri)

    def discover(self) -> Iterator[Found]:
        """Every video of the account (``GET /me/videos``, page by page), with its name, link
        and size; no checksums (Vimeo gives none)."""
        doing = f"listing the videos of {self.platform.code}"
        url: str | None = f"{self.base}/me/videos"
        params: dict[str, Any] | None = {"fields": FOUND_FIELDS, "per_page": self.LIST_PAGE}
        seen: set[str] = set()
        while url is not None:
            body = web.json_object(self._call("GET", url, doing, params=params), doing)
            for video in body.get("data") or []:
                if isinstance(video, dict) and video.get("uri"):
                    yield _found(video, str(video["uri"]))
            url, params = self._next_page(body, seen, doing), None

    def _next_page(self, body: dict[str, Any], seen: set[str], doing: str) -> str | None:
        """The next page of a listing: on this API only (it gets the token), never twice."""
        following = (body.get("paging") or {}).get("next")
        if not following:
            return None
        url = self._url(str(following))
        if not url.startswith(f"{self.base}/"):
            raise PermanentError(f"{doing}: the next page is not on {self.base}; not followed")
        if url in seen:
            return None
        seen.add(url)
        return url

    def _remove(self, remote_id: str, key: str) -> None:
        self._call("DELETE", self._url(remote_id), f"deleting {key} from Vimeo", ok=(404,))

    def update_metadata(self, key: str, metadata: dict[str, Any]) -> None:
        uri = self.known(key)
        self._call("PATCH", self._url(uri), f"updating the metadata of {key} on Vimeo",
                   json=_naming(key, metadata))  # fmt: skip

    def health_check(self) -> tuple[str, str]:
        try:
            self._call("GET", f"{self.base}/me", "health check", params={"fields": "uri"})
        except (TemporaryError, PermanentError) as exc:
            return HealthStatus.DOWN, str(exc)
        return HealthStatus.HEALTHY, "the account answered"


def _naming(key: str, metadata: dict[str, Any]) -> dict[str, str]:
    """The video's name and description, as Vimeo takes them."""
    return {"name": title_of(key, metadata)[:128], "description": description_of(metadata)}


def _found(video: dict[str, Any], uri: str) -> Found:
    """A video as found by an import or a discovery."""
    name, link = video.get("name"), video.get("link")
    size = web.byte_count((video.get("upload") or {}).get("size"))
    return Found(
        uri, None, None, size, str(link) if link else None, None if name is None else str(name)
    )


def _reset_in(response: requests.Response) -> float | None:
    """Seconds until ``X-RateLimit-Reset`` (an ISO time or epoch seconds)."""
    value = response.headers.get("X-RateLimit-Reset")
    if not value:
        return None
    try:
        when = (
            datetime.fromtimestamp(float(value), UTC)
            if value.replace(".", "", 1).isdigit()
            else datetime.fromisoformat(value.replace("Z", "+00:00"))
        )
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
