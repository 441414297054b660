"""Video renditions in-process with PyAV (FFmpeg's libraries, shipped in its wheel), used when
the ffmpeg and ffprobe commands are not installed, so that ``pip install`` alone gives a
working video pipeline. It builds the same filter graph as :mod:`reconciler.transforms.video`
(scale, square pixels, yuv420p, the watermark overlaid) and encodes H.264/AAC MP4 with the
index at the front; the two give the same kind of rendition from the same recipe.

Every file is opened as the ffmpeg engine opens it (:func:`video.open_options`): the ``file``
protocol only, a demuxer from :data:`video.CONTAINERS` (forced by name once detected), the mov
demuxer's data references off; the watermark is decoded from its PNG here, with the PNG
demuxer only, and fed to the overlay (no ``movie`` filter, which would open files itself).
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from typing import Any

from reconciler.transforms import TransformError
from reconciler.transforms.video import (
    MOV_OPTIONS,
    WATERMARK_FORMAT,
    VideoInfo,
    container_of,
    open_options,
    refused,
    url,
)


def _av() -> Any:
    try:
        import av
    except ImportError:  # pragma: no cover - a dependency; only a broken install lacks it
        raise TransformError(
            "neither ffmpeg nor PyAV is installed; video transforms need one "
            "(Debian: apt-get install ffmpeg; or pip install av)"
        ) from None
    return av


def probe(source: Path) -> VideoInfo:
    """Dimensions, duration, audio and container of the first video stream."""
    av = _av()
    try:
        with _open_master(av, source) as container:
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
            audio = bool(container.streams.audio)
            kind = container_of(container.format.name)
            assert kind is not None  # _open_master refuses any other
            return VideoInfo(width, height, duration, audio, kind)
    except av.FFmpegError as exc:
        raise TransformError(f"ffmpeg cannot read {source.name}: {_reason(exc)}") from None


def _open_master(av: Any, source: Path, demuxer: str | None = None) -> Any:
    """``source`` opened for reading with ``demuxer`` (None: the one of
    :data:`video.CONTAINERS` its bytes are), the ``file`` protocol only and the mov demuxer's
    data references off; :func:`video.refused` for bytes in any other format."""
    options = open_options(demuxer) | MOV_OPTIONS  # the mov options, explicit even when detecting
    try:
        container = av.open(url(source), format=demuxer, container_options=options)
    except av.FFmpegError as exc:
        # with these fixed options, detection's EINVAL is a format off the whitelist
        if demuxer is None and getattr(exc, "errno", None) == errno.EINVAL:
            raise refused(source) from None
        raise
    if container_of(container.format.name) is None:  # pragma: no cover - the whitelist holds
        container.close()
        raise refused(source)
    return container


def transcode(
    source: Path,
    dest: Path,
    size: tuple[int, int],
    stamp: Path | None,
    encode: dict[str, Any],
    info: VideoInfo,
    progress: Callable[[float], None] | None,
) -> None:
    """Scale ``source`` (as :func:`probe` found it: ``info``) to ``size``, overlay ``stamp``
    (an RGBA PNG of that size), and write an MP4 to ``dest``."""
    av = _av()
    duration = info.duration
    try:
        with (
            _open_master(av, source, info.container) as src,
            av.open(url(dest), "w", format="mp4", options={"movflags": "+faststart"}) as out,
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
    mark, picture = None, None
    if stamp is not None:  # one picture: overlay repeats it to the end
        picture = _picture(av, stamp)
        steps.append(graph.add("overlay", "0:0:format=auto"))
        mark = graph.add_buffer(
            width=picture.width,
            height=picture.height,
            format=picture.format.name,
            time_base=picture.time_base or Fraction(1, 25),
        )
        mark.link_to(steps[-1], 0, 1)
    steps.append(graph.add("buffersink"))
    source.link_to(steps[0])
    for before, after in pairwise(steps):
        before.link_to(after)
    graph.configure()
    if mark is not None:
        mark.push(picture)
        mark.push(None)
    return graph, source.push


def _picture(av: Any, stamp: Path) -> Any:
    """The watermark's one frame, decoded from the PNG with the PNG demuxer only."""
    with av.open(
        url(stamp), format=WATERMARK_FORMAT, container_options=open_options(WATERMARK_FORMAT)
    ) as png:
        for picture in png.decode(video=0):
            picture.pts = 0
            return picture
    raise TransformError(f"the watermark picture {stamp.name} has no frame")


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
