"""Reading manifest files from disk: discovery, size and encoding limits, and the document cache.

Called by :mod:`reconciler.manifests.validate` for every ``*.yaml``/``*.yml`` file under the
manifests folder, and by :mod:`reconciler.manifests.locate` for positions. A file is read only
when it is a regular file inside the manifests folder (see :mod:`.files`), within
:attr:`Limits.max_file_bytes`, and UTF-8; its bytes then go to :mod:`.yamlevents`, which
builds plain JSON-like data itself (see :mod:`.builder` for what it refuses and why).

Positions are recorded only when asked: the first pass over a file records nothing, and a
file with a problem is parsed again with positions on (see :func:`parse`), so that a large,
valid library of manifests costs no memory for line numbers.

Plain scalars mean what the YAML 1.2 core schema says (:mod:`.scalars`), as in editors:
``yes``, ``on``, ``1:30`` and dates are strings. Mapping keys are always the text written.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any, Protocol

from reconciler.manifests import files
from reconciler.manifests.documents import (
    DEFAULT_LIMITS,
    Document,
    Limits,
    Parsed,
    Positions,
    file_finding,
    line_col,
)
from reconciler.manifests.problems import Finding
from reconciler.manifests.yamlevents import read_stream
from reconciler.units import human_size

__all__ = [
    "DEFAULT_LIMITS",
    "Limits",
    "LoadedFile",
    "check_encoding",
    "discover",
    "load_file",
    "parse",
    "positions_of",
    "read_bytes",
]

UTF8_BOM = b"\xef\xbb\xbf"
MANIFEST_SUFFIXES = (".yaml", ".yml")


@dataclass(slots=True)
class LoadedFile:
    """A manifest file read from disk: its documents, and problems found while loading."""

    path: FsPath  # its real path, once read
    display: str
    digest: str  # sha256 of the bytes read; empty when the file could not be read
    documents: list[Document]
    findings: list[Finding]


def discover(root: FsPath) -> Iterator[FsPath]:
    """Yield every manifest file under ``root``, recursively, in a stable order.

    Hidden files and folders (``.git``, editor swap files) are skipped; symlinked folders are
    not followed. Every other ``*.yaml``/``*.yml`` entry is yielded, symlinks and FIFOs too:
    :func:`read_bytes` decides whether it may be read, so that a refused file is reported.
    """
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(MANIFEST_SUFFIXES) and not name.startswith("."):
                yield FsPath(dirpath, name)


class DocumentCache(Protocol):
    """Where parsed documents of a file are kept by the sha256 of its bytes."""

    def get(self, digest: str) -> Any: ...
    def put(self, digest: str, documents: Any) -> None: ...


def load_file(
    path: FsPath,
    display: str,
    limits: Limits = DEFAULT_LIMITS,
    cache: DocumentCache | None = None,
    root: FsPath | None = None,
) -> LoadedFile:
    """Read and parse one manifest file. Problems are returned as findings, never raised.

    ``root`` is the manifests folder, which the file must not lead out of (see
    :func:`read_bytes`). With a cache, a file whose bytes were parsed before (without
    problems) is not parsed again.
    """
    data, finding = read_bytes(path, display, limits, root)
    if finding is not None or data is None:
        return LoadedFile(path, display, "", [], [finding] if finding else [])
    path = FsPath(os.path.realpath(path))  # what was read, for a second look at positions
    digest = hashlib.sha256(data).hexdigest()
    if cache is not None:
        known = cache.get(digest)
        if isinstance(known, list):
            return LoadedFile(path, display, digest, [Document(*d) for d in known], [])
    parsed = parse(data, display, limits)
    if cache is not None and not parsed.findings:
        cache.put(digest, [(d.index, d.line, d.data) for d in parsed.documents])
    return LoadedFile(path, display, digest, parsed.documents, parsed.findings)


def read_bytes(
    path: FsPath, display: str, limits: Limits = DEFAULT_LIMITS, root: FsPath | None = None
) -> tuple[bytes | None, Finding | None]:
    """Read a file within the size limit and check that it is UTF-8 text.

    The file is read only when its real path lies inside ``root`` (the manifests folder; by
    default the file's own folder) and it is a regular file: a symlink that leads out of the
    folder, a symlink loop or a FIFO is a finding, and is never opened.
    """
    folder = os.path.realpath(root if root is not None else path.parent)
    try:
        fd, st = files.open_manifest(str(path), folder)
    except files.Refused as refused:
        return None, file_finding(display, refused.error, refused.message)
    try:
        if st.st_size > limits.max_file_bytes:
            return None, file_finding(display, "yaml-limit", _too_big(st.st_size, limits))
        data = files.read_all(fd, limits.max_file_bytes)
    except OSError as exc:
        return None, file_finding(display, "io", f"cannot read the file: {exc.strerror or exc}")
    finally:
        os.close(fd)
    if len(data) > limits.max_file_bytes:  # the file grew while we looked at it
        return None, file_finding(display, "yaml-limit", _too_big(len(data), limits))
    return data, check_encoding(data, display)


def check_encoding(data: bytes, display: str) -> Finding | None:
    """A manifest must be UTF-8, with a byte-order mark at most at its very start."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return file_finding(
            display,
            "yaml-encoding",
            "the file is UTF-16 or UTF-32 encoded (it starts with a byte-order mark); "
            "save it as UTF-8",
        )
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = line_col(data, exc.start)
        return file_finding(
            display,
            "yaml-encoding",
            f"the file is not valid UTF-8 (byte 0x{data[exc.start]:02x}); save it as UTF-8",
            line,
            col,
        )
    bom = data.find(UTF8_BOM, 1)
    if bom > 0:
        line, col = line_col(data, bom)
        return file_finding(
            display,
            "yaml-encoding",
            "a byte-order mark (U+FEFF) inside the file, often left by joining files; remove it",
            line,
            col,
        )
    return None


def parse(
    data: bytes, display: str, limits: Limits = DEFAULT_LIMITS, track: bool = False
) -> Parsed:
    """Parse YAML bytes into documents.

    Without ``track`` this is the fast path; when it meets any problem it parses again with
    ``track`` on, so that every finding carries its field path and the positions are known.
    """
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
    result = read_stream(data, display, limits, track)
    if result.findings and not track:
        return parse(data, display, limits, track=True)
    if not track and not result.documents and not result.findings:
        result.findings.append(
            file_finding(
                display,
                "empty-file",
                "the file holds no manifest documents; delete it or add a document",
            )
        )
    return result


def positions_of(data: bytes, display: str, limits: Limits = DEFAULT_LIMITS) -> list[Positions]:
    """Positions of every node of every document (used to point problems at lines)."""
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
    return read_stream(data, display, limits, track=True).positions or []


def _too_big(size: int, limits: Limits) -> str:
    return (
        f"the file is {human_size(size)}, over the {human_size(limits.max_file_bytes)} limit "
        "for one manifest file; split it into several files"
    )
