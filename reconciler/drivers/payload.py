"""What a job sends to a platform: one open descriptor, read in one pass that hashes it.

A :class:`Payload` is the master (opened safely once per job by :mod:`reconciler.masters`) or a
rendition from the cache, together with the sha256 its bytes must have. Drivers never open a
path: they read the payload through :meth:`Payload.reader` (or ``pread``), and the reader
hashes exactly the bytes it hands out. Before anything is committed under the final name or
key, the driver checks that digest with :meth:`Payload.confirm`: bytes that differ from the
expected ones (a master rewritten or truncated while it was sent) raise
:class:`SourceChanged` and the driver discards what it wrote.

A driver that cannot commit conditionally raises :class:`NotLanded` when the platform holds
other bytes than were sent, after removing what it can; apply decides what that means (a
checksum mismatch conflict and a retry, or a master that changed).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.drivers.base import PermanentError, TemporaryError

BLOCK = 1024 * 1024


class SourceChanged(PermanentError):
    """The bytes read from the payload are not the expected ones: nothing was committed."""

    def __init__(self, payload: Payload, found: str) -> None:
        super().__init__(
            f"{payload.name} changed while it was being sent (expected sha256 "
            f"{payload.expected[:12]}..., read {found[:12]}...); nothing was kept"
        )
        self.found = found


class NotLanded(TemporaryError):
    """The platform holds other bytes than were sent (``found``: their checksum)."""

    def __init__(self, message: str, found: str | None) -> None:
        super().__init__(message)
        self.found = found


@dataclass
class Payload:
    """An open, regular file and the sha256 its bytes must have. Owns nothing: whoever
    opened the descriptor closes it."""

    fd: int
    size: int  # as fstat said when it was opened
    expected: str  # sha256 (hex) the bytes must have
    name: str  # for messages: a file name, never content
    kind: str = "master"  # master | rendition
    details: dict[str, Any] = field(default_factory=dict)

    def pread(self, length: int, offset: int) -> bytes:
        """Up to ``length`` bytes at ``offset`` (fewer at the end of the file)."""
        chunks = []
        while length > 0:
            block = os.pread(self.fd, length, offset)
            if not block:
                break
            chunks.append(block)
            length -= len(block)
            offset += len(block)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def reader(self, start: int = 0) -> HashedReader:
        """A file-like reader from ``start``, hashing everything from byte 0: the bytes before
        ``start`` (sent before, by an interrupted upload) are read again, not returned."""
        return HashedReader(self, start)

    def digest_now(self) -> str:
        """The sha256 of what the descriptor holds now, to its end."""
        digest = hashlib.sha256()
        offset = 0
        while block := os.pread(self.fd, BLOCK, offset):
            digest.update(block)
            offset += len(block)
        return digest.hexdigest()

    def confirm(self, digest: str, count: int) -> None:
        """Raise :class:`SourceChanged` unless ``count`` bytes with sha256 ``digest`` are
        exactly the expected bytes."""
        if digest != self.expected or count != self.size:
            raise SourceChanged(self, digest if count == self.size else f"{count} bytes")


@contextmanager
def stable_copy(payload: Payload, folder: Path) -> Iterator[Payload]:
    """A private copy of the payload's bytes in ``folder``, hashed as it is made and checked
    against the expected checksum before anything is sent (else :class:`SourceChanged`), for
    a platform that cannot commit conditionally: every byte it is ever sent, in every attempt
    and after a resume, comes from a copy that was verified to be the expected bytes. The copy
    is removed afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".send-{secrets.token_hex(8)}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        reader = payload.reader()
        while block := reader.read(BLOCK):
            view = memoryview(block)
            while view:
                view = view[os.write(fd, view) :]
        reader.confirm()
        yield Payload(fd, reader.tell(), payload.expected, payload.name, payload.kind,
                      dict(payload.details))  # fmt: skip
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


class HashedReader:
    """Reads a payload sequentially through ``pread`` (no shared file position, so a retry
    or a second reader never disturbs it) and hashes every byte it returns."""

    def __init__(self, payload: Payload, start: int = 0) -> None:
        self.payload = payload
        self._digest = hashlib.sha256()
        self.offset = 0
        while self.offset < start:  # the part sent before: hashed, not returned
            block = payload.pread(min(BLOCK, start - self.offset), self.offset)
            if not block:
                break
            self._digest.update(block)
            self.offset += len(block)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = max(self.payload.size - self.offset, 0) + 1  # to the end, and past it
            parts = []
            while block := self.read(min(size, BLOCK)):
                parts.append(block)
            return b"".join(parts)
        block = os.pread(self.payload.fd, size, self.offset)
        self._digest.update(block)
        self.offset += len(block)
        return block

    def blocks(self, length: int, block: int = BLOCK) -> Iterator[bytes]:
        """The next ``length`` bytes in blocks; short only at the end of the file."""
        end = self.offset + length
        while self.offset < end:
            data = self.read(min(block, end - self.offset))
            if not data:
                return
            yield data

    def tell(self) -> int:
        return self.offset

    @property
    def hexdigest(self) -> str:
        return self._digest.hexdigest()

    def confirm(self) -> None:
        """Everything read so far is exactly the expected payload, or :class:`SourceChanged`.
        (A file that grew beyond it since does not matter: what was read is what was sent.)"""
        self.payload.confirm(self.hexdigest, self.offset)
