"""`guided video --blend features`: the warped previous frame's features blended before the decoder.

The network is a real TransformerNet with random weights on the synthetic panning clip
(tests/video_factories.py): a per-frame network whose texture flickers with the input.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("cv2")

from video_factories import panning_frames, random_network, write_clip  # noqa: E402

from guided.cli import main  # noqa: E402
from guided.errors import GuidedError  # noqa: E402
from guided.video.flow import FlowEstimator  # noqa: E402
from guided.video.methods import BLENDS, FastMethod, Guide  # noqa: E402


@pytest.fixture(scope="module")
def net(tmp_path_factory) -> Path:
    return random_network(tmp_path_factory.mktemp("net") / "net.safetensors")


def _error(out: Path) -> float:
    return json.loads(out.with_name(out.name + ".json").read_text())["temporal_consistency"]["warping_error"]


def _guide(previous: np.ndarray, current: np.ndarray, previous_output: np.ndarray, *,
           with_previous_frame: bool = True) -> Guide:
    pair = FlowEstimator().pair(previous, current)
    return Guide(pair.align(previous_output), pair.mask, pair.backward, previous if with_previous_frame else None)


def test_feature_blending_lowers_the_warping_error(net, tmp_path):
    clip = write_clip(tmp_path / "pan.mp4", panning_frames(10), audio=False)
    errors = {}
    for blend, temporal in (("output", 0.0), ("features", 0.6)):
        out = tmp_path / f"{blend}{temporal}.mp4"
        assert main(["video", str(clip), "-o", str(out), "--net", str(net), "--blend", blend,
                     "--temporal", str(temporal), "-q"]) == 0
        errors[blend] = _error(out)
    assert errors["features"] < 0.8 * errors["output"], errors


def test_feature_blending_at_zero_is_the_plain_network(net):
    frames = panning_frames(2)
    plain, features = FastMethod(net, temporal=0.0), FastMethod(net, temporal=0.0, blend="features")
    plain.load()
    features.load()
    first = plain(frames[0], None)
    np.testing.assert_allclose(features(frames[0], None), first, atol=1e-5)
    guide = _guide(frames[0], frames[1], first)
    np.testing.assert_allclose(features(frames[1], guide), plain(frames[1], guide), atol=1e-5)


def test_a_resumed_feature_blend_recomputes_the_previous_features(net):
    """After a resume the method has no features of its own: it encodes the previous input frame."""
    frames = panning_frames(2)
    method = FastMethod(net, temporal=0.7, blend="features")
    method.load()
    plain = method(frames[1], None)  # no guide: plain, and it leaves frame 1's features behind
    fresh = FastMethod(net, temporal=0.7, blend="features")
    fresh.load()
    first = fresh(frames[0], None)
    continued = fresh(frames[1], _guide(frames[0], frames[1], first))
    resumed = FastMethod(net, temporal=0.7, blend="features")
    resumed.load()
    after_resume = resumed(frames[1], _guide(frames[0], frames[1], first))
    np.testing.assert_allclose(after_resume, continued, atol=1e-5)
    assert np.abs(continued - plain).mean() > 1e-3  # the blend did something
    unguided = FastMethod(net, temporal=0.7, blend="features")
    unguided.load()  # without the previous frame and no features of its own, the frame stays plain
    np.testing.assert_allclose(unguided(frames[1], _guide(frames[0], frames[1], first, with_previous_frame=False)),
                               plain, atol=1e-5)


def test_blend_modes_and_bad_values(net, tmp_path, capsys):
    from guided.cli import video as cli_video

    assert cli_video.BLENDS == BLENDS  # the CLI keeps its own copy so that --help imports no numpy
    with pytest.raises(GuidedError, match="`blend` must be one of output, features, got 'pixels'"):
        FastMethod(net, temporal=0.5, blend="pixels")
    out = tmp_path / "x.mp4"
    with pytest.raises(SystemExit):
        main(["video", "in.mp4", "-o", str(out), "--net", str(net), "--blend", "pixels"])
    assert "--blend" in capsys.readouterr().err and not out.exists()
