"""What a job sends to a platform: one open descriptor, read in one pass that hashes it.

A :class:`Payload` is the master (opened safely once per job by
:mod:`~reconciler.observe.masters`) or a
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

from reconciler.errors import PermanentError, TemporaryError

BLOCK = 1024 * 1024


class SourceChanged(PermanentError):
    """The bytes read from the payload are not the expected ones: nothing was committed."""

    def __init__(self, payload: Payload, found: str) -> None:
        super().__init__(
            f"{payload.name} changed while it was being sent (expected sha256 "
            f"{payload.expected[:12]}..., read {found[:12]}...); nothing was kept"
        )
        self.found = found


class ReplacedMeanwhile(PermanentError):
    """The object the upload was to replace changed on the platform after it was checked (a
    colleague's edit during a long transfer): nothing was committed over it."""


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
    path = folder / f".send-{secrets.token_hex(8)}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise _no_copy(payload, folder, exc) from None
    try:
        reader = payload.reader()
        try:
            while block := reader.read(BLOCK):
                view = memoryview(block)
                while view:
                    view = view[os.write(fd, view) :]
        except OSError as exc:
            raise _no_copy(payload, folder, exc) from None
        reader.confirm()
        yield Payload(fd, reader.tell(), payload.expected, payload.name, payload.kind,
                      dict(payload.details))  # fmt: skip
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


def _no_copy(payload: Payload, folder: Path, exc: OSError) -> PermanentError:
    return PermanentError(
        f"cannot make the checked copy of {payload.name} ({payload.size:,} bytes) that a "
        f"platform replacing objects in place is sent from, in {folder}: "
        f"{exc.strerror or exc}; free that much space there, or choose another folder with "
        "--renditions"
    )


class HashedReader:
    """Reads a payload sequentially through ``pread`` (no shared file position, so a retry
    or a second reader never disturbs it) and hashes every byte it returns.

    For protocols that resume (a chunk answered with less than was sent, a body sent again),
    it remembers the hash at every :meth:`mark` (each chunk's start) and the last block it
    read, so that :meth:`back_to` can go back to an offset with the hash of the bytes that
    were really sent before it, never re-reading them from a master that may have changed."""

    def __init__(self, payload: Payload, start: int = 0) -> None:
        self.payload = payload
        self._marks: dict[int, Any] = {}
        self._last: tuple[int, bytes] | None = None  # the last block read: (offset, bytes)
        self.rewind(start)

    def rewind(self, start: int) -> None:
        """Start again at ``start``, hashing bytes 0 to ``start`` as they are in the payload
        now (for a resume: :meth:`back_to` when the bytes were sent in this run)."""
        self._digest = hashlib.sha256()
        self.offset = 0
        self._marks.clear()
        self._last = None
        while self.offset < start:  # the part sent before: hashed, not returned
            block = self.payload.pread(min(BLOCK, start - self.offset), self.offset)
            if not block:
                break
            self._digest.update(block)
            self.offset += len(block)

    def mark(self) -> None:
        """Remember the hash here (a chunk starts)."""
        self._marks[self.offset] = self._digest.copy()

    def back_to(self, offset: int) -> bool:
        """Go back to ``offset`` with the hash of what was read (and sent) before it: at a
        mark, or inside the last block read. False when this reader cannot vouch for it."""
        if offset == self.offset:
            return True
        if offset in self._marks:
            self._digest = self._marks[offset].copy()
        elif (
            self._last is not None
            and self._last[0] in self._marks
            and (self._last[0] <= offset <= self._last[0] + len(self._last[1]))
        ):
            start, block = self._last
            self._digest = self._marks[start].copy()
            self._digest.update(block[: offset - start])
        else:
            return False
        self.offset = offset
        self._marks = {k: v for k, v in self._marks.items() if k <= offset}
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = max(self.payload.size - self.offset, 0) + 1  # to the end, and past it
            parts = []
            while block := self.read(min(size, BLOCK)):
                parts.append(block)
            return b"".join(parts)
        block = os.pread(self.payload.fd, size, self.offset)
        if self.offset not in self._marks and self._marks:
            self._marks[self.offset] = self._digest.copy()  # a block boundary, within chunks
        self._digest.update(block)
        if self._marks:  # only a resumable protocol goes back: keep the last block for it
            self._last = (self.offset, block)
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
