"""Test videos made and read in-process through PyAV (a runtime dependency, whose wheel ships
FFmpeg's libraries), so that the suite needs no ffmpeg or ffprobe command: FFmpeg's own
generators (``color``, ``testsrc2``) run as a PyAV filter graph and are encoded with PyAV's
codecs; the first frame of a video is decoded to a Pillow image.

Also what the tests of the two video engines share: :data:`ENGINES`, which runs the ffmpeg
engine's variant only where both commands are installed (skipped with the reason elsewhere)
and the PyAV engine's everywhere, and :func:`path_without_ffmpeg`, a ``PATH`` on which every
command but ffmpeg and ffprobe is still found (a machine with only ``pip install``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from typing import Any

import av
import pytest
from PIL import Image

from reconciler.transforms.video import BACKENDS

FFMPEG_COMMANDS = ("ffmpeg", "ffprobe")


def has_ffmpeg() -> bool:
    """Whether both commands of the ffmpeg engine are on ``PATH``."""
    return all(shutil.which(name) for name in FFMPEG_COMMANDS)


needs_ffmpeg = pytest.mark.skipif(
    not has_ffmpeg(),
    reason="needs the ffmpeg and ffprobe commands (the ffmpeg engine runs them), not installed "
    "here (Debian: apt-get install ffmpeg); the PyAV engine's tests run without them",
)

# Every engine of reconciler.transforms.video; the ffmpeg one only where its commands exist.
ENGINES = pytest.mark.parametrize(
    "engine",
    [pytest.param(e, marks=needs_ffmpeg) if e == "ffmpeg" else e for e in BACKENDS],
)


def _url(path: Path) -> str:
    """``path`` as a ``file:`` URL, so that a name such as ``concat:x`` is only a name."""
    return f"file:{path.absolute()}"


def generated(source: str, width: int, height: int, rate: int, seconds: float) -> Iterator[Any]:
    """The frames (yuv420p) of one of FFmpeg's source filters, e.g. ``color=c=blue`` or
    ``testsrc2``, at the size, rate and duration given."""
    name, _, options = source.partition("=")
    args = f"size={width}x{height}:rate={rate}:duration={seconds}"
    graph = av.filter.Graph()
    chain = [
        graph.add(name, f"{options}:{args}" if options else args),
        graph.add("format", "yuv420p"),
        graph.add("buffersink"),
    ]
    for upstream, downstream in pairwise(chain):
        upstream.link_to(downstream)
    graph.configure()
    while True:
        try:
            yield graph.pull()
        except (av.error.EOFError, BlockingIOError):
            return


def make_video(
    path: Path,
    width: int,
    height: int,
    source: str = "color=c=blue",
    *,
    seconds: float = 1,
    rate: int = 10,
    codec: str = "libx264",
    container: str | None = None,
    title: str | None = None,
) -> Path:
    """A short video of ``source`` (one of FFmpeg's generators) encoded with ``codec`` into
    ``container`` (None: the one ``path``'s extension names), titled ``title`` if given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(_url(path), "w", format=container) as out:
        if title is not None:
            out.metadata["title"] = title
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, rate)
        for index, picture in enumerate(generated(source, width, height, rate, seconds)):
            picture.pts, picture.time_base = index, Fraction(1, rate)
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))
    return path


def first_frame(path: Path) -> Image.Image:
    """The first picture of a video, decoded, as an RGB image."""
    with av.open(_url(path)) as video:
        for picture in video.decode(video=0):
            return picture.to_image().convert("RGB")
    raise AssertionError(f"{path.name} has no picture")


def has_video_stream(path: Path) -> bool:
    """Whether the file opens as a container with a video stream (what ffprobe would list)."""
    try:
        with av.open(_url(path)) as opened:
            return bool(opened.streams.video)
    except av.FFmpegError:
        return False


def path_without_ffmpeg(folder: Path) -> str:
    """A ``PATH`` like the current one with ffmpeg and ffprobe gone: each of its folders that
    holds either is replaced by a folder (made under ``folder``) of links to its other
    commands."""
    entries = []
    for number, entry in enumerate(os.environ.get("PATH", "").split(os.pathsep)):
        where = Path(entry)
        if not any((where / name).exists() for name in FFMPEG_COMMANDS):
            entries.append(entry)
            continue
        shadow = folder / f"path-{number}"
        shadow.mkdir(parents=True, exist_ok=True)
        for command in where.iterdir():
            if command.name not in FFMPEG_COMMANDS:
                (shadow / command.name).symlink_to(command)
        entries.append(str(shadow))
    return os.pathsep.join(entries)
