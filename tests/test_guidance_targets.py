"""Guidance targets kept across objectives: the same inputs and models are computed once; other
inputs, other weights in the same modules, or a target changed in place by one objective are not."""
from __future__ import annotations

import pytest
import torch
from factories import smooth_tensor as _smooth

from guided.config import GuidanceConfig
from guided.guidance.objective import GuidedObjective
from guided.models.bundle import GuidanceModels
from guided.models.targets import TargetCache, digest
from guided.testing import tiny_guidance_models

PROMPT = "an oil painting of autumn oaks"


@pytest.fixture()
def models() -> GuidanceModels:
    return tiny_guidance_models(seed=0, decoder=False)


def _config(**kw) -> GuidanceConfig:
    return GuidanceConfig(**{"loss_size": 64, "cutouts": 0, "cutout_augment": False, "mixed_precision": "no", **kw})


def _build(models, prompt=PROMPT, style=None, weights=None, content=None):
    obj = GuidedObjective(_config(), models, prompt=prompt, style_images=[style if style is not None else _smooth(1)],
                          style_weights=weights, content_image=content if content is not None else _smooth(3))
    obj.terms(_smooth(4))  # computes the content target at the image's loss view
    return obj


def _counting(models, monkeypatch) -> dict[str, int]:
    calls = {"text": 0, "vgg": 0}
    encode_text, vgg_forward = type(models.clip).encode_text, type(models.vgg).forward

    def text(self, prompts):
        calls["text"] += 1
        return encode_text(self, prompts)

    def vgg(self, x, layers):
        calls["vgg"] += 1
        return vgg_forward(self, x, layers)

    monkeypatch.setattr(type(models.clip), "encode_text", text)
    monkeypatch.setattr(type(models.vgg), "forward", vgg)
    return calls


def _same_targets(a: GuidedObjective, b: GuidedObjective) -> None:
    torch.testing.assert_close(a.text_target, b.text_target, rtol=0, atol=0)
    torch.testing.assert_close(a.style_target, b.style_target, rtol=0, atol=0)
    for layer in a.gram_targets:
        torch.testing.assert_close(a.gram_targets[layer], b.gram_targets[layer], rtol=0, atol=0)
    size = (48, 64)
    ca, cb = a._content_target(size, torch.device("cpu")), b._content_target(size, torch.device("cpu"))
    for layer in ca:
        torch.testing.assert_close(ca[layer], cb[layer], rtol=0, atol=0)


def test_the_same_inputs_compute_their_targets_once_and_equal_fresh_ones(models, monkeypatch):
    calls = _counting(models, monkeypatch)
    first = _build(models)
    made = dict(calls)
    assert made["text"] == 1 and made["vgg"] >= 3  # style gram, content target, the image itself
    second = _build(models)
    assert calls["text"] == made["text"]  # no second text encode
    assert calls["vgg"] == made["vgg"] + 1  # only the image's own VGG pass
    _same_targets(first, second)
    fresh_models = GuidanceModels(clip=models.clip, vgg=models.vgg, targets=TargetCache(max_entries=0))
    _same_targets(second, _build(fresh_models))  # a cache that keeps nothing computes the same


def test_other_inputs_are_other_entries(models):
    base = _build(models)
    prompt = _build(models, prompt="a watercolour of a fox")
    painting = _build(models, style=_smooth(7))
    photo = _build(models, content=_smooth(8))
    assert not torch.equal(prompt.text_target, base.text_target)
    assert not torch.equal(painting.style_target, base.style_target)
    assert not torch.equal(painting.gram_targets["relu1_1"], base.gram_targets["relu1_1"])
    size, cpu = (48, 64), torch.device("cpu")
    assert not torch.equal(photo._content_target(size, cpu)["relu4_2"], base._content_target(size, cpu)["relu4_2"])
    blended = GuidedObjective(_config(), models, style_images=[_smooth(1), _smooth(7)], style_weights=[1.0, 1.0])
    reweighted = GuidedObjective(_config(), models, style_images=[_smooth(1), _smooth(7)], style_weights=[3.0, 1.0])
    assert not torch.equal(blended.gram_targets["relu1_1"], reweighted.gram_targets["relu1_1"])


def test_new_weights_in_the_same_modules_compute_afresh(models):
    before = _build(models)
    with torch.no_grad():
        state = {k: v * 1.5 for k, v in models.vgg.state_dict().items()}
    models.vgg.load_state_dict(state)
    after = _build(models)
    assert not torch.equal(after.gram_targets["relu1_1"], before.gram_targets["relu1_1"])
    fresh = _build(GuidanceModels(clip=models.clip, vgg=models.vgg, targets=TargetCache(max_entries=0)))
    _same_targets(after, fresh)


def test_a_target_changed_in_place_does_not_reach_the_next_objective(models):
    first = _build(models)
    kept = first.gram_targets["relu1_1"].clone()
    for target in first.gram_targets.values():
        target.fill_(float("nan"))
    first.text_target.zero_()
    second = _build(models)
    torch.testing.assert_close(second.gram_targets["relu1_1"], kept)
    assert second.text_target.norm() > 0.99


def test_the_cache_keeps_at_most_its_size(models):
    cache = TargetCache(max_entries=2)
    for i in range(4):
        cache.get(("k", i), lambda i=i: torch.full((2,), float(i)))
    assert len(cache) == 2 and cache.misses == 4
    assert torch.equal(cache.get(("k", 3), lambda: torch.zeros(2)), torch.full((2,), 3.0)) and cache.hits == 1
    assert digest([torch.ones(2)]) == digest([torch.ones(2)]) != digest([torch.ones(3)])
    assert digest([torch.ones(2)]) != digest([torch.ones(2, dtype=torch.bfloat16)])
