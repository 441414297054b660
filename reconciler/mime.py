"""MIME types, in one place: guessed from a file name, made canonical, sorted into kinds.

The manifests give an asset its type (:func:`guess_mime` when a manifest names none), planning
compares canonical names with what a platform accepts (:func:`canonical_mime`), and the
transforms decide from the kind whether an image or a video step applies (:func:`media_kind`).
The extension map is fixed, independent of the machine's ``/etc/mime.types``, so two machines
plan the same library alike.
"""

from __future__ import annotations

import mimetypes
import os

# Non-standard names found in the wild (the seed's own `video/mov`), mapped to IANA names.
MIME_ALIASES = {
    "video/mov": "video/quicktime",
    "video/avi": "video/x-msvideo",
    "image/jpg": "image/jpeg",
    "audio/mp3": "audio/mpeg",
}
UNKNOWN_MIME = "application/octet-stream"


def canonical_mime(mime: str | None) -> str:
    """The IANA name of a MIME type, lower case; the unknown type for none."""
    if not mime:
        return UNKNOWN_MIME
    lowered = mime.strip().lower()
    return MIME_ALIASES.get(lowered, lowered)


# A fixed extension map, independent of the machine's /etc/mime.types, with the media types
# Python's own map lacks
_MIME = mimetypes.MimeTypes(filenames=())
for _ext, _type in {
    ".mkv": "video/x-matroska", ".wmv": "video/x-ms-wmv", ".ogv": "video/ogg",
    ".mts": "video/mp2t", ".m2ts": "video/mp2t", ".flv": "video/x-flv", ".m4v": "video/x-m4v",
    ".mxf": "application/mxf", ".3gp": "video/3gpp", ".heic": "image/heic",
}.items():  # fmt: skip
    _MIME.add_type(_type, _ext, strict=False)


_BY_EXTENSION: dict[str, str | None] = {}


def guess_mime(file: str) -> str | None:
    """The MIME type of a file name, by its extension (remembered: 100,000 files have few)."""
    ext = os.path.splitext(file)[1].lower()
    if ext not in _BY_EXTENSION:
        _BY_EXTENSION[ext] = _MIME.guess_type("x" + ext, strict=False)[0]
    return _BY_EXTENSION[ext]


# video and image types whose MIME type says otherwise: a rule's transforms apply to them
# too (the media tools then read them, or refuse them with a reason), never silently skipped
VIDEO_TYPES = frozenset({"application/mxf", "application/ogg", "application/x-matroska"})


def media_kind(mime: str) -> str:
    """image, video or other: which media steps a type gets."""
    if mime.startswith("image/"):
        return "image"
    if mime.startswith("video/") or mime in VIDEO_TYPES:
        return "video"
    return "other"
