"""The ``http`` driver: a REST upload endpoint (a CDN's API, a DAM, a social media hub).

Settings come from the Platform manifest:

* ``api_endpoint``: the API's base URL; objects live under ``{api_endpoint}/{upload_path}``
  (``upload_path`` default ``assets``);
* ``upload_method``: ``POST`` (default) sends the file to the collection, ``PUT`` to
  ``{collection}/{remote key}``; the body is the file's bytes, with its MIME type, and the
  remote key and metadata in ``X-Reconcile-Key`` / ``X-Reconcile-Metadata`` headers;
* the JSON response names the object: ``id_field`` (default ``id``), ``url_field``
  (``url``) and, when the platform reports one, ``checksum_field`` (``sha256``);
* ``stat`` is ``GET {collection}/{id}``, ``delete`` is ``DELETE {collection}/{id}``, a
  metadata update is ``PATCH {collection}/{id}`` with the metadata as JSON;
* ``health_path`` (default ``health``): ``GET`` must answer 2xx.

Credentials follow ``auth_type``: ``api_key`` sends the referenced secret in the
``api_key_header`` header (default ``X-API-Key``), ``bearer`` and ``oauth2`` as
``Authorization: Bearer``, ``basic`` takes ``user:password``. 429 and 5xx are temporary
(``Retry-After`` honoured), any other 4xx permanent.

Objects are found again by the id kept in the state file (``upload_sessions``); an object
uploaded by other means is found by its id for an import (:meth:`HttpDriver.find`). The API
has no listing this driver knows of, so there is no discovery.
"""

from __future__ import annotations

import json
import secrets
import threading
from abc import abstractmethod
from typing import Any
from urllib.parse import quote

import requests

from reconciler.drivers import web
from reconciler.drivers.base import (
    Driver,
    Found,
    PermanentError,
    Progress,
    RemoteObject,
    TemporaryError,
    Uploaded,
    resolve_secret,
)
from reconciler.drivers.state import Session, SessionState
from reconciler.model import HealthStatus, Platform
from reconciler.observe.payload import NotLanded, Payload, SourceChanged
from reconciler.redact import register


class ApiDriver(Driver):
    """What the API drivers share: a thread-local HTTP session, the one way of calling the
    platform (:meth:`_call`), the state file's index of remote ids, and the credential."""

    def __init__(self, platform: Platform) -> None:
        super().__init__(platform)
        if not platform.api_endpoint:
            raise PermanentError(f"platform {platform.code} needs api_endpoint for its driver")
        self.base = platform.api_endpoint.rstrip("/")
        self.config = platform.driver_config
        self._local = threading.local()

    @property
    def http(self) -> requests.Session:
        if not hasattr(self._local, "http"):
            self._local.http = web.session()
        return self._local.http

    def secret(self) -> str:
        return resolve_secret(self.platform.auth, f"platform {self.platform.code}")

    def _call(
        self, method: str, url: str, doing: str, ok: tuple[int, ...] = (), **kw: Any
    ) -> requests.Response:
        """The one way an API driver calls its platform: with its credentials
        (:meth:`_auth`, renewed once on a 401 when :meth:`_renew` can), the platform's own
        refusals raised (:meth:`_refused`), then the failure rule of :func:`web.check`; a
        success is paced (:meth:`_pace`)."""
        extra = kw.pop("headers", {})
        for attempt in (1, 2):
            auth = self._auth()
            headers = {**auth, **extra}
            response = web.request(self.http, method, url, doing, headers=headers, **kw)
            if response.status_code == 401 and attempt == 1 and self._renew(auth):
                continue
            self._refused(response, doing)
            checked = web.check(response, doing, ok)
            self._pace(response)
            return checked
        raise AssertionError("unreachable")

    def _auth(self) -> dict[str, str]:
        """The headers that carry the platform's credential (and any it always wants)."""
        return {}

    def _renew(self, auth: dict[str, str]) -> bool:
        """After a 401 to ``auth``: whether a fresh credential was obtained to try again."""
        return False

    def _refused(self, response: requests.Response, doing: str) -> None:
        """Raise for an answer the platform means in its own way (a spent quota)."""

    def _pace(self, response: requests.Response) -> None:
        """Wait, after a success, when the platform said the next call would be refused."""

    def index(self, key: str) -> tuple[str, str | None, str | None] | None:
        """(remote id, url, sha256 sent) of the object at ``key``, from the state file."""
        if self.state is None:
            raise PermanentError(f"the {self.platform.driver} driver needs the state file")
        return self.state.remote(key)

    def keep(self, session: Session, before_sending: bool = False) -> None:
        """Keep a session in the state file (written when the file is free). One that must be
        there before the first byte (to resume or remove it after a kill) waits for a busy
        file up to the lock timeout; if it is still busy, the upload is not started now: a
        temporary failure, retried."""
        if self.state is None:
            return
        if not before_sending:
            self.state.save(session)
        elif not self.state.record_before_sending(session):
            self._abandon_unrecorded(session)
            raise TemporaryError(
                f"the state file stayed busy, so the upload of {session.key} to "
                f"{self.platform.code} could not be recorded before its first byte; it waits"
            )

    def _abandon_unrecorded(self, session: Session) -> None:
        """What an upload that could not be recorded made on the platform goes (the video a
        Vimeo upload created); the default has nothing to remove."""
        self.forget(session.key)

    def forget(self, key: str) -> None:
        if self.state is not None:
            self.state.forget(key)

    def known(self, key: str) -> str:
        """The remote id of the object at ``key``; unknown is permanent."""
        found = self.index(key)
        if found is None:
            raise PermanentError(f"{key} is not known on {self.platform.code}")
        return found[0]

    def delete(self, key: str) -> None:
        found = self.index(key)
        if found is not None:
            self._remove(found[0], key)
        self.forget(key)

    def replaced(self, key: str, previous_id: str | None) -> bool:
        current = self.index(key)
        if not previous_id or current is None or current[0] == previous_id or previous_id == key:
            return False
        self._remove(previous_id, key)
        return True

    @abstractmethod
    def _remove(self, remote_id: str, key: str) -> None:
        """Delete the object with this id from the platform; a missing one is no error."""


class HttpDriver(ApiDriver):
    def __init__(self, platform: Platform) -> None:
        super().__init__(platform)
        path = str(self.config.get("upload_path", "assets")).strip("/")
        self.collection = f"{self.base}/{path}" if path else self.base
        self.method = str(self.config.get("upload_method", "POST")).upper()
        self.health_url = f"{self.base}/{str(self.config.get('health_path', 'health')).lstrip('/')}"
        self.id_field = str(self.config.get("id_field", "id"))
        self.url_field = str(self.config.get("url_field", "url"))
        self.checksum_field = str(self.config.get("checksum_field", "sha256"))
        # a PUT replaces the object in place: it is sent from a copy checked beforehand
        self.needs_verified_copy = self.method == "PUT"

    def _auth(self) -> dict[str, str]:
        kind = self.platform.auth_type or ("api_key" if self.platform.auth else "none")
        if kind == "none":
            return {}
        secret = self.secret()
        if kind == "api_key":
            return {str(self.config.get("api_key_header", "X-API-Key")): secret}
        if kind == "basic":
            import base64

            register(secret.partition(":")[2])  # the password alone is a secret too
            return {"Authorization": "Basic " + base64.b64encode(secret.encode()).decode()}
        return {"Authorization": f"Bearer {secret}"}

    def _object_url(self, remote_id: str) -> str:
        return f"{self.collection}/{quote(remote_id, safe='')}"

    def upload(
        self, payload: Payload, key: str, metadata: dict[str, Any], progress: Progress | None = None
    ) -> Uploaded:
        size, sha256 = payload.size, payload.expected
        url = self.collection if self.method == "POST" else self._object_url(key)
        self._auth()  # a credential that cannot be read fails before anything is recorded
        headers = {
            "Content-Type": str(metadata.get("mime_type") or "application/octet-stream"),
            "X-Reconcile-Key": quote(key, safe="/"),
            "X-Reconcile-Metadata": json.dumps(metadata, ensure_ascii=True, default=str),
            "X-Content-SHA256": sha256,
        }
        doing = f"uploading {key} to {self.platform.code}"
        previous = self.index(key) if self.state is not None else None
        headers["Idempotency-Key"] = self._idempotency_key(key, sha256, size)
        reader = payload.reader()
        response = self._call(
            self.method, url, doing, data=web.Chunk(reader, size, progress), headers=headers
        )
        body = web.json_object(response, doing)
        remote_id = body.get(self.id_field)
        if remote_id in (None, ""):
            raise PermanentError(f"{doing}: the response names no object ('{self.id_field}')")
        reported = body.get(self.checksum_field)
        held = web.byte_count(body.get("size"))
        made_new = previous is None or previous[0] != str(remote_id)
        try:
            reader.confirm()
            if held is not None and held != size:
                raise NotLanded(
                    f"{doing}: the platform says it holds {held} bytes of the {size} sent", None
                )
            if reported and str(reported) != sha256:
                raise NotLanded(
                    f"{doing}: the platform reports sha256 {str(reported)[:12]}... for what "
                    f"was sent as {sha256[:12]}...",
                    str(reported),
                )
        except (SourceChanged, NotLanded):
            if made_new:  # what it made is not the copy: it goes again
                self._remove(str(remote_id), key)
            raise
        link = str(body.get(self.url_field) or self._object_url(str(remote_id)))
        self.keep(
            Session(key, "http", SessionState.DONE, sha256, size, None, str(remote_id), link, size)
        )  # fmt: skip
        if previous is not None and made_new:  # a POST made a new one
            self._remove(previous[0], key)
        return Uploaded(
            str(remote_id),
            link,
            sha256,
            {"checksum": "reported" if reported else "sent", "remote_id": str(remote_id)},
        )

    def _idempotency_key(self, key: str, sha256: str, size: int) -> str:
        """One key per intended upload, recorded before its first byte: a retry, or the next
        run after a kill before the answer arrived, sends the same one, and a platform that
        honours the header answers with the object it made then; a later upload of the same
        bytes (a master reverted, a copy deleted on the platform) is a new intent and a new
        key, so it is really stored again."""
        session = self.kept(key)
        if (
            session is not None
            and session.protocol == "http"
            and session.state == SessionState.UPLOADING
            and (session.file_sha256, session.file_size) == (sha256, size)
            and session.session_url
        ):
            return session.session_url
        fresh = secrets.token_hex(20)
        self.keep(
            Session(key, "http", SessionState.UPLOADING, sha256, size, fresh), before_sending=True
        )
        return fresh

    def stat(self, key: str, size: int | None = None) -> RemoteObject | None:
        found = self.index(key)
        if found is None:
            return None
        remote_id, _, sent = found
        doing = f"looking up {key} on {self.platform.code}"
        response = self._call("GET", self._object_url(remote_id), doing, ok=(404, 410))
        if response.status_code in (404, 410):
            return None
        body = web.json_object(response, doing)
        reported = body.get(self.checksum_field)
        held = web.byte_count(body.get("size"))
        session = self.kept(key)
        if (
            not reported
            and held is not None
            and session is not None
            and (held != session.file_size)
        ):
            sent = None  # it says it holds another size than was sent: not that copy
        return RemoteObject(str(reported) if reported else sent, held, {"remote_id": remote_id})

    def id_problem(self, remote_id: str) -> str | None:
        if remote_id.strip() in ("", ".", ".."):
            return f"'{remote_id}' is not an object id on {self.platform.code}"
        return None

    def find(self, remote_id: str) -> Found | None:
        """The object the API knows by the id ``remote_id`` (``GET {collection}/{id}``, as
        :meth:`stat` looks up a recorded one), with the checksum and size it reports; None
        when it answers 404 or 410."""
        if problem := self.id_problem(remote_id):
            raise PermanentError(problem)
        doing = f"looking up {remote_id} on {self.platform.code}"
        response = self._call("GET", self._object_url(remote_id), doing, ok=(404, 410))
        if response.status_code in (404, 410):
            return None
        body = web.json_object(response, doing)
        reported, link = body.get(self.checksum_field), body.get(self.url_field)
        return Found(
            remote_id, None, str(reported) if reported else None,
            web.byte_count(body.get("size")), str(link or self._object_url(remote_id)),
        )  # fmt: skip

    def _remove(self, remote_id: str, key: str) -> None:
        self._call(
            "DELETE", self._object_url(remote_id), f"deleting {key} from {self.platform.code}",
            ok=(404, 410),
        )  # fmt: skip

    def update_metadata(self, key: str, metadata: dict[str, Any]) -> None:
        self._call(
            "PATCH", self._object_url(self.known(key)),
            f"updating the metadata of {key} on {self.platform.code}", json=metadata,
        )  # fmt: skip

    def health_check(self) -> tuple[str, str]:
        try:
            self._call("GET", self.health_url, "health check")
        except (TemporaryError, PermanentError) as exc:
            return HealthStatus.DOWN, str(exc)
        return HealthStatus.HEALTHY, f"{self.health_url} answered"
