"""Loopback servers that speak the platforms' upload protocols, for the API driver tests.

One :class:`FakePlatforms` serves, on 127.0.0.1 and a free port:

* a generic REST upload API under ``/cdn`` (API key in ``X-API-Key``),
* Google's OAuth2 token endpoint at ``/token`` and the YouTube Data API v3 under
  ``/youtube/v3`` with resumable uploads under ``/upload/youtube/v3``,
* Vimeo's API under ``/vimeo`` with tus upload links under ``/vimeo-upload``.

It keeps what arrived (every body byte is counted per upload) and lets a test inject the
failures the drivers must survive: a status answered once, a connection stalled at a chosen
fraction of an upload (so that the client can be killed there), expired access tokens,
processing that fails, a spent quota, rate limits. Videos already in an account (uploaded by
other means) are added with :meth:`FakePlatforms.add_video` and
:meth:`FakePlatforms.add_vimeo_video`; Vimeo's ``GET /me/videos`` lists them, page by page.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

API_KEY = "cdn-test-key"
REFRESH_TOKEN = "yt-refresh-test"
VIMEO_TOKEN = "vimeo-test-token"


@dataclass
class Upload:
    """One resumable upload (a YouTube session or a Vimeo upload link)."""

    id: str
    size: int
    metadata: dict[str, Any]
    data: bytearray = field(default_factory=bytearray)
    offsets: list[int] = field(default_factory=list)  # where each chunk said it started
    video: str | None = None  # the video made once complete


@dataclass
class Video:
    id: str
    data: bytes
    metadata: dict[str, Any]
    polls: int = 0
    ready: bool = False  # processed long ago (put there by add_video, not uploaded)


class FakePlatforms:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[str, dict[str, Any]] = {}  # the REST API's objects
        self.uploads: dict[str, Upload] = {}
        self.videos: dict[str, Video] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.tokens: set[str] = set()
        self.token_calls = 0
        self.status_queries = 0  # "where did the upload stop?" questions
        self.counter = 0
        # faults
        self.once: list[tuple[str, str, int, dict[str, str], Any]] = []
        self.stall_fraction: float | None = None  # stall an upload once this much arrived
        self.stalled = threading.Event()  # set when a request is being stalled
        self.release = threading.Event()
        self.drop_fraction: float | None = None  # answer 503 once this much arrived
        self.processing_polls = 1  # polls answered "processing" before the outcome
        self.processing_outcome = "succeeded"  # or "failed"
        self.quota_exceeded = False
        self.rate_remaining: int | None = None  # Vimeo's X-RateLimit-Remaining
        self.health_status = 200
        self.chunk_delay = 0.0  # seconds each upload chunk takes to arrive
        self.lost: set[str] = set()  # tus upload links the server forgot (the video stays)
        self.echo_key = False  # the REST API answers a rejected key with the key itself
        self.idempotent: dict[str, str] = {}  # Idempotency-Key -> the object it made
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakePlatforms:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def next_id(self) -> int:
        with self.lock:
            self.counter += 1
            return self.counter

    def fail_once(
        self, method: str, path_prefix: str, status: int, headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> None:  # fmt: skip
        self.once.append((method, path_prefix, status, headers or {}, body))

    def received(self, upload: Upload) -> int:
        return len(upload.data)

    def upload_of(self, size: int) -> Upload:
        (found,) = [u for u in self.uploads.values() if u.size == size]
        return found

    def bytes_received(self) -> int:
        """Every upload body byte that arrived, over all uploads."""
        return sum(len(u.data) for u in self.uploads.values())

    def add_video(self, data: bytes, title: str) -> str:
        """A YouTube video already in the account (uploaded by other means, processed long
        ago); returns its id."""
        vid = f"v-{self.next_id()}"
        self.videos[vid] = Video(vid, data, {"snippet": {"title": title}}, ready=True)
        return vid

    def add_vimeo_video(self, data: bytes, name: str) -> str:
        """A Vimeo video already in the account (uploaded and transcoded); returns its uri."""
        number = str(self.next_id())
        self.uploads[number] = Upload(number, len(data), {"name": name}, bytearray(data))
        self.videos[number] = Video(number, data, self.uploads[number].metadata, ready=True)
        return f"/videos/{number}"


def _handler(fake: FakePlatforms) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        # -- plumbing ----------------------------------------------------------------------
        def _send(
            self, status: int, body: Any = None, headers: dict[str, str] | None = None
        ) -> None:
            payload = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _json(self) -> dict[str, Any]:
            raw = self._body()
            return json.loads(raw) if raw else {}

        def _route(self) -> None:
            parts = urlsplit(self.path)
            path, query = unquote(parts.path), parse_qs(parts.query)
            fake.requests.append((self.command, path))
            for i, (method, prefix, status, headers, body) in enumerate(fake.once):
                if method == self.command and path.startswith(prefix):
                    del fake.once[i]
                    self._body()
                    self._send(status, body or {"error": {"message": f"injected {status}"}},
                               headers)  # fmt: skip
                    return
            if path == "/token":
                return self._token()
            if path.startswith("/cdn"):
                return self._cdn(path[len("/cdn") :])
            if path.startswith("/upload/youtube/v3/videos"):
                return self._yt_upload(query)
            if path.startswith("/youtube/v3/videos"):
                return self._yt_videos(query)
            if path.startswith("/vimeo-upload/"):
                return self._tus(path.rsplit("/", 1)[1])
            if path.startswith("/vimeo"):
                self.query = query  # Vimeo's listing pages by it; _vimeo(path) stays patchable
                return self._vimeo(path[len("/vimeo") :])
            self._send(404, {"error": "no such path"})

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _route

        def _stall_or_drop(self, upload: Upload) -> bool:
            """Stall (until released) or drop a request once enough of the upload arrived;
            True when the request was not served."""
            done = len(upload.data) / upload.size if upload.size else 1.0
            if fake.stall_fraction is not None and done >= fake.stall_fraction:
                fake.stall_fraction = None
                fake.stalled.set()
                fake.release.wait(60)
                self.close_connection = True
                return True
            if fake.drop_fraction is not None and done >= fake.drop_fraction:
                fake.drop_fraction = None
                self._body()
                self._send(503, {"error": {"message": "backend busy"}}, {"Retry-After": "0"})
                return True
            return False

        # -- generic REST API --------------------------------------------------------------
        def _cdn(self, path: str) -> None:
            if path == "/health":
                return self._send(fake.health_status, {"ok": fake.health_status == 200})
            if self.headers.get("X-API-Key") != API_KEY:
                self._body()
                if fake.echo_key:  # as some platforms do: the rejected key, quoted back
                    given = self.headers.get("X-API-Key", "")
                    return self._send(403, {"message": f"API key '{given}' is not valid"})
                return self._send(401, {"message": "invalid API key"})
            if (path == "/assets" and self.command == "POST") or (
                path.startswith("/assets/") and self.command == "PUT"
            ):
                data = self._body()
                if len(data) < int(self.headers.get("Content-Length") or 0):
                    self.close_connection = True  # the client went away: no object
                    return None
                again = fake.idempotent.get(self.headers.get("Idempotency-Key", ""))
                if self.command == "POST" and again in fake.objects:  # the first answer again
                    found = fake.objects[again]
                    body = {"id": again, "url": f"{fake.url}/files/{again}",
                            "sha256": found["sha256"], "size": found["size"]}  # fmt: skip
                    return self._send(201, body)
                oid = f"obj-{fake.next_id()}" if self.command == "POST" else path[8:]
                if self.headers.get("Idempotency-Key"):
                    fake.idempotent[self.headers["Idempotency-Key"]] = oid
                digest = hashlib.sha256(data).hexdigest()
                fake.objects[oid] = {
                    "id": oid,
                    "sha256": digest,
                    "size": len(data),
                    "data": data,
                    "key": unquote(self.headers.get("X-Reconcile-Key", "")),
                    "metadata": json.loads(self.headers.get("X-Reconcile-Metadata") or "{}"),
                }
                body = {"id": oid, "url": f"{fake.url}/files/{oid}", "sha256": digest,
                        "size": len(data)}  # fmt: skip
                return self._send(201, body)
            oid = path[len("/assets/") :]
            found = fake.objects.get(oid)
            if found is None:
                self._body()
                return self._send(404, {"message": "not found"})
            if self.command == "GET":
                return self._send(200, {k: v for k, v in found.items() if k != "data"})
            if self.command == "DELETE":
                del fake.objects[oid]
                return self._send(204)
            if self.command == "PATCH":
                found["metadata"] = self._json()
                return self._send(200, {"id": oid})
            self._send(405, {"message": "method not allowed"})

        # -- YouTube -----------------------------------------------------------------------
        def _token(self) -> None:
            form = parse_qs(self._body().decode())
            fake.token_calls += 1
            if form.get("refresh_token") != [REFRESH_TOKEN]:
                return self._send(400, {"error": "invalid_grant"})
            token = f"access-{fake.next_id()}"
            fake.tokens.add(token)
            self._send(200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

        def _authorized(self) -> bool:
            auth = self.headers.get("Authorization", "")
            if auth.removeprefix("Bearer ") in fake.tokens:
                return True
            self._body()
            self._send(401, {"error": {"code": 401, "message": "Invalid Credentials"}})
            return False

        def _yt_upload(self, query: dict[str, list[str]]) -> None:
            if not self._authorized():
                return
            if self.command == "POST":
                if fake.quota_exceeded:
                    self._body()
                    return self._send(403, {"error": {"code": 403, "message": "quota",
                                            "errors": [{"reason": "quotaExceeded"}]}})  # fmt: skip
                metadata = self._json()
                sid = f"s-{fake.next_id()}"
                size = int(self.headers["X-Upload-Content-Length"])
                fake.uploads[sid] = Upload(sid, size, metadata)
                location = (
                    f"{fake.url}/upload/youtube/v3/videos?uploadType=resumable&upload_id={sid}"
                )
                return self._send(200, None, {"Location": location})
            upload = fake.uploads.get(query.get("upload_id", [""])[0])
            if upload is None:
                self._body()
                return self._send(404, {"error": {"message": "session not found"}})
            content_range = self.headers.get("Content-Range", "")
            if content_range.startswith("bytes */"):
                self._body()
                fake.status_queries += 1
                return self._yt_answer(upload)
            if self._stall_or_drop(upload):
                return
            start = int(content_range.split()[1].split("-")[0])
            data = self._body()
            upload.offsets.append(start)
            if start != len(upload.data):  # not where the server is: say where it is
                return self._yt_answer(upload)
            upload.data.extend(data)
            self._yt_answer(upload)

        def _yt_answer(self, upload: Upload) -> None:
            if len(upload.data) < upload.size:
                got = len(upload.data)
                headers = {"Range": f"bytes=0-{got - 1}"} if got else {}
                return self._send(308, None, headers)
            if upload.video is None:
                vid = f"v-{fake.next_id()}"
                fake.videos[vid] = Video(vid, bytes(upload.data), upload.metadata)
                upload.video = vid
            video = fake.videos[upload.video]
            self._send(201, {"id": video.id, "snippet": video.metadata.get("snippet", {})})

        def _yt_videos(self, query: dict[str, list[str]]) -> None:
            if not self._authorized():
                return
            if self.command == "GET":
                found = fake.videos.get(query.get("id", [""])[0])
                if found is None:
                    return self._send(200, {"items": []})
                found.polls += 1
                if found.ready:
                    upload, processing = "processed", "succeeded"
                elif found.polls <= fake.processing_polls:
                    upload, processing = "uploaded", "processing"
                elif fake.processing_outcome == "succeeded":
                    upload, processing = "processed", "succeeded"
                else:
                    upload, processing = "failed", "failed"
                item = {"id": found.id, "status": {"uploadStatus": upload},
                        "processingDetails": {"processingStatus": processing}}  # fmt: skip
                if upload == "failed":
                    item["status"]["failureReason"] = "codec"
                parts = query.get("part", [""])[0].split(",")
                if "fileDetails" in parts:  # a uint64, which the API sends as a JSON string
                    item["fileDetails"] = {"fileSize": str(len(found.data))}
                if "snippet" in parts:
                    item["snippet"] = found.metadata.get("snippet", {})
                return self._send(200, {"items": [item]})
            if self.command == "PUT":
                body = self._json()
                found = fake.videos.get(body.get("id", ""))
                if found is None:
                    return self._send(404, {"error": {"message": "videoNotFound"}})
                found.metadata["snippet"] = body.get("snippet", {})
                return self._send(200, body)
            if self.command == "DELETE":
                self._body()
                gone = fake.videos.pop(query.get("id", [""])[0], None)
                return self._send(204 if gone else 404, None if gone else {"error": {}})
            self._send(405, {"error": {"message": "method not allowed"}})

        # -- Vimeo -------------------------------------------------------------------------
        def _vimeo_headers(self) -> dict[str, str]:
            if fake.rate_remaining is None:
                return {}
            fake.rate_remaining = max(0, fake.rate_remaining - 1)
            reset = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()
            return {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": str(fake.rate_remaining),
                    "X-RateLimit-Reset": reset}  # fmt: skip

        def _vimeo(self, path: str) -> None:
            if self.headers.get("Authorization", "") != f"bearer {VIMEO_TOKEN}":
                self._body()
                return self._send(401, {"error": "a valid user token must be passed"})
            headers = self._vimeo_headers()
            if path == "/me":
                return self._send(200, {"uri": "/users/1"}, headers)
            if path == "/me/videos" and self.command == "POST":
                body = self._json()
                number = fake.next_id()
                size = int(body["upload"]["size"])
                uid = str(number)
                fake.uploads[uid] = Upload(uid, size, body)
                link = f"{fake.url}/vimeo-upload/{uid}"
                video = {
                    "uri": f"/videos/{number}",
                    "link": f"https://vimeo.com/{number}",
                    "upload": {"approach": "tus", "upload_link": link, "size": size},
                }
                return self._send(200, video, headers)  # fmt: skip
            if path == "/me/videos" and self.command == "GET":
                return self._send(200, self._vimeo_listing(self.query), headers)
            if path.startswith("/videos/"):
                number = path.rsplit("/", 1)[1]
                upload = fake.uploads.get(number)
                if upload is None or upload.video == "deleted":
                    self._body()
                    return self._send(404, {"error": "not found"}, headers)
                if self.command == "DELETE":
                    upload.video = "deleted"
                    return self._send(204, None, headers)
                if self.command == "PATCH":
                    upload.metadata.update(self._json())
                    return self._send(200, {"uri": path}, headers)
                complete = len(upload.data) == upload.size
                video = fake.videos.setdefault(number, Video(number, b"", upload.metadata))
                transcode = "complete" if video.ready else "in_progress"
                if complete and not video.ready:
                    video.polls += 1
                    if video.polls > fake.processing_polls:
                        ok = fake.processing_outcome == "succeeded"
                        transcode = "complete" if ok else "error"
                body = {"uri": path, "link": f"https://vimeo.com/{number}",
                        "upload": {"status": "complete" if complete else "in_progress",
                                   "size": upload.size},
                        "transcode": {"status": transcode}}  # fmt: skip
                if "name" in upload.metadata:
                    body["name"] = upload.metadata["name"]
                return self._send(200, body, headers)
            self._send(404, {"error": "no such path"})

        def _vimeo_listing(self, query: dict[str, list[str]]) -> dict[str, Any]:
            """GET /me/videos: the account's videos (not deleted), ``per_page`` at a time."""
            numbers = sorted(
                (u.id for u in fake.uploads.values() if u.id.isdigit() and u.video != "deleted"),
                key=int,
            )
            per_page = int(query.get("per_page", ["25"])[0])
            page = int(query.get("page", ["1"])[0])
            shown = numbers[(page - 1) * per_page : page * per_page]
            data = [
                {"uri": f"/videos/{n}", "name": fake.uploads[n].metadata.get("name"),
                 "link": f"https://vimeo.com/{n}", "upload": {"size": fake.uploads[n].size}}
                for n in shown
            ]  # fmt: skip
            more = page * per_page < len(numbers)
            following = f"/me/videos?page={page + 1}&per_page={per_page}" if more else None
            return {"total": len(numbers), "page": page, "per_page": per_page, "data": data,
                    "paging": {"next": following, "previous": None}}  # fmt: skip

        def _tus(self, uid: str) -> None:
            upload = fake.uploads.get(uid)
            if upload is None or uid in fake.lost:
                self._body()
                return self._send(404, {"error": "unknown upload"})
            tus = {"Tus-Resumable": "1.0.0", "Upload-Offset": str(len(upload.data)),
                   "Upload-Length": str(upload.size)}  # fmt: skip
            if self.command == "HEAD":
                fake.status_queries += 1
                return self._send(200, None, tus)
            if self.command != "PATCH":
                return self._send(405, {"error": "method not allowed"})
            if self._stall_or_drop(upload):
                return
            offset = int(self.headers.get("Upload-Offset", -1))
            if offset != len(upload.data):
                self._body()
                return self._send(409, {"error": "offset mismatch"}, tus)
            data = self._body()
            time.sleep(fake.chunk_delay)
            upload.offsets.append(offset)
            upload.data.extend(data)
            tus["Upload-Offset"] = str(len(upload.data))
            self._send(204, None, tus)

    return Handler
