"""Authenticated encryption of renditions (AES-256-GCM, from ``cryptography``), in chunks so
that a file of any size streams through a fixed amount of memory; and its inverse, used by
``reconcile decrypt``.

File format (integers big-endian)::

    magic   b"RCNENC1\\n"          8 bytes
    chunk   plaintext chunk size   4 bytes
    prefix  random nonce prefix    7 bytes
    then each chunk: AES-GCM(key, nonce = prefix | counter (4 bytes) | last (1 byte),
                             plaintext, associated data = the 19-byte header)
                     = ciphertext | 16-byte tag

Every chunk but the last holds exactly ``chunk`` plaintext bytes; the last holds 0 to
``chunk`` and has last = 1 in its nonce. A flipped bit, a truncated file, reordered or
dropped chunks, or the wrong key all fail authentication, and nothing is written.

Keys are 32 bytes, kept as 64 hex digits (or base64) in an environment variable or a file
that a rule references; they are read when needed and never stored or printed.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import struct
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from reconciler.atomic import atomic_file
from reconciler.observe.credentials import read_secret_file
from reconciler.redact import register
from reconciler.transforms import TransformError
from reconciler.transforms.recipe import KeyRef

MAGIC = b"RCNENC1\n"
HEADER = struct.Struct(">8sI7s")
CHUNK = 1024 * 1024
TAG = 16
MAX_CHUNK = 64 * 1024 * 1024  # a header asking for more is not ours


def parse_key(text: str, where: str) -> bytes:
    """A 32-byte key from 64 hex digits or base64; the message never shows the text."""
    value = text.strip()
    try:
        key = bytes.fromhex(value) if len(value) == 64 else base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != 32:
        raise TransformError(
            f"{where} does not hold a 256-bit key: write 64 hex digits (for example the "
            "output of `openssl rand -hex 32`) or the key in base64"
        )
    return key


def load_key(ref: KeyRef, base: Path) -> tuple[bytes, Path | None]:
    """(key, the file created for it or None). A relative file is relative to ``base``."""
    if ref.env:
        value = os.environ.get(ref.env)
        if not value:
            raise TransformError(f"the encryption key's environment variable {ref.env} is not set")
        register(value)
        return parse_key(value, f"the environment variable {ref.env}"), None
    assert ref.file is not None
    path = Path(ref.file).expanduser()
    path = path if path.is_absolute() else base / path
    created = None
    if ref.create and not path.exists():
        created = create_key_file(path)
    try:
        text = read_secret_file(path)
    except OSError as exc:
        raise TransformError(
            f"cannot read the encryption key file {path}: {exc.strerror or exc}"
        ) from None
    register(text)
    return parse_key(text, f"the key file {path}"), created


def create_key_file(path: Path) -> Path | None:
    """Write a new random key to ``path`` (mode 0600); None if another process just did."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None
    except OSError as exc:
        raise TransformError(f"cannot create the key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    return path


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + struct.pack(">I", counter) + (b"\x01" if last else b"\x00")


def encrypt_file(
    source: Path, dest: Path, key: bytes, progress: Callable[[int], None] | None = None
) -> None:
    """Encrypt ``source`` into ``dest`` (written whole or not at all)."""
    with open(source, "rb") as src:
        encrypt_stream(src.read, dest, key, progress)


def encrypt_stream(
    read: Callable[[int], bytes],
    dest: Path,
    key: bytes,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Encrypt what ``read`` returns, to its end, into ``dest`` (written whole or not at
    all). Apply passes the read of a payload's hashing reader, so the plaintext is hashed in
    the same pass that encrypts it."""
    cipher = AESGCM(key)
    header = HEADER.pack(MAGIC, CHUNK, secrets.token_bytes(7))
    prefix = header[12:]
    with atomic_file(dest) as out:
        out.write(header)
        current = _read_full(read, CHUNK)
        counter, done = 0, 0
        while True:
            following = _read_full(read, CHUNK) if len(current) == CHUNK else b""
            last = not following
            out.write(cipher.encrypt(_nonce(prefix, counter, last), current, header))
            done += len(current)
            if progress is not None:
                progress(done)
            if last:
                return
            if counter == 0xFFFFFFFF:
                raise TransformError("the file is too large to encrypt in this format")
            current, counter = following, counter + 1


def _read_full(read: Callable[[int], bytes], size: int) -> bytes:
    """``size`` bytes from ``read``, fewer only at the end."""
    parts, want = [], size
    while want > 0 and (block := read(want)):
        parts.append(block)
        want -= len(block)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def decrypt_file(source: Path, dest: Path, key: bytes) -> int:
    """Decrypt ``source`` into ``dest``; returns the plaintext size. Raises
    :class:`TransformError` (and writes nothing) unless every chunk authenticates."""
    cipher = AESGCM(key)
    with open(source, "rb") as src, atomic_file(dest) as out:
        header = src.read(HEADER.size)
        if len(header) < HEADER.size or header[:8] != MAGIC:
            raise TransformError(f"{source} is not a file encrypted by reconcile")
        _, chunk, prefix = HEADER.unpack(header)
        if not 0 < chunk <= MAX_CHUNK:
            raise TransformError(f"{source} has a damaged header")
        size = chunk + TAG
        current = src.read(size)
        counter, total = 0, 0
        while True:
            following = src.read(size) if len(current) == size else b""
            last = not following
            try:
                plain = cipher.decrypt(_nonce(prefix, counter, last), current, header)
            except InvalidTag:
                raise TransformError(
                    f"{source} does not decrypt with this key: the key is wrong, or the file "
                    "was damaged or cut short"
                ) from None
            out.write(plain)
            total += len(plain)
            if last:
                return total
            current, counter = following, counter + 1
