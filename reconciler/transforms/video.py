"""Video renditions with ffmpeg (Debian's package), run as a subprocess: scale down to a
height (never up), overlay the watermark badge, encode H.264/AAC MP4 with the index at the
front. Progress is read from ffmpeg's ``-progress`` output; ffprobe reads the master first,
so a file ffmpeg cannot decode fails before any encoding starts.

The media tools read nothing but the file they are given (the master's private snapshot, and
the watermark picture this code wrote). FFmpeg detects formats by content, and some of its
demuxers are references to other files (DASH and HLS manifests, concat lists, image
sequences, QuickTime data references), so every open is restricted: only the ``file``
protocol, a ``file:`` URL of an absolute path (a name that looks like ``concat:`` or
``subfile,`` is just a name), and a demuxer from :data:`CONTAINERS`, self-contained
containers, with the mov demuxer's external data references kept off. The container is
detected once under that whitelist, then forced by name on every later open.

Without the ffmpeg and ffprobe commands, the same steps run in-process through PyAV
(:mod:`reconciler.transforms.pyav`), which ships FFmpeg's libraries in its wheel.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.transforms import TransformError
from reconciler.transforms.images import badge

MISSING = "ffmpeg is not installed; video transforms need it (Debian: apt-get install ffmpeg)"
BACKENDS = ("ffmpeg", "pyav")  # the engines probe() and render_video() take

# The demuxers a master may be read with (FFmpeg's short names; ``mov`` is the one for MP4,
# MOV, M4V, 3GP and 3G2, ``matroska`` the one for MKV and WebM). Each reads a single file and
# opens no other: the formats platforms take and cameras and editors write. Everything else is
# refused, above all the demuxers that are references to other files (dash, hls, concat,
# image2 sequences, webm_dash_manifest...) and raw or picture formats no one uploads as video.
# Self-contained containers: each of these demuxers reads the one file and opens no other
# (MXF is left out: its OP-Atom form can name essence in other files).
CONTAINERS = ("mov", "matroska", "avi", "mpegts", "flv", "mpeg", "asf", "ogg")
ACCEPTED = "MP4/MOV, Matroska/WebM, AVI, MPEG-TS, FLV, MPEG-PS, ASF/WMV or Ogg"
# The mov demuxer can follow "data references" to media in other files; both options default
# to off in FFmpeg and are passed anyway, so that no build or future default turns them on.
MOV_OPTIONS = {"enable_drefs": "0", "use_absolute_path": "0"}
# The watermark picture (a PNG this code wrote) is read as one PNG, never as a file pattern.
WATERMARK_FORMAT = "png_pipe"


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    duration: float | None  # seconds
    has_audio: bool
    container: str  # the demuxer that read it, one of CONTAINERS


def open_options(demuxer: str | None) -> dict[str, str]:
    """The AVFormatContext options of every open: the ``file`` protocol only, and the one
    demuxer given (None: any of :data:`CONTAINERS`, when detecting the master's)."""
    options = {"protocol_whitelist": "file", "format_whitelist": demuxer or ",".join(CONTAINERS)}
    if demuxer == "mov":
        options |= MOV_OPTIONS
    return options


def container_of(format_name: str | None) -> str | None:
    """The :data:`CONTAINERS` entry of a demuxer's name as ffprobe and PyAV report it
    (``mov,mp4,m4a,3gp,3g2,mj2`` is ``mov``), or None when it is not one of them."""
    first = (format_name or "").split(",")[0].strip()
    return first if first in CONTAINERS else None


def refused(source: Path) -> TransformError:
    """The error for a master whose bytes are not a self-contained video container."""
    return TransformError(
        f"{source.name} is not a video file the transforms read: only {ACCEPTED} are "
        "accepted, never a playlist, streaming manifest, concat list or picture (they make "
        "ffmpeg open other files); export the video itself in one of those containers"
    )


def url(path: Path) -> str:
    """``path`` as a ``file:`` URL, absolute: ffmpeg then reads it as a file whatever it is
    called (a relative ``concat:a|b`` or ``subfile,...`` would otherwise be a protocol)."""
    return f"file:{path.absolute()}"


def _input(demuxer: str, path: Path) -> list[str]:
    """ffmpeg or ffprobe arguments opening ``path`` with ``demuxer`` only, and no protocol
    but ``file``."""
    flags = [arg for key, value in open_options(demuxer).items() for arg in (f"-{key}", value)]
    return ["-f", demuxer, *flags, "-i", url(path)]


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise TransformError(MISSING)
    return found


def backend() -> str:
    """``ffmpeg`` when both commands are installed, else ``pyav``."""
    if shutil.which("ffmpeg") and shutil.which("ffprobe"):
        return "ffmpeg"
    return "pyav"


def probe(source: Path, engine: str | None = None) -> VideoInfo:
    """Dimensions, duration, audio and container of the first video stream, or why it cannot
    be read (:func:`refused` when its bytes are not in one of :data:`CONTAINERS`)."""
    if (engine or backend()) == "pyav":
        from reconciler.transforms import pyav

        return pyav.probe(source)
    container = _container(source)
    result, data = _ffprobe(
        _input(container, source), "stream=codec_type,width,height:format=duration"
    )
    streams = data.get("streams") or []
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    if result.returncode != 0 or video is None or not video.get("width"):
        why = _last_line(result.stderr) or "no video stream"
        raise TransformError(f"ffmpeg cannot read {source.name}: {why}")
    duration = (data.get("format") or {}).get("duration")
    return VideoInfo(
        int(video["width"]),
        int(video["height"]),
        float(duration) if duration not in (None, "N/A") else None,
        any(s.get("codec_type") == "audio" for s in streams),
        container,
    )


def _container(source: Path) -> str:
    """The master's container, detected by ffprobe among :data:`CONTAINERS` only: a format
    outside them fails at detection, before that demuxer parses anything or opens a file."""
    options = open_options(None)
    result, data = _ffprobe(
        ["-protocol_whitelist", options["protocol_whitelist"],
         "-format_whitelist", options["format_whitelist"], "-i", url(source)],
        "format=format_name",
    )  # fmt: skip
    if result.returncode != 0 and "not on whitelist" in result.stderr:
        raise refused(source)
    if result.returncode != 0:
        why = _last_line(result.stderr) or f"exit status {result.returncode}"
        raise TransformError(f"ffmpeg cannot read {source.name}: {why}")
    container = container_of((data.get("format") or {}).get("format_name"))
    if container is None:
        raise refused(source)
    return container


def _ffprobe(opened: list[str], entries: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Run ffprobe on the input ``opened`` names; its result and JSON output ({} if none)."""
    result = subprocess.run(
        [tool("ffprobe"), "-v", "error", "-show_entries", entries, "-of", "json", *opened],
        capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        data = json.loads(result.stdout or "{}")
    except json.JSONDecodeError:
        data = {}
    return result, data if isinstance(data, dict) else {}


def output_size(info: VideoInfo, max_height: int | None) -> tuple[int, int]:
    """The rendition's size: at most ``max_height`` rows, aspect kept, both sides even."""
    width: float = info.width
    height = info.height
    if max_height is not None and height > max_height:
        width, height = width * max_height / height, max_height
    return max(2, int(width) // 2 * 2), max(2, height // 2 * 2)


def render_video(
    source: Path,
    dest: Path,
    steps: tuple[tuple[str, dict[str, Any]], ...],
    media_root: Path,
    workdir: Path,
    progress: Callable[[float], None] | None = None,
    engine: str | None = None,
) -> dict[str, Any]:
    """Write the MP4 rendition of ``source`` to ``dest``; returns what it did.

    ``{"unchanged": True}`` (nothing written) when the master is already within the size
    and nothing else is asked: no re-encoding, the master itself is the rendition.
    ``engine`` is ``ffmpeg`` or ``pyav``; None: :func:`backend`."""
    engine = engine or backend()
    info = probe(source, engine)
    params = dict(steps)
    max_height = params.get("scale", {}).get("max_height")
    width, height = output_size(info, max_height)
    mark = params.get("watermark")
    encode = params.get("encode", {})
    if mark is None and (width, height) == (info.width, info.height) and not encode.get("always"):
        return {"unchanged": True, "width": info.width, "height": info.height}
    done = {"width": width, "height": height, "from": [info.width, info.height]}
    stamp = None
    if mark is not None:
        stamp = workdir / "watermark.png"
        badge(width, height, mark, media_root).save(stamp)
    if engine == "pyav":
        from reconciler.transforms import pyav

        pyav.transcode(source, dest, (width, height), stamp, encode, info, progress)
        return {**done, "engine": "pyav"}
    command = [tool("ffmpeg"), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
               *_input(info.container, source)]  # fmt: skip
    graph = f"[0:v]scale={width}:{height},setsar=1,format=yuv420p[v0]"
    if stamp is not None:
        command += _input(WATERMARK_FORMAT, stamp)
        graph += ";[v0][1:v]overlay=0:0:format=auto[v1]"
    last = "[v1]" if mark is not None else "[v0]"
    command += ["-filter_complex", graph, "-map", last]
    if info.has_audio:
        command += ["-map", "0:a:0", "-c:a", "aac", "-b:a", f"{encode.get('audio_kbps', 128)}k"]
    command += [
        "-c:v", "libx264", "-preset", "veryfast", "-crf", str(encode.get("crf", 23)),
        "-movflags", "+faststart", "-map_metadata", "-1",
        "-progress", "pipe:1", "-nostats", "-f", "mp4", url(dest),
    ]  # fmt: skip
    _run(command, info.duration, progress, source)
    return done


def _run(
    command: list[str],
    duration: float | None,
    progress: Callable[[float], None] | None,
    source: Path,
) -> None:
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    try:
        for line in process.stdout:
            key, _, value = line.strip().partition("=")
            if key == "out_time_us" and duration and progress is not None and value.isdigit():
                progress(min(1.0, int(value) / 1e6 / duration))
            elif key == "progress" and value == "end" and progress is not None:
                progress(1.0)
        errors = process.stderr.read()
        code = process.wait()
    except BaseException:  # stopped: do not leave ffmpeg running
        process.kill()
        process.wait()
        raise
    if code != 0:
        raise TransformError(
            f"ffmpeg failed on {source.name}: {_last_line(errors) or f'exit status {code}'}"
        )


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""
