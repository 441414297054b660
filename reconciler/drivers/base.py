"""The driver interface: how bytes reach a platform, and how failures are told apart.

Every driver (local folder, S3, ...) implements :class:`Driver`. Apply calls
:meth:`Driver.upload`, :meth:`Driver.stat`, :meth:`Driver.delete`,
:meth:`Driver.update_metadata`, :meth:`Driver.health_check` and :meth:`Driver.cleanup`; it
never looks inside a driver. A driver signals failures with two types, which drive retries and
job states:

* :class:`TemporaryError`: worth retrying (a timeout, a 503, a throttle); it may carry a
  ``retry_after`` hint in seconds, which the retry policy honours;
* :class:`PermanentError`: retrying cannot help (no permission, no space, a rejected file);
  the job fails at once with the message;
* :class:`Deferred`: the platform will take no more work until a known time (a spent daily
  quota); the job is deferred to then, not failed, and the platform's other jobs of the run
  are deferred with it.

Any other exception from a driver is treated as permanent, with its text as the message.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.errors import (
    Cancelled,
    Deferred,
    DriverError,
    PermanentError,
    TemporaryError,
)
from reconciler.model import Platform, SecretRef
from reconciler.observe.credentials import read_secret_file
from reconciler.redact import register

if TYPE_CHECKING:
    from reconciler.drivers.state import DriverState, Session
    from reconciler.observe.payload import Payload

__all__ = [
    "Cancelled",
    "Deferred",
    "Driver",
    "DriverError",
    "Found",
    "PermanentError",
    "RemoteObject",
    "TemporaryError",
    "Uploaded",
]

Progress = Callable[[int], None]  # called with the number of bytes sent so far


@dataclass(frozen=True)
class Uploaded:
    """What an upload left on the platform."""

    platform_asset_id: str  # the platform's id for the object
    url: str
    remote_checksum: str  # sha256 of what the platform holds, as the platform reports it
    details: dict[str, Any] = field(default_factory=dict)  # kept in platform_assets.metadata


@dataclass(frozen=True)
class RemoteObject:
    """An object as the platform reports it now."""

    checksum: str | None  # sha256, when the platform can tell
    size: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Found:
    """An object found on a platform by the platform's own id (an import) or by listing it
    (discovery), as the platform reports it."""

    remote_id: str  # the platform's id: the key on a folder or bucket, a video id elsewhere
    key: str | None  # its key, on platforms whose keys are where objects are; else None
    checksum: str | None  # sha256 of what the platform holds, when it can tell
    size: int | None  # its size in bytes, when the platform tells
    url: str | None = None
    title: str | None = None  # its title, on platforms that keep one (video platforms)


class Driver(ABC):
    """One platform's transport. ``needs_verified_copy``: the driver replaces an object in
    place and cannot take bytes back that turn out not to be the expected ones (a REST PUT
    to the object's own URL); it is then sent from a private copy of the payload, checked
    before the first byte. Every other driver checks what it sent before it commits (a local
    rename, an S3 multipart completion) or removes what it made (a new object, a video)."""

    needs_verified_copy = False
    # A folder or a bucket: an object's key is where it is, so a copy whose key changes (its
    # master moved) is moved on the platform. Elsewhere (video platforms, REST APIs) a key is
    # only this tool's name for the platform's id, and a new key changes only the record.
    keys_are_paths = False

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.state: DriverState | None = None  # set by driver_for, for drivers that keep state

    def attach(self, state: DriverState) -> None:
        """Give the driver what it persists (upload sessions, remote ids, quota)."""
        self.state = state

    def kept(self, key: str) -> Session | None:
        """The session kept for ``key``; None when there is none, or no state."""
        return self.state.session(key) if self.state is not None else None

    @abstractmethod
    def upload(
        self,
        payload: Payload,
        key: str,
        metadata: dict[str, Any],
        progress: Progress | None = None,
    ) -> Uploaded:
        """Put the payload's bytes at ``key``, atomically: a reader sees the old object or the
        whole new one, never half of it. Every byte is read from the payload (never from a
        path) and hashed as it is read; nothing is committed under ``key`` unless those bytes
        are the expected ones (else :class:`~reconciler.observe.payload.SourceChanged`), and
        the checksum returned is of what the platform holds, as far as the platform can tell
        (else :class:`~reconciler.observe.payload.NotLanded`)."""

    @abstractmethod
    def stat(self, key: str, size: int | None = None) -> RemoteObject | None:
        """The object at ``key``, or None when it is missing. ``size``: the size the caller
        compares against, so that a driver that would have to read a whole object to hash it
        need not when the sizes already differ (its checksum is then None)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object at ``key``; a missing object is not an error."""

    @abstractmethod
    def health_check(self) -> tuple[str, str]:
        """(a :class:`~reconciler.model.HealthStatus`: healthy or down, a short explanation)."""

    def update_metadata(self, key: str, metadata: dict[str, Any]) -> None:  # noqa: B027
        """Change the metadata of the object at ``key`` without sending the bytes again.
        Drivers that store no metadata keep this default, which does nothing."""

    def id_problem(self, remote_id: str) -> str | None:
        """Why ``remote_id`` cannot name an object on this platform (None: it can), told
        without asking the platform: what :meth:`find` refuses."""
        return None

    def find(self, remote_id: str) -> Found | None:
        """The object the platform knows by ``remote_id`` (a key on a folder or bucket, a
        video id on a video platform), or None when there is none. Only reads."""
        raise PermanentError(
            f"the {self.platform.driver} driver cannot look up an object by its id"
        )

    def discover(self) -> Iterator[Found]:
        """Every object on the platform (under its prefix or target), for discovery; the
        checksum may be None where finding it would mean reading the object (see
        :meth:`stat`). Only reads."""
        raise PermanentError(f"the {self.platform.driver} driver cannot list its objects")

    def recorded_id(self, found: Found) -> str:
        """The platform id a copy of ``found`` is recorded with: the one an upload of it
        would have recorded (an ``s3://`` URI on S3)."""
        return found.remote_id

    def move(self, old_key: str, new_key: str) -> None:
        """On platforms whose keys are paths: move the object at ``old_key`` to ``new_key``
        on the platform itself (a rename, a server-side copy then delete), never sending its
        bytes again and never replacing an object at ``new_key`` (a PermanentError if one is
        there). The caller checks both keys before and the new one after."""
        raise PermanentError(f"the {self.platform.driver} driver cannot move objects")

    def cleanup(self) -> int:
        """Remove partial uploads left by an interrupted run; return how many."""
        return 0

    def replaced(self, key: str, previous_id: str | None) -> bool:
        """After a crash: remove the object an upload at ``key`` replaced, when the platform
        gave it an id of its own that the key no longer names (a video platform makes a new
        video per upload); True if one was removed. Drivers that replace in place keep this
        default."""
        return False

    def finish(self) -> None:
        """Write what the driver keeps in the state file and could not write during its
        transfers (the file was busy); called when a run, verify or recovery ends."""
        if self.state is not None:
            self.state.flush()


def resolve_secret(ref: SecretRef | None, what: str) -> str:
    """Read a referenced credential at the moment it is needed; never stored anywhere."""
    if ref is None:
        raise PermanentError(f"{what} needs credentials, but its auth names none")
    if ref.env:
        value = os.environ.get(ref.env)
        if not value:
            raise PermanentError(f"{what}: the environment variable {ref.env} is not set")
        register(value)
        return value.strip()
    assert ref.file is not None
    try:
        value = read_secret_file(Path(ref.file).expanduser())
    except OSError as exc:
        raise PermanentError(
            f"{what}: cannot read the secret file {ref.file}: {exc.strerror}"
        ) from None
    register(value)
    return value.strip()
