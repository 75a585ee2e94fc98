"""Reading a video: a video file (PyAV), an animated GIF (PyAV's gif demuxer) or a folder of frames.

`open_video(path, ...)` checks the input once, before any work: it must exist, hold a video stream,
be no larger than the image cap, and every frame the output needs must decode. It returns a `VideoInput`
whose `plan` lists, for every output frame, the input frame it shows, from the packets' timestamps
alone (no decoding), so the frame count is known before the first frame is stylized and a resumed
run knows exactly which frames are left.

    video = open_video("in.mp4", size=640, start=1.0, end=3.0)
    for index, rgb in video.frames():   # (H, W, 3) uint8, even H and W
        ...
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from guided.errors import GuidedError, one_line
from guided.io.images import DEFAULT_MAX_SIDE

logger = logging.getLogger(__name__)

#: Frame rate of a folder of frames when `fps` is not given: the PAL/web default of most tools.
FOLDER_FPS = Fraction(25)
#: The smallest long side of the output: OpenCV's DIS optical flow needs 12 px on one side, and the
#: feed-forward networks downsample by 4.
MIN_LONG_SIDE = 16
#: Frame files a folder may hold (the image loader's formats).
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclass
class VideoInput:
    """An opened input and the output frames planned from it."""

    path: Path
    kind: str  # "video", "gif" or "frames"
    width: int  # as stored
    height: int
    out_width: int  # the working (and output) size: --size applied, then rounded down to even
    out_height: int
    fps: Fraction  # the output frame rate (the input's, or --fps)
    codec: str
    audio: bool  # an audio stream to copy
    start: float  # time in the input of the first output frame (seconds)
    #: For every output frame, the index of the input frame (in presentation order) it shows.
    plan: list[int] = field(default_factory=list, repr=False)
    times: list[float] = field(default_factory=list, repr=False)  # presentation time of every input frame
    files: list[Path] = field(default_factory=list, repr=False)  # the frames of a folder
    stamps: list[int] = field(default_factory=list, repr=False)  # the video's pts of every input frame, sorted
    origin: float = 0.0  # the video stream's start time in the file (seconds); `times` count from it

    @property
    def frame_count(self) -> int:
        return len(self.plan)

    @property
    def duration(self) -> float:
        """Seconds of output: frames / rate."""
        return float(len(self.plan) / self.fps)

    def describe(self) -> dict:
        return {"path": str(self.path), "kind": self.kind, "size": [self.width, self.height],
                "output_size": [self.out_width, self.out_height], "fps": str(self.fps), "codec": self.codec,
                "frames": self.frame_count, "duration": round(self.duration, 4), "audio": self.audio,
                "start": round(self.start, 4)}

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """(output index, RGB uint8 frame at the output size), in order."""
        wanted: dict[int, list[int]] = {}
        for out_index, in_index in enumerate(self.plan):
            wanted.setdefault(in_index, []).append(out_index)
        source = self._folder_frames() if self.kind == "frames" else self._decoded_frames()
        for in_index, rgb in source:
            for out_index in wanted.get(in_index, ()):
                yield out_index, rgb
            if in_index >= self.plan[-1]:
                return

    def _fit(self, rgb: np.ndarray) -> np.ndarray:
        """Crop the last row/column of an odd-sized frame (yuv420p needs even sides)."""
        return np.ascontiguousarray(rgb[:self.out_height, :self.out_width])

    def _decoded_frames(self) -> Iterator[tuple[int, np.ndarray]]:
        import av

        width, height = _scaled(self.width, self.height, self.out_width, self.out_height)
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            index = {stamp: i for i, stamp in enumerate(self.stamps)}
            try:
                for rank, frame in enumerate(container.decode(stream)):
                    rgb = frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
                    yield index.get(frame.pts, rank), self._fit(rgb)
            except av.FFmpegError as exc:
                raise GuidedError(f"input video '{self.path}' cannot be decoded: {one_line(exc)}") from None

    def _folder_frames(self) -> Iterator[tuple[int, np.ndarray]]:
        from PIL import Image

        from guided.io.images import load_image

        for index, file in enumerate(self.files[:self.plan[-1] + 1]):
            image = load_image(file, what="frame")
            if image.size != (self.width, self.height):
                raise GuidedError(f"frame '{file}' is {image.width}x{image.height} px and the first frame "
                                  f"{self.width}x{self.height}: every frame of a folder must have one size")
            width, height = _scaled(self.width, self.height, self.out_width, self.out_height)
            if (width, height) != image.size:
                image = image.resize((width, height), Image.Resampling.BICUBIC)
            yield index, self._fit(np.asarray(image))


def _scaled(width: int, height: int, out_width: int, out_height: int) -> tuple[int, int]:
    """The size to scale to before the even crop: the input's own size unless --size changed it."""
    if (out_width, out_height) == (width - width % 2, height - height % 2):
        return width, height
    return out_width, out_height


def output_size(width: int, height: int, size: int | None) -> tuple[int, int]:
    """(width, height) with the long side `size` (None: unchanged), each rounded down to even."""
    if size is not None and max(width, height) != size:
        scale = size / max(width, height)
        width, height = max(2, round(width * scale)), max(2, round(height * scale))
    return width - width % 2, height - height % 2


def plan_frames(times: list[float], rate: Fraction, *, fps: Fraction | None = None, start: float = 0.0,
                end: float | None = None, max_frames: int | None = None) -> tuple[list[int], float]:
    """For every output frame, the input frame it shows; and the time of the first one.

    Without `fps`: every input frame with start <= time < end. With `fps`: output frame k shows the
    input frame on screen at start + k / fps (the last one whose time is <= it), until the input ends.
    """
    last = times[-1] + float(1 / rate)  # the last frame stays on screen for one frame period
    end = last if end is None else min(end, last)
    if fps is None:
        plan = [i for i, t in enumerate(times) if start <= t + 1e-6 and t < end - 1e-6]
    else:
        first = max(start, times[0])
        plan, i, k = [], 0, 0
        # As ffmpeg's fps filter: the span rounded to the nearest whole number of output frames.
        while (t := first + k / float(fps)) < end - 0.5 / float(fps) + 1e-6:
            while i + 1 < len(times) and times[i + 1] <= t + 1e-6:
                i += 1
            plan.append(i)
            k += 1
    if max_frames is not None:
        plan = plan[:max_frames]
    begin = times[plan[0]] if plan and fps is None else max(start, times[0])
    return plan, begin


def open_video(path: str | Path, *, size: int | None = None, fps: float | None = None, start: float = 0.0,
              end: float | None = None, max_frames: int | None = None,
              max_side: int = DEFAULT_MAX_SIDE) -> VideoInput:
    """Check `path` and plan its output frames; one `GuidedError` naming the file for a bad input."""
    path = Path(path).expanduser()
    if not path.exists():
        raise GuidedError(f"input video '{path}' does not exist")
    rate_given = Fraction(fps).limit_denominator(1001) if fps is not None else None
    if path.is_dir():
        video = _open_folder(path, rate_given or FOLDER_FPS, max_side)
        resample = None  # --fps names a folder's rate, it does not resample it
    else:
        video = _open_file(path, max_side)
        resample = rate_given
    video.out_width, video.out_height = output_size(video.width, video.height, size)
    if min(video.out_width, video.out_height) < 2 or max(video.out_width, video.out_height) < MIN_LONG_SIDE:
        raise GuidedError(f"input video '{path}' is {video.out_width}x{video.out_height} px at the output size: "
                          f"too small (at least {MIN_LONG_SIDE} px on the long side and 2 on the short one)")
    plan, begin = plan_frames(video.times, video.fps, fps=resample, start=start, end=end, max_frames=max_frames)
    if not plan:
        span = f"between {start:g} s and {end:g} s" if end is not None else f"after {start:g} s"
        rate = f" at --fps {float(resample):g} (less than one output frame)" if resample is not None else ""
        raise GuidedError(f"input video '{path}' has no frames {span}{rate} (it is {video.times[-1]:.3g} s long)")
    video.plan, video.start = plan, begin
    if resample is not None:
        video.fps = resample
    _probe(video)
    return video


def _probe(video: VideoInput) -> None:
    """Decode every input frame the plan needs, once, before any work: a file damaged halfway (a cut-off
    download, a truncated frame of a folder) fails here, not after minutes of stylizing. Decoding is a
    few milliseconds a frame, next to a tenth of a second or more to stylize it."""
    needed = video.plan[-1] + 1
    if video.kind == "frames":
        from guided.io.images import load_image

        for file in video.files[:needed]:
            load_image(file, what="frame")
        return
    import av

    good = 0
    try:
        with av.open(str(video.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for _ in container.decode(stream):
                good += 1
                if good >= needed:
                    return
    except av.FFmpegError as exc:
        raise GuidedError(f"input video '{video.path}' is damaged: frame {good + 1} of the {needed} needed does not "
                          f"decode ({one_line(exc)}); nothing was written") from None
    raise GuidedError(f"input video '{video.path}' is damaged: {good} of the {needed} frames needed decode "
                      "(a truncated file?); nothing was written")


def _open_file(path: Path, max_side: int) -> VideoInput:
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise GuidedError(f"input video '{path}' is not a video file ffmpeg can read: {one_line(exc)}") from None
    with container:
        if not container.streams.video:
            raise GuidedError(f"input video '{path}' has no video stream")
        stream = container.streams.video[0]
        codec = stream.codec_context.name if stream.codec_context is not None else "unknown"
        width, height = stream.codec_context.width, stream.codec_context.height
        _check_side(path, width, height, max_side)
        stamps = _packet_stamps(container, stream, path)
        if not stamps:
            raise GuidedError(f"input video '{path}' has no frames")
        _check_decodes(container, stream, path, codec)
        origin = stream.start_time if stream.start_time is not None else stamps[0]
        times = [float((s - origin) * stream.time_base) for s in stamps]
        rate = stream.average_rate or stream.guessed_rate or _rate_from(times)
        kind = "gif" if container.format.name == "gif" else "video"
        audio = bool(container.streams.audio)
        # Every stream attribute is read while the container is open: PyAV 18 refuses them after close.
        start = float(origin * stream.time_base)
    return VideoInput(path, kind, width, height, width, height, Fraction(rate), codec, audio, 0.0, times=times,
                stamps=stamps, origin=start)


def _packet_stamps(container, stream, path: Path) -> list[int]:
    """Presentation time stamps (sorted) of every video packet, read without decoding."""
    import av

    stamps = []
    try:
        for packet in container.demux(stream):
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is not None and packet.size > 0:
                stamps.append(stamp)
    except av.FFmpegError as exc:
        raise GuidedError(f"input video '{path}' is damaged: {one_line(exc)}") from None
    return sorted(stamps)


def _check_decodes(container, stream, path: Path, codec: str) -> None:
    """The first frame must decode: an unsupported or broken codec fails here, before any work."""
    import av

    try:
        container.seek(0, stream=stream)
        for _ in container.decode(stream):
            return
    except (av.FFmpegError, ValueError) as exc:
        raise GuidedError(f"input video '{path}' ({codec}) cannot be decoded: {one_line(exc)}") from None
    raise GuidedError(f"input video '{path}' has no frame that decodes ({codec})")


def _rate_from(times: list[float]) -> Fraction:
    if len(times) < 2 or times[-1] <= times[0]:
        return FOLDER_FPS
    return Fraction((len(times) - 1) / (times[-1] - times[0])).limit_denominator(1001)


def _check_side(path: Path, width: int, height: int, max_side: int) -> None:
    if width <= 0 or height <= 0:
        raise GuidedError(f"input video '{path}' has no frame size (a damaged or audio-only file?)")
    if max(width, height) > max_side:
        raise GuidedError(f"input video '{path}' is {width}x{height} px, over the {max_side} px a side this "
                          "tool reads; scale it down first (e.g. ffmpeg -vf scale=1920:-2)")


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _check_folder_sizes(files: list[Path], size: tuple[int, int]) -> None:
    """Every frame the first one's size (headers only: no frame is decoded here)."""
    from PIL import Image

    for file in files[1:]:
        try:
            with Image.open(file) as image:
                other = image.size
        except Exception:  # noqa: BLE001 - the loader names the problem when the frame is read
            continue
        if other != size:
            raise GuidedError(f"frame '{file}' is {other[0]}x{other[1]} px and the first frame {size[0]}x{size[1]}: "
                              "every frame of a folder must have one size")


def _open_folder(path: Path, rate: Fraction, max_side: int) -> VideoInput:
    from guided.io.images import load_image

    files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES
                    and not p.name.startswith(".")), key=_natural_key)
    if not files:
        raise GuidedError(f"input folder '{path}' holds no frames ({', '.join(FRAME_SUFFIXES)})")
    first = load_image(files[0], what="frame", max_side=max_side)
    _check_folder_sizes(files, first.size)
    times = [i / float(rate) for i in range(len(files))]
    return VideoInput(path, "frames", first.width, first.height, first.width, first.height, rate, "images", False, 0.0,
                times=times, files=files)


__all__ = ["VideoInput", "FOLDER_FPS", "open_video", "output_size", "plan_frames"]
