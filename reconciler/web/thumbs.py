"""Thumbnails of image masters for the asset pages: made small (a PNG at most 320 pixels on
its longer side) and kept in memory, keyed by the file's identity and change time, so that a
changed master gets a new one.

The master is read as every job reads it (:func:`reconciler.observe.masters.open_master`): a
regular file inside the media root, opened once without following a swapped-in link; a file
that is not, or that Pillow cannot read (or that would decode to more pixels than Pillow
allows, a decompression bomb), has no thumbnail.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from collections import OrderedDict
from typing import BinaryIO

from PIL import Image

from reconciler.observe.masters import UnsafeMaster, opened_master

SIZE = 320
KEPT = 256  # thumbnails kept in memory (a few tens of KB each)
MAX_BYTES = 512 * 1024 * 1024  # a master larger than this gets no thumbnail
MAX_PIXELS = 40_000_000  # nor one that would decode to more pixels than this (a bomb)
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")  # the image masters platforms take


class Thumbnails:
    """Made on first request, kept for the next ones (least recently used dropped first)."""

    def __init__(self) -> None:
        self._made: OrderedDict[tuple[int, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, path: str, root: str) -> bytes | None:
        """The PNG thumbnail of the master at ``path`` inside ``root``, or None."""
        try:
            with opened_master(path, root) as master:
                st = master.st
                key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                with self._lock:
                    if key in self._made:
                        self._made.move_to_end(key)
                        return self._made[key]
                if st.st_size > MAX_BYTES:
                    return None
                with os.fdopen(os.dup(master.fd), "rb") as handle:
                    made = _thumbnail(handle)
        except (UnsafeMaster, OSError):
            return None
        if made is None:
            return None
        with self._lock:
            self._made[key] = made
            while len(self._made) > KEPT:
                self._made.popitem(last=False)
        return made


def _thumbnail(handle: BinaryIO) -> bytes | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # capped below
            with Image.open(handle, formats=FORMATS) as image:
                if image.width * image.height > MAX_PIXELS:
                    return None
                image.draft("RGB", (SIZE, SIZE))  # JPEG: decode at a fraction of the size
                image.thumbnail((SIZE, SIZE))
                small = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    except Exception:
        return None
    out = io.BytesIO()
    small.save(out, "PNG", optimize=True)
    return out.getvalue()
