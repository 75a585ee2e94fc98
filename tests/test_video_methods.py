"""The gatys and stylize methods of `guided video` on tiny models: Ruder et al.'s warm start with
far fewer iterations per later frame, a lower warping error with the temporal loss, and img2img with
one seed for every frame."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("cv2")

from video_factories import panning_frames, scene, write_clip  # noqa: E402


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "pan.mp4", panning_frames(5), audio=False)


@pytest.fixture(scope="module")
def style(tmp_path_factory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("style") / "style.png"
    Image.fromarray(scene(64, 64, seed=3)).save(path)
    return path


def test_gatys_warm_starts_later_frames_and_the_temporal_loss_lowers_the_warping_error(clip, style, tmp_path):
    from guided.models.vgg import make_vgg_features
    from guided.video.gatys_method import GatysMethod
    from guided.video.run import VideoConfig, stylize_video

    errors, methods = {}, {}
    for temporal in (0.0, 0.5):
        import torch

        torch.manual_seed(0)
        tiny = make_vgg_features("vgg19", width=1 / 16)
        method = GatysMethod([style], temporal=temporal, preset="d2l", backbone=tiny, iterations=12,
                             frame_iterations=4)
        result = stylize_video(clip, tmp_path / f"g{temporal}.mp4", method, VideoConfig(progress=False))
        errors[temporal], methods[temporal] = result.warping_error, method
    assert methods[0.5].steps == [12, 4, 4, 4, 4]  # a full first frame, then warm starts
    assert methods[0.0].steps == [12] * 5  # plain per-frame: every frame a cold start
    assert errors[0.5] < 0.5 * errors[0.0], errors
    manifest = json.loads((tmp_path / "g0.5.mp4.json").read_text())
    assert manifest["parameters"]["method"] == "gatys"
    assert manifest["parameters"]["method_params"]["frame_iterations"] == 4


def test_stylize_uses_one_seed_and_the_warped_previous_result(clip, tmp_path, monkeypatch, stylizer):
    from guided.stylize import Stylizer
    from guided.video.methods import StylizeMethod
    from guided.video.run import VideoConfig, stylize_video

    calls = []
    original = stylizer.run

    def spy(content, **kwargs):
        calls.append((np.asarray(content).copy(), kwargs["seed"]))
        return original(content, **kwargs)

    monkeypatch.setattr(Stylizer, "load", classmethod(lambda cls, **kw: stylizer))
    monkeypatch.setattr(stylizer, "run", spy)
    method = StylizeMethod(temporal=0.5, seed=7, tiny=True, run_options={"prompt": "ink", "steps": 2,
                                                                              "strength": 0.5})
    result = stylize_video(clip, tmp_path / "s.mp4", method, VideoConfig(progress=False, max_frames=3))
    assert result.frames == 3 and [seed for _, seed in calls] == [7, 7, 7]
    frames = panning_frames(5)
    first_init, second_init = calls[0][0].astype(int), calls[1][0].astype(int)
    assert np.abs(first_init - frames[0]).mean() < 12  # the frame itself (H.264 round trip aside)
    assert np.abs(second_init - frames[1]).mean() > 20  # the frame with the previous result blended in


def test_the_cli_drives_gatys_and_stylize(clip, style, tmp_path, monkeypatch, stylizer, capsys):
    from guided.cli import main
    from guided.stylize import Stylizer

    out = tmp_path / "g.mp4"
    assert main(["video", str(clip), "-o", str(out), "--method", "gatys", "--style", str(style), "--backbone",
                 "vgg19-random", "--max-frames", "2", "--iterations", "2", "--frame-iterations", "1", "-q"]) == 0
    manifest = json.loads((tmp_path / "g.mp4.json").read_text())
    assert manifest["style_distance"]["mean"] > 0 and len(manifest["style_distance"]["per_frame"]) == 2
    monkeypatch.setattr(Stylizer, "load", classmethod(lambda cls, **kw: stylizer))
    out = tmp_path / "s.mp4"
    assert main(["video", str(clip), "-o", str(out), "--method", "stylize", "--tiny", "--prompt", "ink",
                 "--steps", "2", "--max-frames", "2", "-q"]) == 0
    assert json.loads((tmp_path / "s.mp4.json").read_text())["parameters"]["method_params"]["seed"] == 0
    assert main(["video", str(clip), "-o", str(out), "--method", "gatys"]) == 2
    assert "needs `--style STYLE`" in capsys.readouterr().err
