"""Video renditions with ffmpeg (Debian's package), run as a subprocess: scale down to a
height (never up), overlay the watermark badge, encode H.264/AAC MP4 with the index at the
front. Progress is read from ffmpeg's ``-progress`` output; ffprobe reads the master first,
so a file ffmpeg cannot decode fails before any encoding starts.

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
BACKENDS = ("ffmpeg", "pyav")


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    duration: float | None  # seconds
    has_audio: bool


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
    """Dimensions, duration and audio of the first video stream, or why it cannot be read."""
    if (engine or backend()) == "pyav":
        from reconciler.transforms import pyav

        return VideoInfo(*pyav.probe(source))
    result = subprocess.run(
        [tool("ffprobe"), "-v", "error", "-show_entries",
         "stream=codec_type,width,height:format=duration", "-of", "json", str(source)],
        capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        data = json.loads(result.stdout or "{}")
    except json.JSONDecodeError:
        data = {}
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
    )


def output_size(info: VideoInfo, max_height: int | None) -> tuple[int, int]:
    """The rendition's size: at most ``max_height`` rows, aspect kept, both sides even."""
    width, height = info.width, info.height
    if max_height is not None and height > max_height:
        width, height = width * max_height / height, max_height
    return max(2, int(width) // 2 * 2), max(2, int(height) // 2 * 2)


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

        pyav.transcode(source, dest, (width, height), stamp, encode, info.duration, progress)
        return {**done, "engine": "pyav"}
    command = [tool("ffmpeg"), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
               "-i", str(source)]  # fmt: skip
    graph = f"[0:v]scale={width}:{height},setsar=1,format=yuv420p[v0]"
    if stamp is not None:
        command += ["-i", str(stamp)]
        graph += ";[v0][1:v]overlay=0:0:format=auto[v1]"
    last = "[v1]" if mark is not None else "[v0]"
    command += ["-filter_complex", graph, "-map", last]
    if info.has_audio:
        command += ["-map", "0:a:0", "-c:a", "aac", "-b:a", f"{encode.get('audio_kbps', 128)}k"]
    command += [
        "-c:v", "libx264", "-preset", "veryfast", "-crf", str(encode.get("crf", 23)),
        "-movflags", "+faststart", "-map_metadata", "-1",
        "-progress", "pipe:1", "-nostats", "-f", "mp4", str(dest),
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
