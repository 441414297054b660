"""Video renditions in-process with PyAV (FFmpeg's libraries, shipped in its wheel), used when
the ffmpeg and ffprobe commands are not installed, so that ``pip install`` alone gives a
working video pipeline. It builds the same filter graph as :mod:`reconciler.transforms.video`
(scale, square pixels, yuv420p, the watermark overlaid) and encodes H.264/AAC MP4 with the
index at the front; the two give the same kind of rendition from the same recipe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from typing import Any

from reconciler.transforms import TransformError


def _av() -> Any:
    try:
        import av
    except ImportError:  # pragma: no cover - a dependency; only a broken install lacks it
        raise TransformError(
            "neither ffmpeg nor PyAV is installed; video transforms need one "
            "(Debian: apt-get install ffmpeg; or pip install av)"
        ) from None
    return av


def probe(source: Path) -> tuple[int, int, float | None, bool]:
    """(width, height, duration in seconds, has audio) of the first video stream."""
    av = _av()
    try:
        with av.open(str(source)) as container:
            if not container.streams.video:
                raise TransformError(f"ffmpeg cannot read {source.name}: no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            duration = None
            if container.duration:
                duration = container.duration / 1_000_000
            elif stream.duration and stream.time_base:
                duration = float(stream.duration * stream.time_base)
            if not width or not height:
                raise TransformError(f"ffmpeg cannot read {source.name}: no picture size")
            return width, height, duration, bool(container.streams.audio)
    except av.FFmpegError as exc:
        raise TransformError(f"ffmpeg cannot read {source.name}: {_reason(exc)}") from None


def transcode(
    source: Path,
    dest: Path,
    size: tuple[int, int],
    stamp: Path | None,
    encode: dict[str, Any],
    duration: float | None,
    progress: Callable[[float], None] | None,
) -> None:
    """Scale ``source`` to ``size``, overlay ``stamp`` (an RGBA PNG of that size), and write
    an MP4 to ``dest``."""
    av = _av()
    try:
        with (
            av.open(str(source)) as src,
            av.open(str(dest), "w", format="mp4", options={"movflags": "+faststart"}) as out,
        ):
            video_in = src.streams.video[0]
            audio_in = src.streams.audio[0] if src.streams.audio else None
            rate = video_in.average_rate or video_in.guessed_rate or Fraction(25)
            video_out = out.add_stream(
                "libx264",
                rate=rate,
                options={"crf": str(encode.get("crf", 23)), "preset": "veryfast"},
            )
            video_out.width, video_out.height = size
            video_out.pix_fmt = "yuv420p"
            video_out.codec_context.sample_aspect_ratio = Fraction(1, 1)
            audio_out = None
            if audio_in is not None:
                audio_out = out.add_stream("aac", rate=audio_in.codec_context.sample_rate or 48000)
                audio_out.bit_rate = int(encode.get("audio_kbps", 128)) * 1000
            graph, feed = _graph(av, video_in, size, stamp)
            streams = [video_in] + ([audio_in] if audio_in is not None else [])
            for frame in _decoded(src, streams):
                if isinstance(frame, av.AudioFrame):
                    assert audio_out is not None
                    frame.pts = None
                    out.mux(audio_out.encode(frame))
                    continue
                feed(frame)
                for picture in _pulled(av, graph):
                    out.mux(video_out.encode(picture))
                if progress is not None and duration and frame.time is not None:
                    progress(min(1.0, frame.time / duration))
            feed(None)
            for picture in _pulled(av, graph):
                out.mux(video_out.encode(picture))
            out.mux(video_out.encode(None))
            if audio_out is not None:
                out.mux(audio_out.encode(None))
    except av.FFmpegError as exc:
        dest.unlink(missing_ok=True)
        raise TransformError(f"ffmpeg failed on {source.name}: {_reason(exc)}") from None
    if progress is not None:
        progress(1.0)


def _graph(
    av: Any, video_in: Any, size: tuple[int, int], stamp: Path | None
) -> tuple[Any, Callable[[Any], None]]:
    """The filter graph and a function pushing a decoded frame (None: the end) into it."""
    graph = av.filter.Graph()
    source = graph.add_buffer(template=video_in)
    width, height = size
    steps = [
        graph.add("scale", f"{width}:{height}"),
        graph.add("setsar", "1"),
        graph.add("format", "yuv420p"),
    ]
    if stamp is not None:  # one picture: overlay repeats it to the end
        steps.append(graph.add("overlay", "0:0:format=auto"))
        graph.add("movie", filename=str(stamp)).link_to(steps[-1], 0, 1)
    steps.append(graph.add("buffersink"))
    source.link_to(steps[0])
    for before, after in pairwise(steps):
        before.link_to(after)
    graph.configure()
    return graph, source.push


def _pulled(av: Any, graph: Any) -> Iterator[Any]:
    while True:
        try:
            yield graph.pull()
        except (av.BlockingIOError, av.EOFError):
            return


def _decoded(container: Any, streams: list[Any]) -> Iterator[Any]:
    for packet in container.demux(*streams):
        yield from packet.decode()


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "strerror", None) or exc).strip() or type(exc).__name__
