"""The video transforms read only the file they are given: a master that is really a reference
to other files (a DASH manifest, an HLS playlist, an ffconcat list, a picture) is refused with
one clear error naming it, by both engines, and the file it names is never even opened;
masters in the self-contained containers still render; every input ffmpeg, ffprobe and PyAV
open is restricted to the ``file`` protocol and a whitelisted demuxer.

Real files in temporary folders: the outside video is made through PyAV and carries a marker
(its title, its size and colour); a Linux inotify watch on its folder proves it is never
opened, not only that its pictures are not in the output. The ffmpeg engine's variants run
where its commands are installed, the PyAV engine's everywhere.
"""

from __future__ import annotations

import ctypes
import io
import os
import struct
import subprocess
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import av
import pytest
from media import ENGINES, make_video, needs_ffmpeg
from PIL import Image

from reconciler.transforms import TransformError
from reconciler.transforms.recipe import recipe_for
from reconciler.transforms.video import CONTAINERS, probe, render_video

MARKER = "OUTSIDE-THE-MEDIA-ROOT"
IN_ACCESS, IN_OPEN = 0x001, 0x020
INPUT_OPTIONS = {"-f", "-protocol_whitelist", "-format_whitelist", "-enable_drefs",
                 "-use_absolute_path"}  # fmt: skip


# -- media the tests make -----------------------------------------------------------------------
@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside everything the transforms are given, holding a marked video (320x240,
    red, titled with the marker) as MP4 and as an MPEG-TS segment."""
    folder = tmp_path / "elsewhere"
    for name in ("private.mp4", "private.ts"):
        make_video(folder / name, 320, 240, "color=c=red", title=MARKER)
    return folder


def dash(folder: Path) -> str:
    return f"""<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT1S"
     profiles="urn:mpeg:dash:profile:isoff-on-demand:2011" minBufferTime="PT1S">
 <Period><AdaptationSet mimeType="video/mp4">
  <Representation id="1" bandwidth="100000" width="320" height="240" codecs="avc1.64000d">
   <BaseURL>{folder / "private.mp4"}</BaseURL>
  </Representation>
 </AdaptationSet></Period>
</MPD>
"""


def hls(folder: Path) -> str:
    return (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:1.0,\n{folder / 'private.ts'}\n#EXT-X-ENDLIST\n"
    )


def ffconcat(folder: Path) -> str:
    return (
        f"ffconcat version 1.0\nfile '{folder / 'private.mp4'}'\nfile 'file:{folder}/private.mp4'\n"
    )


# (kind, the master's name): the "clip.mp4" an attacker commits, and the names by which FFmpeg's
# newer builds (PyAV's) also detect a manifest
REFERENCES: dict[str, Callable[[Path], str]] = {"dash": dash, "hls": hls, "concat": ffconcat}
NAMES = [
    ("dash", "clip.mp4"),
    ("dash", "clip.mpd"),
    ("hls", "clip.mp4"),
    ("hls", "clip.m3u8"),
    ("concat", "clip.mp4"),
    ("concat", "clip.ffconcat"),
]


# -- proof that a file is never opened ----------------------------------------------------------
class OpenWatch:
    """The names of the files opened or read in one folder since the watch began (inotify)."""

    def __init__(self, folder: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0 or libc.inotify_add_watch(
            self.fd, os.fsencode(folder), IN_OPEN | IN_ACCESS
        ) < 0:  # fmt: skip
            pytest.skip(f"inotify is not available here: {os.strerror(ctypes.get_errno())}")

    def names(self) -> set[str]:
        seen: set[str] = set()
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return seen
            offset = 0
            while offset < len(data):
                _, _, _, length = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16 : offset + 16 + length].rstrip(b"\0")
                seen.add(os.fsdecode(name))
                offset += 16 + length

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def watch(outside: Path) -> Iterator[OpenWatch]:
    opened = OpenWatch(outside)
    yield opened
    opened.close()


def test_the_watch_sees_a_media_tool_open_the_outside_video(
    outside: Path, watch: OpenWatch
) -> None:
    """The instrument works: without it, "never opened" below would prove nothing. (FFmpeg's
    libraries in this process, through PyAV: inotify sees this process's opens too.)"""
    assert watch.names() == set()
    with av.open(str(outside / "private.mp4")) as opened:
        assert opened.metadata.get("title") == MARKER
    assert "private.mp4" in watch.names()


# -- references to other files are refused ------------------------------------------------------
def steps(rules: dict[str, Any]) -> tuple:
    recipe = recipe_for(rules, "video/mp4", "video_platform")
    assert recipe is not None
    return recipe.steps


@ENGINES
@pytest.mark.parametrize(("kind", "name"), NAMES)
def test_a_master_that_names_other_files_is_refused_and_they_are_never_opened(
    tmp_path: Path, outside: Path, watch: OpenWatch, engine: str, kind: str, name: str
) -> None:
    work = tmp_path / "work"
    master = work / "in" / name
    master.parent.mkdir(parents=True)
    master.write_text(REFERENCES[kind](outside))
    dest = work / "media.mp4"
    for rules in ({"quality": "240p", "add_watermark": True}, {"quality": "1080p"}):
        with pytest.raises(TransformError) as failure:
            render_video(master, dest, steps(rules), tmp_path, work, None, engine)
        message = str(failure.value)
        assert name in message  # the master's name ...
        for content in (str(outside), MARKER, "<MPD", "#EXTM3U", "ffconcat version"):
            assert content not in message  # ... and nothing of its content
        assert not dest.exists()
    assert watch.names() == set()  # nothing outside was opened, not even probed


@ENGINES
def test_the_refusal_says_what_is_accepted(tmp_path: Path, outside: Path, engine: str) -> None:
    master = tmp_path / "clip.m3u8"  # a playlist both engines' FFmpeg builds detect
    master.write_text(hls(outside))
    with pytest.raises(TransformError, match=r"^clip\.m3u8 is not a video file .* MP4/MOV"):
        probe(master, engine)


@ENGINES
def test_a_picture_is_not_a_video_master(tmp_path: Path, engine: str) -> None:
    """The image demuxers (a PNG detected by content, image2 by a name's extension or
    pattern) read pictures, and image2 whole numbered sequences of sibling files."""
    picture = io.BytesIO()
    Image.new("RGB", (64, 48), (255, 0, 0)).save(picture, "PNG")
    for name in ("still.mp4", "still-%03d.png"):
        master = tmp_path / name
        master.write_bytes(picture.getvalue())
        with pytest.raises(TransformError, match=r"is not a video file the transforms read"):
            probe(master, engine)


@ENGINES
def test_a_name_that_looks_like_a_protocol_is_only_a_name(
    tmp_path: Path, outside: Path, watch: OpenWatch, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative ``concat:/elsewhere/private.mp4`` is a master in a folder called
    ``concat:``, not FFmpeg's concat protocol over the outside video."""
    monkeypatch.chdir(tmp_path)
    relative = Path(f"concat:{outside / 'private.mp4'}")
    make_video(tmp_path / relative, 64, 48)
    dest = tmp_path / "out.mp4"
    rules = {"quality": "240p", "add_watermark": True}
    render_video(relative, dest, steps(rules), tmp_path, tmp_path, None, engine)
    info = probe(dest, engine)
    assert (info.width, info.height) == (64, 48)  # the master's size, not the outside 320x240
    assert watch.names() == set()


# -- self-contained containers still render -----------------------------------------------------
@ENGINES
@pytest.mark.parametrize(
    ("name", "container"),
    [("m.mp4", "mov"), ("m.mov", "mov"), ("m.mkv", "matroska"), ("m.avi", "avi"),
     ("m.ts", "mpegts"), ("m.flv", "flv")],
)  # fmt: skip
def test_masters_in_the_accepted_containers_render(
    tmp_path: Path, engine: str, name: str, container: str
) -> None:
    # AVI's usual codec: AVI stores no presentation times, so H.264 with B-frames in it has
    # timestamps out of order (PyAV's encoder refuses them; a separate matter)
    codec = "mpeg4" if container == "avi" else "libx264"
    master = make_video(tmp_path / name, 128, 96, codec=codec)
    assert container in CONTAINERS
    assert probe(master, engine).container == container
    dest = tmp_path / "out.mp4"
    done = render_video(
        master, dest, steps({"quality": "240p", "add_watermark": True}), tmp_path, tmp_path, None,
        engine,
    )  # fmt: skip
    assert done["width"] == 128 and dest.exists()
    assert probe(dest, engine).container == "mov"


# -- every open is restricted -------------------------------------------------------------------
@needs_ffmpeg
def test_every_input_of_ffprobe_and_ffmpeg_is_restricted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each ``-i`` is a ``file:`` URL of an absolute path, preceded by the ``file`` protocol
    whitelist and a demuxer whitelist; once detected, the master's demuxer is forced, and the
    mov demuxer always has its data references off; the watermark is read as one PNG."""
    commands: list[list[str]] = []
    real_popen = subprocess.Popen

    def popen(command: list[str], *args: Any, **kwargs: Any) -> Any:  # subprocess.run's too
        commands.append(list(command))
        return real_popen(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", popen)
    master = make_video(tmp_path / "m.mp4", 128, 96)
    commands.clear()
    rules = {"quality": "240p", "add_watermark": True}
    render_video(master, tmp_path / "o.mp4", steps(rules), tmp_path, tmp_path, None, "ffmpeg")
    inputs = []
    for command in commands:
        start = 0
        for at, arg in enumerate(command):
            if arg != "-i":
                continue
            given = command[start:at]  # this input's options: since the previous input
            options = {key: value for key, value in pairwise(given) if key in INPUT_OPTIONS}
            assert command[at + 1].startswith(f"file:{tmp_path}/"), command
            assert options.get("-protocol_whitelist") == "file", command
            assert options.get("-format_whitelist"), command
            inputs.append((options.get("-f"), options))
            start = at + 2
    forced = [demuxer for demuxer, _ in inputs]
    assert forced == [None, "mov", "mov", "png_pipe"]  # detect, probe, encode + the watermark
    for demuxer, options in inputs:
        if demuxer is not None:
            assert options["-format_whitelist"] == demuxer
        if demuxer == "mov":
            assert options["-enable_drefs"] == "0" and options["-use_absolute_path"] == "0"


def test_every_file_pyav_reads_is_restricted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same rules in-process: every ``av.open`` for reading has the whitelists, the
    master's has the mov data references off, and the watermark is opened as one PNG."""
    master = make_video(tmp_path / "m.mp4", 128, 96)
    reads: list[tuple[str, str | None, dict[str, str]]] = []
    real_open = av.open

    def opened(file: Any, mode: str = "r", **kwargs: Any) -> Any:
        if mode == "r":
            reads.append((file, kwargs.get("format"), kwargs.get("container_options") or {}))
        return real_open(file, mode, **kwargs)

    monkeypatch.setattr(av, "open", opened)
    rules = {"quality": "240p", "add_watermark": True}
    render_video(master, tmp_path / "o.mp4", steps(rules), tmp_path, tmp_path, None, "pyav")
    assert [demuxer for _, demuxer, _ in reads] == [None, "mov", "png_pipe"]
    for file, demuxer, options in reads:
        assert file.startswith(f"file:{tmp_path}/")
        assert options["protocol_whitelist"] == "file"
        assert options["format_whitelist"] == (demuxer or ",".join(CONTAINERS))
        if demuxer != "png_pipe":
            assert options["enable_drefs"] == "0" and options["use_absolute_path"] == "0"
