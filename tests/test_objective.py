"""GuidedObjective: each term against its formula, gradients that descend, notes, final losses."""
from __future__ import annotations

import pytest
import torch
from factories import rand_tensor as _image
from factories import smooth_tensor as _smooth

from guided.config import GuidanceConfig, TermWindow
from guided.constants import GUIDANCE_TERMS
from guided.errors import GuidedError
from guided.guidance.objective import GuidedObjective, loss_view
from guided.losses import content_loss, gram_loss, gram_matrix, spherical_distance, tv_loss
from guided.models.bundle import GuidanceModels
from guided.testing import tiny_guidance_models

PROMPT = "an oil painting of autumn oaks"
OFF = {name: 0.0 for name in GUIDANCE_TERMS}




@pytest.fixture(scope="module")
def models() -> GuidanceModels:
    return tiny_guidance_models(seed=0, decoder=False)


def _config(**changes) -> GuidanceConfig:
    # Small loss size: the tiny models are fast; no cutouts, so formulas are deterministic; float32
    # guided steps on every machine, so gradients match their formulas exactly (bf16: tests below).
    return GuidanceConfig(**{"loss_size": 64, "cutouts": 0, "cutout_augment": False, "mixed_precision": "no",
                             **changes})


def _objective(models, config=None, **kw) -> GuidedObjective:
    kw.setdefault("prompt", PROMPT)
    kw.setdefault("style_images", [_smooth(1, 56, 56), _smooth(2, 40, 72)])
    kw.setdefault("style_weights", [3.0, 1.0])
    kw.setdefault("content_image", _smooth(3))
    return GuidedObjective(config or _config(), models, **kw)


def test_each_term_matches_its_formula(models):
    cfg = _config()
    styles, content = [_smooth(1, 56, 56), _smooth(2, 40, 72)], _smooth(3)
    obj = _objective(models, cfg, style_images=styles, content_image=content)
    x = _image(4)
    got = obj.terms(x)
    clip, vgg = models.clip, models.vgg
    with torch.no_grad():
        view = loss_view(x, 64)
        assert view.shape[-2:] == (48, 64)
        emb = clip.encode_image(view)
        text = clip.encode_text([PROMPT])
        style = torch.nn.functional.normalize(3 * clip.encode_image(loss_view(styles[0], 64))
                                              + clip.encode_image(loss_view(styles[1], 64)), dim=-1)
        feats = vgg(view, list(cfg.gram_layers) + list(cfg.content_layers))
        sfeats = [vgg(loss_view(s, 64), cfg.gram_layers) for s in styles]
        blend = {layer: 0.75 * gram_matrix(sfeats[0][layer]) + 0.25 * gram_matrix(sfeats[1][layer])
                 for layer in cfg.gram_layers}
        gram = torch.stack([gram_loss(feats[layer], blend[layer]) for layer in cfg.gram_layers]).mean()
        cfeats = vgg(loss_view(content, 64), cfg.content_layers)
        cont = torch.stack([content_loss(feats[layer], cfeats[layer]) for layer in cfg.content_layers]).mean()
    expected = {"clip_text": spherical_distance(emb, text).mean(), "clip_style": spherical_distance(emb, style).mean(),
                "gram": gram, "content": cont, "tv": tv_loss(x)}
    assert list(got) == list(GUIDANCE_TERMS)
    for name in GUIDANCE_TERMS:
        assert got[name].dtype == torch.float32
        torch.testing.assert_close(got[name].detach(), expected[name], rtol=1e-5, atol=1e-7)
        assert float(got[name]) > 0


def test_identical_images_have_zero_gram_and_content_distance(models):
    style, content = _smooth(1, 56, 56), _smooth(3)
    obj = _objective(models, style_images=[style], style_weights=None, content_image=content)
    assert float(obj.terms(style, ["gram"])["gram"]) == 0.0
    assert float(obj.terms(content, ["content"])["content"]) == 0.0
    assert float(obj.terms(content, ["gram"])["gram"]) > 0.0


@pytest.mark.parametrize("term", GUIDANCE_TERMS)
def test_image_gradient_descends_each_term(models, term):
    obj = _objective(models, _config(**{**OFF, term: 1.0}))
    x = _image(5)
    before = obj.final_losses(x)[term]
    for step in range(8):
        grad, values, notes = obj.image_gradient(x, step=step, num_steps=8)
        assert list(values) == [term] and notes == []
        x = (x - 0.03 * grad).clamp(0, 1)
    after = obj.final_losses(x)[term]
    assert after < 0.97 * before, (term, before, after)


def test_normalised_gradient_has_the_weight_as_rms(models):
    obj = _objective(models, _config(**{**OFF, "gram": 0.7}))
    x = torch.cat([_image(6), _image(7)])
    grad, _, _ = obj.image_gradient(x, step=0, num_steps=1)
    assert grad.shape == x.shape and grad.dtype == torch.float32
    torch.testing.assert_close(grad.pow(2).mean(dim=(1, 2, 3)).sqrt(), torch.tensor([0.7, 0.7]))
    both = _objective(models, _config(**{**OFF, "gram": 0.7, "tv": 0.2}))
    rms = float(both.image_gradient(_image(6), step=0, num_steps=1)[0].pow(2).mean().sqrt())
    assert 0.5 - 1e-4 <= rms <= 0.9 + 1e-4


def test_unnormalised_gradient_is_the_weighted_sum(models):
    cfg = _config(**{**OFF, "gram": 2.0, "tv": 0.5}, normalize_gradients=False)
    obj = _objective(models, cfg)
    x = _image(8).requires_grad_(True)
    values = obj.terms(x, ["gram", "tv"])
    (expected,) = torch.autograd.grad(2.0 * values["gram"] + 0.5 * values["tv"], x)
    grad, got_values, notes = obj.image_gradient(x.detach(), step=0, num_steps=1)
    torch.testing.assert_close(grad, expected)
    assert set(got_values) == {"gram", "tv"} and notes == []
    pair, _, _ = obj.image_gradient(torch.cat([x.detach(), _image(9)]), step=0, num_steps=1)
    torch.testing.assert_close(pair[:1], expected)  # an image's gradient does not depend on the batch


@pytest.mark.parametrize("normalize", [True, False])
def test_non_finite_gradient_is_skipped_and_noted(models, normalize):
    obj = _objective(models, _config(**{**OFF, "gram": 1.0, "tv": 0.5}, normalize_gradients=normalize))
    for target in obj.gram_targets.values():
        target.fill_(float("nan"))
    grad, values, notes = obj.image_gradient(_image(9), step=0, num_steps=1)
    assert "gram: non-finite gradient, skipped" in notes
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0  # tv still steers
    alone = _objective(models, _config(**{**OFF, "gram": 1.0}, normalize_gradients=normalize))
    for target in alone.gram_targets.values():
        target.fill_(float("inf"))
    grad, _, notes = alone.image_gradient(_image(9), step=0, num_steps=1)
    assert torch.equal(grad, torch.zeros_like(grad)) and any(n.startswith("gram: non-finite") for n in notes)


def test_no_active_term_gives_zeros(models):
    obj = _objective(models, _config(windows={t: TermWindow(start=0.5) for t in GUIDANCE_TERMS}))
    grad, values, notes = obj.image_gradient(_image(10), step=0, num_steps=4)
    assert torch.equal(grad, torch.zeros(1, 3, 48, 64)) and values == {} and notes == []
    assert set(obj.image_gradient(_image(10), step=2, num_steps=4)[1]) == set(GUIDANCE_TERMS)


def test_terms_without_targets_are_dropped_with_a_note(models):
    obj = _objective(models, prompt=None, style_images=[], style_weights=None, content_image=None)
    assert obj.available_terms == ("tv",)
    assert any("clip_text" in n and "no prompt" in n for n in obj.notes)
    assert any("gram" in n and "no style image" in n for n in obj.notes)
    assert any("content" in n and "no content image" in n for n in obj.notes)
    assert _objective(models, prompt="   ").available_terms == ("clip_style", "gram", "content", "tv")
    with pytest.raises(GuidedError, match="'clip_text' is not available"):
        obj.terms(_image(0), ["clip_text"])


def test_weighted_term_without_its_model_is_an_error(models):
    no_vgg = GuidanceModels(clip=models.clip)
    with pytest.raises(GuidedError, match="`gram` has weight 1 but no VGG model"):
        _objective(no_vgg)
    obj = _objective(no_vgg, _config(gram=0.0, content=0.0))
    assert obj.available_terms == ("clip_text", "clip_style", "tv")
    assert any("gram: no VGG model" in n for n in obj.notes)
    with pytest.raises(GuidedError, match="`clip_text` has weight 1 but no CLIP model"):
        _objective(GuidanceModels(vgg=models.vgg))


@pytest.mark.parametrize("kw, keys", [
    ({"style_images": [], "content_image": None}, ["clip_text", "tv"]),
    ({"prompt": None, "content_image": None}, ["clip_style", "gram", "tv"]),
    ({"prompt": None, "style_images": []}, ["content", "tv"]),
    ({}, list(GUIDANCE_TERMS)),
])
def test_final_losses_cover_every_term_with_a_target_whatever_the_weights(models, kw, keys):
    if "style_images" in kw and not kw["style_images"]:
        kw["style_weights"] = None
    obj = _objective(models, _config(**OFF, cutouts=3, cutout_augment=True), **kw)
    x = _image(11)
    first = obj.final_losses(x)
    assert list(first) == keys and all(isinstance(v, float) for v in first.values())
    assert obj.final_losses(x) == first  # same CLIP views on every call


def test_losses_run_in_float32_under_bf16_autocast(models):
    obj = _objective(models)
    x = _image(12)
    plain = obj.terms(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = obj.terms(x)
    for name in GUIDANCE_TERMS:
        assert mixed[name].dtype == torch.float32
        torch.testing.assert_close(mixed[name], plain[name])


def test_content_target_follows_the_image_aspect(models):
    obj = _objective(models, content_image=_smooth(3, 64, 64))
    wide = obj.terms(_image(13, 32, 64), ["content"])["content"]  # 64x32 loss view: target resized to match
    assert torch.isfinite(wide) and float(wide) > 0


def test_bad_inputs_name_the_argument(models):
    with pytest.raises(GuidedError, match=r"`style_weights` has 1 values for 2 style image\(s\)"):
        _objective(models, style_weights=[1.0])
    with pytest.raises(GuidedError, match="`style_weights` must be >= 0"):
        _objective(models, style_weights=[1.0, -1.0])
    with pytest.raises(GuidedError, match=r"`style_images\[1\]` must have shape"):
        _objective(models, style_images=[_image(0), torch.rand(1, 4, 32, 32)])
    with pytest.raises(GuidedError, match="`content_image` must hold values in"):
        _objective(models, content_image=_image(0) * 255)
    with pytest.raises(GuidedError, match="`content_image` holds NaN"):
        _objective(models, content_image=torch.full((1, 3, 16, 16), float("nan")))


def test_truncated_prompt_is_noted(models):
    with pytest.warns(UserWarning, match="tokens"):
        obj = _objective(models, prompt=" ".join(["oak"] * 90))
    assert obj.truncation and obj.truncation[0]["tokens"] == 92
    assert any("clip_text: prompt truncated to 77 tokens" in n for n in obj.notes)


# -- real VGG-16 on real images ----------------------------------------------------------------

def _load(path, long_side: int) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((long_side, long_side))
        data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
        return data.view(im.height, im.width, 3).permute(2, 0, 1).unsqueeze(0).float() / 255


@pytest.mark.parametrize("term", ["gram", "content"])
def test_real_vgg16_gram_and_content_guidance_on_real_images(shared_images, vgg16_weights, term):
    from guided.models.vgg import VGGFeatures, resolve_backbone

    net, info = resolve_backbone(str(vgg16_weights))
    models = GuidanceModels(vgg=VGGFeatures(net, info.arch))
    photo, painting = _load(shared_images / "rainier.jpg", 128), _load(shared_images / "autumn-oak.jpg", 128)
    cfg = GuidanceConfig(**{**OFF, term: 1.0}, loss_size=128, gram_layers=("relu1_1", "relu2_1", "relu3_1", "relu4_1"))
    obj = GuidedObjective(cfg, models, prompt=None, style_images=[painting], content_image=photo)
    x = photo.clone() if term == "gram" else painting[..., : photo.shape[-2], : photo.shape[-1]].clone()
    x = torch.nn.functional.interpolate(x, size=photo.shape[-2:], mode="bilinear", align_corners=False)
    before = obj.final_losses(x)[term]
    for step in range(10):
        grad, _, notes = obj.image_gradient(x, step=step, num_steps=10)
        assert notes == []
        x = (x - 0.02 * grad).clamp(0, 1)
    after = obj.final_losses(x)[term]
    assert after < 0.8 * before, (term, before, after)


def test_cached_term_scales_give_the_measured_step_exactly_and_one_backward_between(models, monkeypatch):
    """norm_every=3: steps 1 and 4 measure every term's RMS; steps 2 and 3 reuse it with one backward.
    On the same image the reused scales give the measured step's gradient (same terms, same scales)."""
    terms = {**OFF, "gram": 1.0, "content": 0.5, "tv": 0.5}
    cached = _objective(models, _config(**terms, norm_every=3), content_image=_smooth(3))
    exact = _objective(models, _config(**terms), content_image=_smooth(3))
    x = _smooth(4)
    calls = []
    real_grad = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: calls.append(1) or real_grad(*a, **k))
    g_measured, _, _ = cached.image_gradient(x, step=0, num_steps=4)
    measured_calls, calls[:] = len(calls), []
    g_cached, values, notes = cached.image_gradient(x, step=1, num_steps=4)
    assert measured_calls == 3 and len(calls) == 1 and notes == []  # one backward instead of three
    torch.testing.assert_close(g_cached, g_measured, rtol=1e-4, atol=1e-6)
    g_exact, _, _ = exact.image_gradient(x, step=0, num_steps=4)
    torch.testing.assert_close(g_measured, g_exact)
    cached.image_gradient(x, step=2, num_steps=4)
    calls[:] = []
    cached.image_gradient(x, step=3, num_steps=4)  # the 4th guided step measures again
    assert len(calls) == 3


def test_norm_every_must_be_a_positive_integer():
    with pytest.raises(GuidedError, match="`norm_every` must be in \\[1, inf\\], got 0"):
        GuidanceConfig(norm_every=0)


# ------------------------------------------------------------------ guided-step precision
def test_auto_precision_is_bf16_only_where_the_device_computes_it(monkeypatch):
    import guided.accel as accel

    monkeypatch.setattr(accel, "native_bf16", lambda device: True)
    assert accel.resolve_mixed_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(accel, "native_bf16", lambda device: False)
    assert accel.resolve_mixed_precision("auto", "cpu") == "no"
    assert accel.resolve_mixed_precision("bf16", "cpu") == "bf16"
    with pytest.raises(GuidedError, match="'fp16' needs a GPU"):
        accel.resolve_mixed_precision("fp16", "cpu")


def test_bf16_guided_step_runs_vgg_in_bf16_and_keeps_the_direction(models, monkeypatch):
    """mixed_precision='bf16' autocasts the VGG pass of a guided step (not the targets, not the
    reported losses); the gradient it gives points where the float32 one does."""
    terms = {**OFF, "gram": 1.0, "content": 0.5, "clip_text": 1.0}
    seen = []
    vgg_forward = type(models.vgg).forward
    monkeypatch.setattr(type(models.vgg), "forward",
                        lambda self, x, layers: seen.append(x.dtype) or vgg_forward(self, x, layers))
    fp32 = _objective(models, _config(**terms, mixed_precision="no"))
    bf16 = _objective(models, _config(**terms, mixed_precision="bf16"))
    seen.clear()
    x = _smooth(4)
    g32, v32, _ = fp32.image_gradient(x, step=0, num_steps=4)
    assert seen and torch.bfloat16 not in seen
    seen.clear()
    g16, v16, _ = bf16.image_gradient(x, step=0, num_steps=4)
    assert seen  # autocast runs the convolutions in bf16; the module sees what it is given
    assert g16.dtype == torch.float32 and torch.isfinite(g16).all()
    cos = torch.nn.functional.cosine_similarity(g16.flatten(), g32.flatten(), dim=0)
    assert cos > 0.99, float(cos)
    assert v16["gram"] == pytest.approx(v32["gram"], rel=0.05)
    assert bf16.final_losses(x) == fp32.final_losses(x)  # scores stay float32 whatever the setting


def test_bf16_autocast_reaches_the_convolutions(models):
    from guided.accel import autocast_for

    conv = torch.nn.Conv2d(3, 4, 3)
    with autocast_for(conv, "bf16", "cpu"):
        assert conv(torch.rand(1, 3, 8, 8)).dtype == torch.bfloat16
    with autocast_for(conv, "no", "cpu"):
        assert conv(torch.rand(1, 3, 8, 8)).dtype == torch.float32
    half = torch.nn.Conv2d(3, 4, 3).to(torch.bfloat16)  # a module already held in bf16 runs as it is
    with autocast_for(half, "bf16", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
