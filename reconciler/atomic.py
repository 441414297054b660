"""Writing a file so that a reader sees the old content or the whole new one, never half.

:func:`atomic_file` writes under a temporary name in the destination's folder, flushes the
bytes to disk (fsync) and renames the file into place only when the writing succeeded; a
failure leaves no temporary file behind. Callers: the plan file of ``--out``
(:mod:`reconciler.cli.main`), the transforms' decryption (:mod:`reconciler.transforms.crypto`)
and the rendition cache's records (:mod:`reconciler.transforms.renditions`). The caches of
:mod:`reconciler.cache` rename too but skip the fsync: they may be lost at any time.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_file(dest: Path) -> Iterator[BinaryIO]:
    """A binary file to write, which becomes ``dest`` when the block ends without error."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, dest)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_atomically(dest: Path, content: str | bytes) -> None:
    """Write ``content`` (text as UTF-8) to ``dest`` through :func:`atomic_file`."""
    with atomic_file(dest) as handle:
        handle.write(content.encode("utf-8") if isinstance(content, str) else content)
