"""What the ``youtube`` and ``vimeo`` drivers share: a video sent in a resumable session, then
polled until the platform has processed it.

:meth:`VideoApiDriver.upload` is the common course of an upload: the session kept in the state
file is resumed when it was for the same file (and dropped when the file changed), the
platform's processing is awaited, and a video the key held before is deleted once the new one
is up (neither platform replaces a video's bytes). Each driver supplies the protocol steps:
``_send`` (the resumable session), ``_poll`` (one processing check), ``_remove`` and
``_link``.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from typing import Any, ClassVar

from reconciler.drivers.base import Progress, TemporaryError, Uploaded
from reconciler.drivers.http import ApiDriver
from reconciler.drivers.state import Session, SessionState
from reconciler.model import Platform
from reconciler.observe.payload import HashedReader, Payload, SourceChanged


class VideoApiDriver(ApiDriver):
    WAITING = "processing"  # what the platform is doing after the upload, for messages
    READY: ClassVar[tuple[str, str]]  # what a processed video's upload details say
    ID_DETAIL = "video_id"  # the upload details' name for the platform's id

    def __init__(self, platform: Platform) -> None:
        super().__init__(platform)
        self.poll_interval = float(self.config.get("poll_interval", 15))
        self.processing_timeout = float(self.config.get("processing_timeout", 900))

    def upload(
        self, payload: Payload, key: str, metadata: dict[str, Any], progress: Progress | None = None
    ) -> Uploaded:
        size, sha256 = payload.size, payload.expected
        previous = self.index(key)  # the finished video at this key now: replaced once up
        session = self.kept(key)
        if session is not None and (session.file_sha256, session.file_size) != (sha256, size):
            if session.state != SessionState.DONE:
                self._abandon(session)  # another file: its half-sent video goes
            session = None
        if session is None or session.state == SessionState.UPLOADING:
            session = self._send(payload, key, metadata, session, progress)
        remote_id = session.remote_id
        assert remote_id is not None
        link = self._wait_ready(key, session)
        session = session.moved(state=SessionState.DONE, remote_url=link or session.remote_url)
        self.keep(session)
        if previous is not None and previous[0] != remote_id:
            self._remove(previous[0], key)
        return Uploaded(
            remote_id,
            session.remote_url or self._link(remote_id),
            sha256,
            {"checksum": "sent", self.ID_DETAIL: remote_id, self.READY[0]: self.READY[1]},
        )

    def _reader_at(
        self, payload: Payload, session: Session | None, offset: int
    ) -> HashedReader | None:
        """A reader at ``offset`` (where the platform says the upload stands) whose hash
        covers exactly the bytes the platform holds: the prefix is read from the payload
        again and must hash to what was recorded when it was sent. None: it cannot be
        vouched for, and the upload starts over."""
        if offset == 0:
            return payload.reader()
        if session is None or offset != session.bytes_confirmed or not session.confirmed_sha256:
            return None
        reader = payload.reader(offset)
        return reader if reader.hexdigest == session.confirmed_sha256 else None

    def _confirmed(self, session: Session, reader: HashedReader, offset: int) -> Session:
        """The session once the platform confirmed ``offset``: with the hash of those bytes
        as they were sent, when the reader can vouch for it (it then stands there)."""
        vouched = reader.back_to(offset)
        return session.moved(
            bytes_confirmed=offset, confirmed_sha256=reader.hexdigest if vouched else None
        )

    def _start_over(self, session: Session, doing: str) -> TemporaryError:
        """The platform holds bytes this run cannot vouch for: what it made goes, and the
        upload starts over on the next attempt."""
        self._abandon(session)
        self.forget(session.key)
        return TemporaryError(
            f"{doing}: the platform kept bytes that cannot be checked against what was sent; "
            "the upload starts over"
        )

    def _confirm(self, payload: Payload, reader: HashedReader, session: Session) -> None:
        """All bytes are on the platform: they must be the expected ones, read in this run
        (the part sent by an earlier run is read again). Otherwise the video goes."""
        if reader.tell() != payload.size:
            reader = payload.reader(payload.size)
        try:
            reader.confirm()
        except SourceChanged:
            self._abandon(session)
            self.forget(session.key)
            raise

    def _abandon(self, session: Session) -> None:
        """Remove what an upload that will not be finished left on the platform (a video
        created for it); the default leaves nothing to remove."""

    def _wait_ready(self, key: str, session: Session) -> str | None:
        """Poll until the video is processed (its link, if the platform gave one); still
        processing at the timeout is temporary (the next attempt polls on)."""
        assert session.remote_id is not None
        deadline = time.monotonic() + self.processing_timeout
        while True:
            ready = self._poll(key, session)
            if ready is not None:
                return ready or None
            if time.monotonic() >= deadline:
                raise TemporaryError(
                    f"video {session.remote_id} of {key} is still {self.WAITING} after "
                    f"{self.processing_timeout:g} s; checked again on the next attempt",
                    self.poll_interval,
                )
            time.sleep(self.poll_interval)

    @abstractmethod
    def _send(
        self,
        payload: Payload,
        key: str,
        metadata: dict[str, Any],
        session: Session | None,
        progress: Progress | None,
    ) -> Session:
        """Send the payload in a resumable session (resuming ``session`` when given), reading
        it through one hashing reader and checking it with :meth:`_confirm` once the platform
        holds every byte; returns the session of the finished upload, with the platform's
        id."""

    @abstractmethod
    def _poll(self, key: str, session: Session) -> str | None:
        """One processing check: None while processing, the video's link ("" if none) once
        processed; raises when the platform did not accept the video."""

    @abstractmethod
    def _link(self, remote_id: str) -> str:
        """The video's URL when the platform gave none."""


def title_of(key: str, metadata: dict[str, Any]) -> str:
    """A video's title: the asset's, else its code, else the remote key (uncut)."""
    return str(metadata.get("title") or metadata.get("code") or key)


def description_of(metadata: dict[str, Any]) -> str:
    return str(metadata.get("description") or "")
