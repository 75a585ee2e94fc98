"""`stylize_video`: a video in, a stylized MP4 out, frame by frame with optical-flow consistency.

    from guided.video import FastMethod, VideoConfig, stylize_video
    result = stylize_video("in.mp4", "out.mp4", FastMethod("mosaic.safetensors", temporal=0.5))
    result.warping_error, result.metadata["timings"]

Steps: 1. check the options, the output and the input (nothing written on a mistake); 2. open the
work folder (a rerun continues after its finished frames); 3. per frame: flow between the input
frames, the method, the warping error (and style distance), the frame saved; 4. encode, read back,
publish atomically with the sidecar manifest; remove the work folder.
"""
from __future__ import annotations

import logging
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from guided import validate
from guided.errors import GuidedError, NonFiniteError
from guided.video.encode import EncodeConfig
from guided.video.flow import FlowConfig
from guided.video.methods import FrameMethod
from guided.video.source import MIN_LONG_SIDE

logger = logging.getLogger(__name__)

#: Longest side `size` may ask for: what the image loader reads (4K DCI is 4096 wide).
MAX_SIZE = 4096


@dataclass
class VideoConfig:
    """What is read, and how the output is written (the method carries its own options)."""

    size: int | None = None  # output long side in px; None keeps the input's (then rounded down to even)
    fps: float | None = None  # resample to this rate; None keeps the input's (a folder of frames: 25)
    start: float = 0.0  # seconds into the input
    end: float | None = None  # seconds into the input; None: to the end
    max_frames: int | None = None  # None: every frame of the span
    styles: tuple[str | Path, ...] = ()  # style image(s): per-frame style distance in the manifest
    backbone: str | Path | None = None  # VGG for the style distance (None: $GUIDED_VGG_WEIGHTS, else VGG-19)
    flow: FlowConfig = field(default_factory=FlowConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    progress: bool = True  # a progress bar on stderr (frames, fps, time left)

    def check(self, *, cli: bool = False) -> None:
        """Every number once, named as the caller spells it."""
        name = (lambda n: "--" + n.replace("_", "-")) if cli else (lambda n: n)
        if self.size is not None:
            validate.number(self.size, name("size"), low=MIN_LONG_SIDE, high=MAX_SIZE, integer=True)
        if self.fps is not None:
            validate.number(self.fps, name("fps"), low=0, high=1000, low_open=True)
        validate.number(self.start, name("start"), low=0)
        if self.end is not None:
            validate.number(self.end, name("end"), low=0, low_open=True)
            if self.end <= self.start:
                raise GuidedError(f"`{name('end')}` ({self.end:g}) must be after `{name('start')}` ({self.start:g})")
        if self.max_frames is not None:
            validate.number(self.max_frames, name("max_frames"), low=1, integer=True)


@dataclass
class VideoResult:
    """What `stylize_video` made."""

    path: Path
    frames: int
    warping_error: float | None  # Lai et al.'s E_warp, mean over consecutive output frames
    style_distance: float | None  # mean Gram distance to the style image(s), when given
    seconds: float
    resumed: int  # frames already finished by an earlier run
    metadata: dict


@dataclass
class _Clock:
    """Seconds spent per stage, for the manifest and the throughput figures."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("decode", "flow", "method", "metric", "save", "encode"), 0.0))

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] += now - since
        return now


class VideoInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM during a run: the finished frames are kept; the same command continues."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class WorkKept(GuidedError):
    """A failure after every frame was finished: the work folder stays, and a rerun only encodes again."""


def check_temporal(value: float, name: str = "temporal") -> float:
    return validate.number(value, name, low=0, high=1)


def stylize_video(source: str | Path, output: str | Path, method: FrameMethod,
                  config: VideoConfig | None = None) -> VideoResult:
    """Stylize `source` (a video, GIF or folder of frames) into the MP4 `output` with `method`."""
    from guided.interrupts import Interrupted, InterruptGuard
    from guided.io.outputs import Output, check_outputs
    from guided.video.source import open_video
    from guided.video.work import WorkFolder, work_folder

    started = time.perf_counter()
    config = config or VideoConfig()
    # 1. Check inputs: the numbers, the output, then the video itself (decoding its first frame).
    config.check()
    check_temporal(method.temporal)
    output = Path(output).expanduser()
    check_outputs([Output(output, "--output", kind="file", suffixes=(".mp4",))],
                  inputs=[source, *config.styles, getattr(method, "network", None)])
    video = open_video(source, size=config.size, fps=config.fps, start=config.start, end=config.end,
                       max_frames=config.max_frames)
    meter = _style_meter(config)
    method.load()  # a bad network or model is refused here, before anything is written
    # 2. The work folder: what the frames depend on decides whether earlier frames are reused.
    stat = Path(source).stat()
    job = {"input": str(Path(source).resolve()), "input_size": stat.st_size, "input_mtime_ns": stat.st_mtime_ns,
           "video": video.describe(), "method": method.name, "params": method.params(), "flow": asdict(config.flow)}
    work = WorkFolder(work_folder(output), job)
    resumed = work.open()
    if resumed:
        logger.info("continuing: %d of %d frames already finished in '%s'", resumed, video.frame_count, work.folder)
    clock = _Clock()
    try:
        with InterruptGuard() as signals:
            # 3. The frames (SIGINT/SIGTERM are held while a frame and its record are written).
            _frames(video, method, work, resumed, meter, clock, signals, config)
            # 4. Encode, read back, publish.
            result = _finish(video, method, work, output, config, clock, started, resumed)
    except Interrupted as stop:
        logger.warning("interrupted: %d of %d frames finished in '%s'; run the same command again to continue",
                       work.done, video.frame_count, work.folder)
        work.close()
        raise VideoInterrupted(stop.signum) from None
    except WorkKept:
        work.close()
        raise
    except GuidedError:
        work.remove()  # the input or the method is at fault: rerunning would fail the same way
        raise
    except BaseException:
        work.close()
        if work.done:
            logger.warning("stopped: %d of %d frames finished are kept in '%s'; run the same command again to "
                           "continue", work.done, video.frame_count, work.folder)
        else:
            work.remove()
        raise
    work.remove()
    return result


def _what(method: FrameMethod) -> str:
    """The method, and the network it runs where it has one, for an error message."""
    network = getattr(method, "network", None)
    return f"the {method.name} method" + (f" (network '{network}')" if network is not None else "")


def _style_meter(config: VideoConfig):
    if not config.styles:
        return None
    from guided.video.metric import StyleMeter

    return StyleMeter(config.styles, config.backbone)


def _frames(video, method: FrameMethod, work, resumed: int, meter, clock: _Clock, signals, config) -> None:
    from tqdm.auto import tqdm

    from guided.video.flow import FlowEstimator
    from guided.video.methods import Guide
    from guided.video.metric import warping_error

    if resumed >= video.frame_count:
        return
    estimator = FlowEstimator(config.flow)
    previous_input = previous_output = None
    bar = tqdm(total=video.frame_count, initial=resumed, unit="frame", desc=f"video {method.name}",
               disable=not config.progress, file=sys.stderr, dynamic_ncols=True)
    with bar:
        mark = time.perf_counter()
        for index, frame in video.frames():
            mark = clock.add("decode", mark)
            if index < resumed:  # finished earlier: only the last one is needed, as the previous frame
                if index == resumed - 1:
                    previous_input, previous_output = frame, work.load(index)
                mark = time.perf_counter()
                continue
            pair = estimator.pair(previous_input, frame) if previous_input is not None else None
            mark = clock.add("flow", mark)
            guide = (Guide(pair.align(previous_output.astype(np.float32) / 255.0), pair.mask, pair.backward,
                           previous_input) if pair else None)
            styled = method(frame, guide)
            if not np.isfinite(styled).all():  # NaN would cast to black frames and a warping error of 0
                raise NonFiniteError(f"frame {index} of '{video.path}': {_what(method)} gave NaN or inf values; "
                                     "nothing was written")
            out = (np.clip(styled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
            mark = clock.add("method", mark)
            record = {"warping_error": warping_error(previous_output, out, pair) if pair else None,
                      "style_distance": meter(out) if meter is not None else None}
            mark = clock.add("metric", mark)
            with signals.critical():
                work.save(index, out, record)
            mark = clock.add("save", mark)
            previous_input, previous_output = frame, out
            bar.update(1)


def _finish(video, method: FrameMethod, work, output: Path, config: VideoConfig, clock: _Clock, started: float,
            resumed: int) -> VideoResult:
    from guided.io.files import remove_stale_temps
    from guided.video.encode import AudioSpan, inspect_mp4, publish, temp_path, write_mp4
    from guided.video.metric import mean_error

    if work.done < video.frame_count:
        raise GuidedError(f"input video '{video.path}' gave {work.done} of its {video.frame_count} planned frames "
                          "(a damaged file?); nothing was written")
    mark = time.perf_counter()
    remove_stale_temps(output.parent, target=output.name)
    temp = temp_path(output)
    audio = (AudioSpan(video.path, video.origin + video.start, video.origin + video.start + video.duration)
             if video.audio else None)
    try:
        count = write_mp4((work.load(i) for i in range(video.frame_count)), temp, fps=video.fps,
                          width=video.out_width, height=video.out_height, audio=audio, config=config.encode)
        written = inspect_mp4(temp)
        if (written.frames, written.width, written.height) != (count, video.out_width, video.out_height):
            raise WorkKept(f"the encoded video has {written.frames} frames of {written.width}x{written.height}, "
                              f"expected {count} of {video.out_width}x{video.out_height}; the work folder "
                              f"'{work.folder}' is kept")
        clock.add("encode", mark)
        records = [work.records[i] for i in range(video.frame_count)]
        errors = [r.get("warping_error") for r in records]
        distances = [r.get("style_distance") for r in records]
        result = VideoResult(output, count, mean_error(errors), mean_error(distances),
                             time.perf_counter() - started, resumed, {})
        result.metadata = _manifest(video, method, config, result, written, errors, distances, clock)
        publish(temp, output, result.metadata)
    finally:
        temp.unlink(missing_ok=True)
    return result


def _manifest(video, method: FrameMethod, config: VideoConfig, result: VideoResult, written, errors, distances,
              clock: _Clock) -> dict:
    from guided.io.manifest import build_manifest

    total = sum(clock.seconds.values())
    parameters = {"input": video.describe(), "method": method.name, "temporal": method.temporal,
                  "method_params": method.params(), "size": config.size, "fps": config.fps, "start": config.start,
                  "end": config.end, "max_frames": config.max_frames,
                  "styles": [str(s) for s in config.styles], "flow": asdict(config.flow),
                  "encode": asdict(config.encode)}
    consistency = {"warping_error": result.warping_error, "per_frame": errors,
                   "metric": "Lai et al. 2018 E_warp: masked mean squared RGB difference in [0, 1] between an "
                             "output frame and the previous one warped by the input frames' DIS flow"}
    extra = {"video": {"frames": written.frames, "fps": str(written.fps), "duration": written.duration,
                       "width": written.width, "height": written.height, "pix_fmt": written.pix_fmt,
                       "audio": written.audio},
             "temporal_consistency": consistency,
             "timings": {"seconds": {k: round(v, 3) for k, v in clock.seconds.items()},
                         "share": {k: round(v / total, 4) if total else 0.0 for k, v in clock.seconds.items()},
                         "frames_per_second": round((written.frames - result.resumed) / total, 3) if total else None},
             "resumed_frames": result.resumed}
    if config.styles:
        extra["style_distance"] = {"mean": result.style_distance, "per_frame": distances}
    return build_manifest(kind="video", parameters=parameters, seed=getattr(method, "seed", None),
                          models=method.describe(), device=str(getattr(method, "device", None) or "cpu"),
                          precision=str(getattr(method, "mixed_precision", None) or "no"),
                          seconds=round(result.seconds, 3), extra=extra)


__all__ = ["VideoConfig", "VideoInterrupted", "VideoResult", "WorkKept", "check_temporal", "stylize_video"]
