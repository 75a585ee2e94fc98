"""GuidanceConfig: validation names the field and value, windows select the right steps."""
from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from guided.config import GuidanceConfig, TermWindow
from guided.constants import GUIDANCE_TERMS
from guided.errors import GuidedError


def test_defaults_are_valid_and_round_trip_through_json():
    config = GuidanceConfig()
    data = json.loads(json.dumps(asdict(config)))
    assert GuidanceConfig.from_dict(data) == config
    assert config.term_names() == GUIDANCE_TERMS == ("clip_text", "clip_style", "gram", "content", "tv")
    assert all(config.weight(t) > 0 for t in GUIDANCE_TERMS)  # each term alone is testable at its default weight


@pytest.mark.parametrize("changes, field, value", [
    ({"clip_text": -1.0}, "clip_text", "-1.0"),
    ({"gram": float("nan")}, "gram", "nan"),
    ({"tv": "0.1"}, "tv", "'0.1'"),
    ({"mode": "slow"}, "mode", "'slow'"),
    ({"fast_decoder": "vae"}, "fast_decoder", "'vae'"),
    ({"mixed_precision": "fp8"}, "mixed_precision", "'fp8'"),
    ({"cutouts": -2}, "cutouts", "-2"),
    ({"cutouts": 1.5}, "cutouts", "1.5"),
    ({"loss_size": 8}, "loss_size", "8"),
    ({"gram_layers": ()}, "gram_layers", "()"),
    ({"seed": "7"}, "seed", "'7'"),
    ({"normalize_gradients": "yes"}, "normalize_gradients", "'yes'"),
    ({"windows": {"gram": TermWindow(start=0.8, end=0.2)}}, "windows['gram'].start", "0.8"),
    ({"windows": {"tv": TermWindow(start=-0.1)}}, "windows['tv'].start", "-0.1"),
    ({"windows": {"tv": TermWindow(end=1.5)}}, "windows['tv'].end", "1.5"),
    ({"windows": {"content": TermWindow(every=0)}}, "windows['content'].every", "0"),
    ({"windows": {"colour": TermWindow()}}, "windows", "'colour'"),
])
def test_validation_names_field_and_value(changes, field, value):
    with pytest.raises(GuidedError) as err:
        GuidanceConfig(**changes)
    assert f"`{field}" in str(err.value) and value in str(err.value)


def test_replace_validates():
    config = GuidanceConfig()
    assert config.replace(gram=2.0).gram == 2.0 and config.gram == 1.0
    with pytest.raises(GuidedError, match="`content` must be in \\[0, inf\\], got -3"):
        config.replace(content=-3)


def test_windows_from_json_dicts_and_unknown_keys():
    config = GuidanceConfig(windows={"content": {"start": 0.0, "end": 0.5, "every": 1}})
    assert config.windows["content"] == TermWindow(0.0, 0.5, 1)
    assert config.windows["gram"] == TermWindow()  # unspecified terms keep the default window
    with pytest.raises(GuidedError, match="'strength'"):
        GuidanceConfig.from_dict({"strength": 0.5})


@pytest.mark.parametrize("window, steps", [
    (TermWindow(), list(range(10))),
    (TermWindow(every=2), [0, 2, 4, 6, 8]),
    (TermWindow(start=0.5), [5, 6, 7, 8, 9]),
    (TermWindow(end=0.5), [0, 1, 2, 3, 4]),
    (TermWindow(start=0.2, every=3), [2, 5, 8]),
    (TermWindow(start=0.25, end=0.75), [3, 4, 5, 6, 7]),
    (TermWindow(start=0.5, end=0.5), []),
])
def test_window_active_steps(window, steps):
    assert [i for i in range(10) if window.active(i, 10)] == steps
    assert not window.active(10, 10) and not window.active(-1, 10)


def test_active_terms_respect_weights_and_windows():
    config = GuidanceConfig(clip_style=0.0, windows={"content": TermWindow(end=0.5), "tv": TermWindow(every=2)})
    assert config.active_terms(0, 4) == ["clip_text", "gram", "content", "tv"]
    assert config.active_terms(3, 4) == ["clip_text", "gram"]
    assert GuidanceConfig(clip_text=0, clip_style=0, gram=0, content=0, tv=0).active_terms(0, 4) == []
