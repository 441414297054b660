"""The state file on disk: making a new one safely, and what a broken one means to a person.

:class:`reconciler.store.db.StateStore` and :mod:`reconciler.store.connection` call these;
nothing outside the store needs them.

* A new state file is made under a temporary name beside its real path, migrated, checkpointed,
  flushed to disk and only then renamed into place (:func:`create`). A process killed while
  DuckDB was creating the file leaves a temporary file, never a half-made state file.
* A file that a process killed by an older version left while DuckDB created it (empty, or
  DuckDB's headers and nothing after them) never held data: :func:`never_held_data` tells it
  apart from a truncated file that did, so that it can be treated as absent and replaced. A
  truncated file that held data is never replaced; reading it fails with a one-line error.
* :func:`storage_error` turns DuckDB's I/O failures (a full disk, a read-only folder, a file
  that ends before the data it refers to) into a :class:`StateError` saying what to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb

from reconciler.errors import StateError

# DuckDB's file starts with a main header (the magic bytes "DUCK" at offset 8) and two
# database headers, 4 KiB each; data blocks come after them. A database header describing an
# empty database has iteration 0, no meta block (-1) and no blocks.
HEADER_BLOCK = 4096
HEADERS_BYTES = 3 * HEADER_BLOCK
_MAGIC = b"DUCK"
_DATABASE_HEADER = struct.Struct("<QqqqQ")  # checksum, iteration, meta block, free list, count

# Settings for duckdb.connect(config=...)
DuckDBConfig = dict[str, str | bool | int | float | list[str]]

# DuckDB errors that come from the file or its disk, not from the SQL that was run
STORAGE_ERRORS: tuple[type[duckdb.Error], ...] = (
    duckdb.IOException,
    duckdb.TransactionException,
    duckdb.SerializationException,
    duckdb.FatalException,
)


def wal_of(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def never_held_data(path: Path) -> bool:
    """Whether ``path`` is a state file that was never more than DuckDB's headers.

    True for an empty file, one of zeros only, or DuckDB's headers (or the first of them)
    describing an empty database, with no write-ahead log holding transactions beside it.
    False for anything else, a truncated file that held data included.
    """
    try:
        if not path.is_file() or path.stat().st_size > HEADERS_BYTES:
            return False
        wal = wal_of(path)
        if wal.exists() and wal.stat().st_size > 0:
            return False
        data = path.read_bytes()
    except OSError:
        return False
    if not data.strip(b"\0"):
        return True
    if data[8:12] != _MAGIC:
        return False  # not DuckDB's: somebody else's file, never replaced
    for offset in (HEADER_BLOCK, 2 * HEADER_BLOCK):
        header = data[offset : offset + _DATABASE_HEADER.size]
        if not header.strip(b"\0"):
            continue  # not written yet
        if len(header) < _DATABASE_HEADER.size:
            return False  # cut inside a header: cannot tell what it described
        _checksum, iteration, meta_block, _free_list, blocks = _DATABASE_HEADER.unpack(header)
        if iteration != 0 or meta_block != -1 or blocks != 0:
            return False
    return True


def create(
    path: Path, prepare: Callable[[duckdb.DuckDBPyConnection], None], config: DuckDBConfig
) -> None:
    """Make a new state file at ``path`` (a real path) in one step that a kill cannot split.

    The file is made under a temporary name in the same folder, ``prepare`` (the migrations)
    runs on it, it is checkpointed, flushed to disk and renamed over ``path``: any file there
    (one that :func:`never_held_data`) is replaced at once. The caller holds the run lock.
    """
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(folder, exc) from None
    for stale in folder.glob(f".{path.name}.*.new*"):  # left by a creator that was killed
        with contextlib.suppress(OSError):
            stale.unlink()
    temporary = folder / f".{path.name}.{os.getpid()}.new"
    try:
        con = duckdb.connect(str(temporary), config=config)
        try:
            prepare(con)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
        wal = wal_of(path)
        if wal.exists() and wal.stat().st_size == 0:
            wal.unlink()
        _sync_folder(folder)
    except OSError as exc:
        raise os_error(path, exc) from None
    except duckdb.Error as exc:
        raise storage_error(exc, path, "creating") from None
    finally:
        for leftover in (temporary, wal_of(temporary)):
            with contextlib.suppress(OSError):
                leftover.unlink()


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a folder; the rename is still atomic
    finally:
        os.close(fd)


def os_error(path: Path, exc: OSError) -> StateError:
    """A StateError for an operating-system failure on the state file, its lock or folder."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return _full(path)
    return _read_only(path, exc.strerror or str(exc))


def _full(path: Path) -> StateError:
    return StateError(
        f"no space left on the disk holding {path}; nothing of this write was recorded and "
        "the state file is as it was. Free some space and run again"
    )


def _read_only(path: Path, why: str) -> StateError:
    return StateError(
        f"cannot write {path}: {why}. A command that writes needs a writable folder for the "
        "state file: make it writable, or pass --state to choose another place"
    )


def recognised(exc: BaseException, path: Path) -> StateError | None:
    """The StateError for a failure of the disk or of the file itself; None for another."""
    text = str(exc)
    first = text.splitlines()[0] if text else type(exc).__name__
    if "No space left on device" in text or "Disk quota exceeded" in text:
        return _full(path)
    for why in ("Read-only file system", "Permission denied"):
        if why in text:
            return _read_only(path, why)
    if "Could not read enough bytes" in text or "Corrupt database file" in text:
        return StateError(
            f"the state file {path} is truncated or damaged ({first}); nothing was changed. "
            "Restore it from a backup, or move it aside to start again from an empty state"
        )
    return None


def storage_error(exc: BaseException, path: Path, doing: str) -> StateError:
    """A StateError for a DuckDB failure of the state file while ``doing`` something."""
    found = recognised(exc, path)
    if found is not None:
        return found
    text = str(exc)
    first = text.splitlines()[0] if text else type(exc).__name__
    return StateError(
        f"{doing} the state file {path} failed ({first}); nothing of it was recorded and the "
        "file is as it was"
    )


def rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back what is open; a failed commit has already ended the transaction."""
    with contextlib.suppress(duckdb.Error):
        con.execute("ROLLBACK")


def close(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Close a connection; closing checkpoints, which a full disk can make fail."""
    try:
        con.close()
    except duckdb.Error as exc:
        if sys.exc_info()[1] is None:  # never hide the error that is already on its way
            raise storage_error(exc, path, "writing") from None
