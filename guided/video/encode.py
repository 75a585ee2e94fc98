"""Writing the output: H.264 in MP4 (yuv420p, `+faststart`, so browsers play it), the input's audio
copied unchanged, checked by reading it back, published atomically with its sidecar manifest.

    path = write_mp4(frames, target, fps=Fraction(25), width=640, height=360, audio=AudioSpan("in.mp4", 0, 4))
"""
from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from guided.errors import GuidedError, one_line
from guided.io.files import atomic_write, fsync_dir

logger = logging.getLogger(__name__)

#: Audio codecs an MP4 holds as they are (copied packet for packet); any other is re-encoded to AAC.
MP4_AUDIO = frozenset({"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"})


@dataclass(frozen=True)
class EncodeConfig:
    """How the H.264 stream is encoded."""

    codec: str = "libx264"  # H.264: the one video codec every browser and phone plays
    pix_fmt: str = "yuv420p"  # 4:2:0, the chroma layout browsers decode (x264 would pick 4:4:4 for RGB input)
    crf: int = 18  # x264's "visually lossless": stylized textures are fine detail a higher CRF smears
    preset: str = "medium"  # x264's default speed/size balance; encoding is a small share of a run


@dataclass(frozen=True)
class AudioSpan:
    """The audio to copy: the first audio stream of `source` between `begin` and `end` (seconds in the file)."""

    source: Path
    begin: float
    end: float


def temp_path(target: Path) -> Path:
    """A hidden temporary file next to `target` (same file system: the final rename is atomic)."""
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")


def write_mp4(frames: Iterable[np.ndarray], path: Path, *, fps: Fraction, width: int, height: int,
              audio: AudioSpan | None = None, config: EncodeConfig = EncodeConfig()) -> int:
    """Encode `frames` (RGB uint8, `height` x `width`) to `path` at `fps`; return the frame count."""
    import av

    if width % 2 or height % 2:
        raise ValueError(f"yuv420p needs even sides, got {width}x{height}")
    count = 0
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        video = out.add_stream(config.codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, config.pix_fmt
        video.options = {"crf": str(config.crf), "preset": config.preset}
        audio_in, packets = _audio_packets(out, audio) if audio is not None else (None, iter(()))
        pending = next(packets, None)
        try:
            for rgb in frames:
                # Audio due before this frame ends goes first, so the file is interleaved as it is written.
                horizon = (count + 1) / fps
                while pending is not None and pending[0] < horizon:
                    out.mux(pending[1])
                    pending = next(packets, None)
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts = count
                for packet in video.encode(frame):
                    out.mux(packet)
                count += 1
            for packet in video.encode():
                out.mux(packet)
            while pending is not None:
                out.mux(pending[1])
                pending = next(packets, None)
        finally:
            if audio_in is not None:
                audio_in.close()
    return count


def _audio_packets(out, span: AudioSpan):
    """(the opened input, an iterator of (output time, packet) for the audio between begin and end)."""
    import av

    source = av.open(str(span.source))
    stream = source.streams.audio[0]
    copy = stream.codec_context.name in MP4_AUDIO
    target = out.add_stream_from_template(stream) if copy else out.add_stream("aac", rate=stream.rate or 48000)
    if not copy:
        logger.info("audio %s is re-encoded to AAC (MP4 does not hold it as it is)", stream.codec_context.name)
    return source, (_copied if copy else _reencoded)(source, stream, target, span)


def _copied(source, stream, target, span: AudioSpan) -> Iterator[tuple[float, object]]:
    base = stream.time_base
    shift = round(span.begin / base)
    for packet in source.demux(stream):
        if packet.dts is None or packet.pts is None:
            continue  # the demuxer's final flush packet
        t = float(packet.pts * base)
        if t < span.begin - 1e-6 or t >= span.end - 1e-6:
            continue
        packet.pts -= shift
        packet.dts -= shift
        packet.stream = target
        yield t - span.begin, packet


def _reencoded(source, stream, target, span: AudioSpan) -> Iterator[tuple[float, object]]:
    import av

    resampler = av.AudioResampler(format=target.codec_context.format, layout=target.codec_context.layout,
                                  rate=target.codec_context.sample_rate)
    produced = 0
    for frame in source.decode(stream):
        if frame.time is None or frame.time < span.begin - 1e-6 or frame.time >= span.end - 1e-6:
            continue
        for piece in resampler.resample(frame):
            piece.pts = produced
            produced += piece.samples
            for packet in target.encode(piece):
                yield float(packet.pts * target.time_base) if packet.pts is not None else 0.0, packet
    for packet in target.encode(None):
        yield float(packet.pts * target.time_base) if packet.pts is not None else 0.0, packet


@dataclass(frozen=True)
class Written:
    """What reading the output back found."""

    frames: int
    width: int
    height: int
    fps: Fraction
    pix_fmt: str
    audio: str | None  # the audio codec, None without audio
    duration: float


def inspect_mp4(path: Path) -> Written:
    """Read `path` back (demuxing only: no decoding) to check what was written."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            frames = sum(1 for packet in container.demux(stream) if packet.size > 0)
            audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
            duration = float(container.duration / av.time_base) if container.duration else 0.0
            return Written(frames, stream.codec_context.width, stream.codec_context.height,
                           Fraction(stream.average_rate), stream.codec_context.pix_fmt, audio, duration)
    except (av.FFmpegError, IndexError) as exc:
        raise GuidedError(f"the written video '{path}' cannot be read back: {one_line(exc)}") from None


def publish(temp: Path, target: Path, metadata: dict) -> Path:
    """Move the finished `temp` video to `target` with its sidecar `<target>.json`, each atomically."""
    fd = os.open(temp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, target)
    fsync_dir(target.parent)
    # The sidecar after the video: a crash between the two leaves a complete video without its manifest.
    atomic_write(target.with_name(target.name + ".json"), json.dumps(metadata, indent=2, ensure_ascii=False) + "\n")
    return target


__all__ = ["AudioSpan", "EncodeConfig", "Written", "inspect_mp4", "publish", "temp_path",
           "write_mp4"]
