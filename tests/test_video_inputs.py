"""`guided video` refuses bad input with one line naming it, exit 2, nothing written; and the pieces
under it (frame planning, flow, occlusion, the warping error) do what they say."""
from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")
pytest.importorskip("cv2")

from video_factories import panning_frames, scene, write_clip, write_folder  # noqa: E402

from guided.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """One bad input of each kind, and a good clip and network, in a folder of their own."""
    import torch

    from guided.fast import TransformerNet, save_network

    root = tmp_path_factory.mktemp("inputs")
    good = write_clip(root / "good.mp4", panning_frames(4))
    (root / "text.mp4").write_text("not a video\n")
    with av.open(str(root / "sound.m4a"), "w") as out:  # audio, no video stream
        sound = out.add_stream("aac", rate=44100)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 44100, 0
        for packet in [*sound.encode(frame), *sound.encode(None)]:
            out.mux(packet)
    with av.open(str(root / "empty.mkv"), "w") as out:  # a video stream with no frames
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = out.add_stream("aac", rate=44100)
        for packet in [*sound.encode(frame), *sound.encode(None)]:
            out.mux(packet)
    data = bytearray(good.read_bytes())  # the H.264 payload zeroed: the container reads, the codec does not
    start = data.find(b"mdat") + 4
    data[start:start + 4000] = bytes(min(4000, len(data) - start))
    (root / "broken.mp4").write_bytes(bytes(data))
    write_clip(root / "huge.mp4", [np.zeros((16, 4100, 3), np.uint8)], audio=False)
    (root / "no-frames").mkdir()
    torch.manual_seed(0)
    net = save_network(TransformerNet("half"), root / "net.safetensors", {"style": "random"})
    return {p.stem: p for p in root.iterdir()} | {"net": net}


@pytest.mark.parametrize("name, message", [
    ("text", "is not a video file"),
    ("sound", "has no video stream"),
    ("empty", "has no frames"),
    ("broken", "cannot be decoded"),
    ("huge", "4100x16 px, over the 4096 px"),
    ("no-frames", "holds no frames"),
    ("missing", "does not exist"),
])
def test_bad_input_is_one_line_and_nothing_is_written(files, tmp_path, capsys, name, message):
    source = files.get(name, tmp_path / "missing.mp4")
    out = tmp_path / "out" / "o.mp4"
    assert main(["video", str(source), "-o", str(out), "--net", str(files["net"])]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and source.name in err, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["out"])


@pytest.mark.parametrize("extra, message", [
    (["--temporal", "1.5"], "`--temporal` must be in [0, 1]"),
    (["--temporal", "nan"], "`--temporal` must be a finite number"),
    (["--fps", "0"], "`--fps` must be in (0, 1000]"),
    (["--size", "5000"], "`--size` must be in [16, 4096]"),
    (["--start", "2", "--end", "1"], "`--end` (1) must be after `--start` (2)"),
    (["--max-frames", "0"], "`--max-frames` must be in [1, inf]"),
    (["--start", "5"], "has no frames after 5 s"),
    (["--fps", "0.001"], "at --fps 0.001 (less than one output frame)"),
    (["--size", "15"], "`--size` must be in [16, 4096], got 15"),
    (["--iterations", "5"], "`--iterations` does not apply to --method fast"),
])
def test_bad_options_are_refused_before_any_work(files, tmp_path, capsys, extra, message):
    out = tmp_path / "o.mp4"
    assert main(["video", str(files["good"]), "-o", str(out), "--net", str(files["net"]), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert list(tmp_path.iterdir()) == []


def test_bad_outputs_and_missing_network(files, tmp_path, capsys):
    good, net = str(files["good"]), str(files["net"])
    cases = [(["-o", good, "--net", net], "is one of the inputs"),
             (["-o", str(tmp_path / "o.png"), "--net", net], "must end in .mp4"),
             (["-o", str(tmp_path / "o.mp4")], "needs `--net NET`"),
             (["-o", str(tmp_path / "o.mp4"), "--net", str(tmp_path / "none.safetensors")], "does not exist"),
             (["-o", str(tmp_path / "o.mp4"), "--net", good], "is not a readable safetensors file")]
    for args, message in cases:
        assert main(["video", good, *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


def test_without_the_video_extra_it_says_which_to_install(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    assert main(["video", str(files["good"]), "-o", str(tmp_path / "o.mp4"), "--net", str(files["net"])]) == 2
    assert "pip install 'guided[video]'" in capsys.readouterr().err


def test_frame_plans():
    from guided.video.source import plan_frames

    times = [i / 10 for i in range(10)]
    assert plan_frames(times, Fraction(10)) == (list(range(10)), 0.0)
    assert plan_frames(times, Fraction(10), start=0.25, end=0.55) == ([3, 4, 5], 0.3)
    assert plan_frames(times, Fraction(10), fps=Fraction(20))[0] == [i // 2 for i in range(20)]  # each twice
    assert plan_frames(times, Fraction(10), fps=Fraction(4))[0] == [0, 2, 5, 7]
    assert plan_frames(times, Fraction(10), max_frames=3)[0] == [0, 1, 2]


def test_flow_finds_a_pan_and_masks_what_enters_the_frame():
    from guided.video.flow import FlowEstimator, warp

    world = scene(200, 100)
    previous, current = world[10:90, 10:130], world[10:90, 14:134]  # the camera moves 4 px right
    pair = FlowEstimator().pair(previous, current)
    inner = (slice(8, -8), slice(8, -12))
    assert np.median(pair.backward[inner][..., 0]) == pytest.approx(4.0, abs=0.3)
    assert np.median(np.abs(pair.backward[inner][..., 1])) < 0.3
    assert pair.mask[:, -3:].mean() < 0.2  # the new strip on the right was not in the previous frame
    assert pair.mask[inner].mean() > 0.9
    aligned = warp(previous.astype(np.float32), pair.backward)
    assert np.abs(aligned - current)[inner].mean() < 4  # grey levels


def test_warping_error_is_zero_for_a_consistent_video_and_grows_with_flicker():
    from guided.video.flow import FlowEstimator
    from guided.video.metric import warping_error

    world = scene(200, 100)
    previous, current = world[10:90, 10:130], world[10:90, 14:134]
    pair = FlowEstimator().pair(previous, current)
    steady = warping_error(previous, current, pair)
    rng = np.random.default_rng(0)
    flicker = np.clip(current + rng.normal(0, 20, current.shape), 0, 255).astype(np.uint8)
    assert steady < 0.002
    assert warping_error(previous, flicker, pair) > 10 * steady


def test_folder_frames_must_share_one_size(tmp_path, capsys, files):
    folder = write_folder(tmp_path / "frames", panning_frames(3) + [np.zeros((20, 20, 3), np.uint8)])
    assert main(["video", str(folder), "-o", str(tmp_path / "o.mp4"), "--net", str(files["net"]), "-q"]) == 2
    assert "every frame of a folder must have one size" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]  # no work folder, no output


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> dict[str, Path]:
    """Inputs that open and whose first frame decodes, but that break halfway."""
    from PIL import Image

    from guided.video.encode import write_mp4

    root = tmp_path_factory.mktemp("damaged")
    frames = panning_frames(60)
    whole = root / "whole.mp4"  # index first (faststart), as our own outputs and most web videos are
    write_mp4(iter(frames), whole, fps=10, width=64, height=48)
    data = whole.read_bytes()
    (root / "halfcut.mp4").write_bytes(data[:int(len(data) * 0.6)])  # the last 40 % cut off
    folder = write_folder(root / "frames", frames[:6])
    victim = sorted(folder.iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:len(victim.read_bytes()) // 2])  # one truncated PNG
    assert Image.open(sorted(folder.iterdir())[0]).size == (64, 48)
    return {"halfcut": root / "halfcut.mp4", "frames": folder, "victim": victim}


@pytest.mark.parametrize("name, message", [("halfcut", "is damaged"), ("frames", "is truncated")])
def test_an_input_that_breaks_halfway_is_refused_before_the_first_frame(damaged, files, tmp_path, capsys,
                                                                       name, message, monkeypatch):
    from guided.video import methods

    calls = []
    original = methods.FastMethod.__call__
    monkeypatch.setattr(methods.FastMethod, "__call__", lambda self, *a: calls.append(1) or original(self, *a))
    out = tmp_path / "o.mp4"
    assert main(["video", str(damaged[name]), "-o", str(out), "--net", str(files["net"])]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    named = damaged["victim"].name if name == "frames" else damaged[name].name
    assert named in err
    assert calls == [], "a frame was stylized before the input was found damaged"
    assert list(tmp_path.iterdir()) == []  # no output, no hidden work folder


def test_a_network_that_gives_nan_stops_at_the_first_frame_naming_it(files, tmp_path, capsys):
    import torch

    from guided.fast import TransformerNet, save_network

    torch.manual_seed(0)
    net = TransformerNet("half")
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))
    path = save_network(net, tmp_path / "nan.safetensors", {"style": "broken"})
    out = tmp_path / "out" / "o.mp4"
    out.parent.mkdir()
    assert main(["video", str(files["good"]), "-o", str(out), "--net", str(path), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "frame 0" in err and "nan.safetensors" in err and "NaN" in err, err
    assert list(out.parent.iterdir()) == []  # no black video, no work folder left behind


@pytest.mark.parametrize("extra", [["--size", "16"], ["--fps", "1000", "--max-frames", "3"], ["--temporal", "0"],
                                   ["--temporal", "1"], ["--max-frames", "1"], ["--blend", "features", "--size", "16"]])
def test_the_ends_of_each_video_range_run(files, tmp_path, capsys, extra):
    out = tmp_path / "o.mp4"
    assert main(["video", str(files["good"]), "-o", str(out), "--net", str(files["net"]), "-q", *extra]) == 0
    assert out.is_file() and "Traceback" not in capsys.readouterr().err


def test_a_clip_too_small_for_optical_flow_is_refused(tmp_path, capsys, files):
    tiny = write_clip(tmp_path / "tiny.mp4", [np.zeros((10, 10, 3), np.uint8)] * 3, audio=False)
    assert main(["video", str(tiny), "-o", str(tmp_path / "o.mp4"), "--net", str(files["net"])]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "at least 16 px on the long side" in err and "tiny.mp4" in err
