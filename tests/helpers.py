"""Paths of the repository's example files, for tests (importable as `helpers`)."""

from __future__ import annotations

import hashlib
import os
import weakref
from pathlib import Path

from reconciler.observe.payload import Payload

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHIPPED_MANIFESTS = REPO / "manifests"
EXAMPLES = TESTS / "examples"
MEDIA = EXAMPLES / "media"


def payload_of(path: Path, expected: str | None = None) -> Payload:
    """A driver's payload for a file, as a job opens it (the descriptor closes with it)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    digest = expected or hashlib.sha256(Path(path).read_bytes()).hexdigest()
    payload = Payload(fd, os.fstat(fd).st_size, digest, Path(path).name)
    weakref.finalize(payload, os.close, fd)
    return payload
