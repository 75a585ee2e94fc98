"""`guided video`: decode/encode correctness, the warping error, GIF and frame-folder inputs, resume.

Clips are made in the test (tests/video_factories.py): 64x48, 10 frames at 10 fps, a textured scene
panning 3 px a frame, a 440 Hz tone. The fast network is a real TransformerNet with random weights:
its output is not a stylization, but it is a per-frame network whose texture flickers with the input.
"""
from __future__ import annotations

import json
import os
import signal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")
pytest.importorskip("cv2")

from video_factories import panning_frames, random_network, write_clip, write_folder, write_gif  # noqa: E402

from guided.cli import main  # noqa: E402
from guided.video.encode import inspect_mp4  # noqa: E402


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "pan.mp4", panning_frames(10))


@pytest.fixture(scope="module")
def net(tmp_path_factory) -> Path:
    return random_network(tmp_path_factory.mktemp("net") / "net.safetensors")


def _audio_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        packets = [p for p in container.demux(stream) if p.pts is not None]
        return float((packets[-1].pts + packets[-1].duration - packets[0].pts) * stream.time_base)


def _sidecar(path: Path) -> dict:
    return json.loads(path.with_name(path.name + ".json").read_text())


def test_output_keeps_frame_count_rate_duration_and_audio(clip, net, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert main(["video", str(clip), "-o", str(out), "--net", str(net), "-q"]) == 0
    source, written = inspect_mp4(clip), inspect_mp4(out)
    assert (written.frames, written.fps, written.width, written.height) == (10, Fraction(10), 64, 48)
    assert written.pix_fmt == "yuv420p" and written.audio == "aac"
    assert abs(written.duration - source.duration) < 0.1
    assert abs(_audio_seconds(out) - _audio_seconds(clip)) < 0.03  # the AAC packets copied unchanged
    with av.open(str(out)) as container:  # every frame decodes at the input's size
        assert sum(1 for _ in container.decode(video=0)) == 10
    manifest = _sidecar(out)
    assert manifest["kind"] == "video" and manifest["video"]["frames"] == 10
    error = manifest["temporal_consistency"]["warping_error"]
    assert error > 0 and len(manifest["temporal_consistency"]["per_frame"]) == 10
    assert f"warping error {error:.5f}" in capsys.readouterr().out
    assert not (tmp_path / ".out.mp4.work").exists()  # removed after a complete, verified output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "out.mp4.json"]


def test_temporal_consistency_lowers_the_warping_error(clip, net, tmp_path):
    errors = {}
    for temporal in (0.0, 0.6):
        out = tmp_path / f"t{temporal}.mp4"
        assert main(["video", str(clip), "-o", str(out), "--net", str(net), "--temporal", str(temporal), "-q"]) == 0
        errors[temporal] = _sidecar(out)["temporal_consistency"]["warping_error"]
    assert errors[0.6] < 0.6 * errors[0.0], errors


def test_size_fps_start_end_and_max_frames(clip, net, tmp_path):
    out = tmp_path / "small.mp4"
    assert main(["video", str(clip), "-o", str(out), "--net", str(net), "--size", "33", "--fps", "5",
                 "--start", "0.2", "-q"]) == 0
    written = inspect_mp4(out)
    assert (written.width, written.height) == (32, 24)  # 33x25 rounded down to even for yuv420p
    assert (written.frames, written.fps) == (4, Fraction(5))  # 0.8 s at 5 fps
    assert abs(_audio_seconds(out) - 0.8) < 0.05
    out = tmp_path / "cut.mp4"
    assert main(["video", str(clip), "-o", str(out), "--net", str(net), "--end", "0.75", "--max-frames", "5",
                 "-q"]) == 0
    assert inspect_mp4(out).frames == 5


def test_gif_and_folder_of_frames(net, tmp_path):
    frames = panning_frames(6)
    gif = write_gif(tmp_path / "pan.gif", frames, fps=10)
    out = tmp_path / "gif.mp4"
    assert main(["video", str(gif), "-o", str(out), "--net", str(net), "-q"]) == 0
    written = inspect_mp4(out)
    assert (written.frames, written.fps, written.audio) == (6, Fraction(10), None)
    folder = write_folder(tmp_path / "frames", frames + panning_frames(6, step=1))  # frame1 .. frame12
    out = tmp_path / "folder.mp4"
    assert main(["video", str(folder), "-o", str(out), "--net", str(net), "--fps", "12", "-q"]) == 0
    written = inspect_mp4(out)
    assert (written.frames, written.fps) == (12, Fraction(12))
    assert _sidecar(out)["parameters"]["input"]["kind"] == "frames"


class Counting:
    """A cheap deterministic method that counts its frames and can interrupt the run like Ctrl-C."""

    name = "counting"
    temporal = 0.5

    def __init__(self, stop_after: int | None = None, signum: int = signal.SIGINT):
        self.calls, self.stop_after, self.signum = [], stop_after, signum

    def params(self) -> dict:
        return {"temporal": self.temporal}

    def load(self) -> None:
        pass

    def describe(self) -> dict:
        return {}

    def __call__(self, frame, guide):
        from guided.video.methods import blend

        if self.stop_after is not None and len(self.calls) == self.stop_after:
            os.kill(os.getpid(), self.signum)  # arrives now: between two frames, as a user's Ctrl-C would
        self.calls.append(frame.copy())
        return blend(1.0 - frame.astype(np.float32) / 255.0, guide, self.temporal)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_resume_after_an_interrupt_redoes_no_finished_frame(clip, tmp_path, signum):
    from guided.video.run import VideoConfig, VideoInterrupted, stylize_video
    from guided.video.source import open_video
    from guided.video.work import work_folder

    out = tmp_path / "out.mp4"
    first = Counting(stop_after=4, signum=signum)
    with pytest.raises(VideoInterrupted) as stopped:
        stylize_video(clip, out, first, VideoConfig(progress=False))
    assert stopped.value.signum == signum and isinstance(stopped.value, KeyboardInterrupt)
    assert not out.exists()
    work = work_folder(out)
    assert sorted(p.name for p in work.glob("*.png")) == [f"{i:06d}.png" for i in range(4)]
    second = Counting()
    result = stylize_video(clip, out, second, VideoConfig(progress=False))
    assert len(second.calls) == 6 and result.resumed == 4  # frames 4..9 only
    decoded = [frame for _, frame in open_video(clip).frames()]
    assert len(first.calls) == 4
    np.testing.assert_array_equal(second.calls[0], decoded[4])
    assert inspect_mp4(out).frames == 10 and not work.exists()
    plain = Counting()  # the same result as an uninterrupted run
    again = stylize_video(clip, tmp_path / "plain.mp4", plain, VideoConfig(progress=False))
    assert again.warping_error == pytest.approx(result.warping_error, rel=1e-6)


class Failing(Counting):
    """Raises `error` at frame `at`, after the frames before it are finished."""

    def __init__(self, at: int, error: BaseException):
        super().__init__()
        self.at, self.error = at, error

    def __call__(self, frame, guide):
        if len(self.calls) == self.at:
            raise self.error
        return super().__call__(frame, guide)


def test_a_failure_keeps_the_work_folder_only_when_a_rerun_can_continue(clip, tmp_path, caplog):
    from guided.errors import GuidedError
    from guided.video.run import VideoConfig, stylize_video
    from guided.video.work import work_folder

    out = tmp_path / "out.mp4"
    with pytest.raises(OSError):  # the disk, not the input: the finished frames are kept and it says so
        stylize_video(clip, out, Failing(3, OSError(28, "No space left on device")), VideoConfig(progress=False))
    assert sorted(p.name for p in work_folder(out).glob("*.png")) == [f"{i:06d}.png" for i in range(3)]
    assert "3 of 10 frames finished are kept" in caplog.text and "run the same command again" in caplog.text
    rerun = Counting()
    assert stylize_video(clip, out, rerun, VideoConfig(progress=False)).resumed == 3 and len(rerun.calls) == 7
    out.unlink()
    with pytest.raises(GuidedError):  # the method refuses a frame: a rerun would fail the same way
        stylize_video(clip, out, Failing(3, GuidedError("frame refused")), VideoConfig(progress=False))
    assert not work_folder(out).exists() and not out.exists()
    with pytest.raises(OSError):  # nothing finished: nothing to keep
        stylize_video(clip, out, Failing(0, OSError(5, "I/O error")), VideoConfig(progress=False))
    assert not work_folder(out).exists()


def test_a_work_folder_of_other_parameters_is_not_reused(clip, tmp_path):
    from guided.video.run import VideoConfig, stylize_video

    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        stylize_video(clip, out, Counting(stop_after=3), VideoConfig(progress=False))
    changed = Counting()
    changed.temporal = 0.1
    result = stylize_video(clip, out, changed, VideoConfig(progress=False))
    assert result.resumed == 0 and len(changed.calls) == 10


def test_kill_9_loses_at_most_the_frame_in_progress(clip, net, tmp_path):
    import subprocess
    import sys
    import time

    out = tmp_path / "out.mp4"
    command = [sys.executable, "-m", "guided", "video", str(clip), "-o", str(out), "--net", str(net), "-q"]
    records = tmp_path / ".out.mp4.work" / "frames.jsonl"
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if records.is_file() and len(records.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    finished = len([line for line in records.read_text().splitlines() if line.strip()])
    if finished >= 10:
        pytest.skip("the run finished before it could be killed")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _sidecar(out)["resumed_frames"] >= finished >= 3
    assert inspect_mp4(out).frames == 10
