"""The guided img2img pipeline on tiny random models: equivalence, guidance, schedulers, errors."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from pipeline_inputs import DEFAULT, ZERO, _painting, _photo, assert_clip_text_guidance_lowers_it, run

from guided import GuidanceConfig
from guided.constants import GUIDANCE_TERMS
from guided.errors import ImageLoadError, NonFiniteError
from guided.testing import tiny_guidance_models, tiny_sd_components
from pipelines import SCHEDULERS, GuidedStableDiffusionImg2ImgPipeline


@pytest.fixture(scope="module")
def components():
    return tiny_sd_components(0)


@pytest.fixture(scope="module")
def models():
    # No tiny decoder: a random AutoencoderTiny does not approximate the random VAE, so fast
    # guidance in these tests decodes with the VAE at reduced resolution (mode "fast" still).
    return tiny_guidance_models(0, decoder=False)


@pytest.fixture(scope="module")
def pipe(components):
    p = GuidedStableDiffusionImg2ImgPipeline(**components)
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def unguided(pipe, models):
    return run(pipe, models).final_losses


def test_zero_weights_equal_diffusers_img2img(components, pipe, models):
    from diffusers import StableDiffusionImg2ImgPipeline

    ref = StableDiffusionImg2ImgPipeline(**components, safety_checker=None, feature_extractor=None,
                                         requires_safety_checker=False)
    ref.set_progress_bar_config(disable=True)
    kwargs = dict(prompt="a watercolor of a harbour", image=_photo(), strength=0.7, num_inference_steps=6,
                  negative_prompt="blurry", guidance_scale=6.0, num_images_per_prompt=2, output_type="np")
    expected = ref(**kwargs, generator=torch.Generator().manual_seed(3)).images
    got = pipe(**kwargs, generator=torch.Generator().manual_seed(3), style_image=_painting(),
               guidance=GuidanceConfig(**ZERO), guidance_models=models)
    assert got.images.shape == expected.shape == (2, 64, 96, 3)
    assert np.abs(got.images - expected).max() <= 1e-5
    assert not any(h["guided"] for h in got.loss_history)


@pytest.mark.parametrize("term", GUIDANCE_TERMS)
def test_each_term_alone_lowers_it(pipe, models, unguided, term):
    out = run(pipe, models, **{term: getattr(DEFAULT, term)})
    assert out.final_losses[term] < unguided[term]
    assert all(h["guided"] for h in out.loss_history)


def test_all_terms_together_lower_each(pipe, models, unguided):
    out = run(pipe, models, **{t: getattr(DEFAULT, t) for t in GUIDANCE_TERMS})
    for term in GUIDANCE_TERMS:
        assert out.final_losses[term] < unguided[term], term


def test_full_mode_lowers_clip_text(pipe, models, unguided):
    out = run(pipe, models, clip_text=1.0, mode="full")
    assert out.final_losses["clip_text"] < unguided["clip_text"]


@pytest.mark.parametrize("mode", ["fast", "full"])
def test_guidance_decode_comes_out_at_loss_size(pipe, models, mode):
    """Without a tiny decoder, both modes decode the x0 estimate with the VAE at `loss_size` (the
    decoder's forward and backward cost grow with its pixels), differentiably."""
    side = 96  # _photo()'s long side; the latents are 1/vae_scale_factor of it
    latents = torch.randn(1, 4, 64 // pipe.vae_scale_factor, side // pipe.vae_scale_factor, requires_grad=True)
    small = pipe._decode_for_loss(latents, GuidanceConfig(mode=mode, loss_size=48), models)
    assert max(small.shape[-2:]) == 48 and small.shape[-2] == 32
    (grad,) = torch.autograd.grad(small.mean(), latents)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    full = pipe._decode_for_loss(latents, GuidanceConfig(mode=mode, loss_size=224), models)
    assert full.shape[-2:] == (64, 96)  # never upsampled above the image's own size


def test_full_mode_gradient_goes_through_the_text_branch_only(pipe):
    """Full mode's UNet output has the classifier-free value diffusers computes, and its gradient is
    the text-conditioned branch's alone, with the unconditional half run without a graph."""
    pipe._guidance_scale = 7.5  # the per-call state `__call__` sets, which the private steps read
    pipe._cross_attention_kwargs = None
    embeds = torch.randn(2, 77, pipe.unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(0))
    latents = torch.randn(1, 4, 8, 12, generator=torch.Generator().manual_seed(1))
    pipe.scheduler.set_timesteps(4)
    t = pipe.scheduler.timesteps[1]
    with torch.no_grad():
        expected = pipe._model_output(latents, t, embeds, None, None)
    batches = []
    hook = pipe.unet.register_forward_pre_hook(
        lambda module, args: batches.append((args[0].shape[0], torch.is_grad_enabled())))
    try:
        x = latents.clone().requires_grad_(True)
        out = pipe._model_output_for_gradient(x, t, embeds, None, None)
    finally:
        hook.remove()
    assert batches == [(1, False), (1, True)]
    # Batch 1 and batch 2 UNet passes round differently (CPU kernels pick per batch size), and the CFG
    # formula multiplies that by 7.5: 1.1e-5 here. A wrong combination would be off by O(0.1).
    torch.testing.assert_close(out.detach(), expected, rtol=1e-4, atol=1e-4)
    direction = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
    (grad,) = torch.autograd.grad((out * direction).sum(), x)
    y = latents.clone().requires_grad_(True)
    text = pipe._unet(pipe.scheduler.scale_model_input(y, t), t, embeds[1:], None, None)
    (text_grad,) = torch.autograd.grad((text * direction).sum(), y)
    assert torch.allclose(grad, text_grad, atol=1e-6) and grad.abs().sum() > 0


def test_full_mode_lowers_clip_text_at_reduced_decode(pipe, models):
    unguided = run(pipe, models, loss_size=48).final_losses  # final losses measured at the same size
    out = run(pipe, models, clip_text=1.0, mode="full", loss_size=48)
    assert out.final_losses["clip_text"] < unguided["clip_text"]


@pytest.mark.parametrize("name", ["ddim", "pndm", "lms", "euler", "euler-ancestral", "dpm++", "unipc"])
def test_scheduler_matrix(components, models, name):
    pipe = GuidedStableDiffusionImg2ImgPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    pipe.set_scheduler(name)
    assert isinstance(pipe.scheduler, SCHEDULERS[name])
    assert_clip_text_guidance_lowers_it(pipe, models)


@pytest.mark.parametrize("name", ["ddim", "euler", "dpm++"])
def test_v_prediction(models, name):
    pipe = GuidedStableDiffusionImg2ImgPipeline(**tiny_sd_components(0, prediction_type="v_prediction"))
    pipe.set_progress_bar_config(disable=True)
    pipe.set_scheduler(name)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert_clip_text_guidance_lowers_it(pipe, models)


def test_tiny_decoder_fast_path_runs(pipe):
    out = run(pipe, tiny_guidance_models(0, decoder=True), steps=4, gram=1.0, fast_decoder="tiny")
    assert np.isfinite(out.images).all() and all(h["guided"] for h in out.loss_history)


def test_bf16_guided_steps_decode_in_bf16_and_agree_with_fp32(pipe, monkeypatch):
    """mixed_precision='bf16': the guidance decoder runs under bf16 autocast (its convolutions give
    bf16), the rest of the step in float32; the image agrees with float32 guided steps."""
    models = tiny_guidance_models(0, decoder=True)
    dtypes = []
    conv = next(m for m in models.tiny_decoder.decoder.modules() if isinstance(m, torch.nn.Conv2d))
    handle = conv.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    try:
        fp32 = run(pipe, models, steps=4, gram=1.0, tv=0.5, fast_decoder="tiny", mixed_precision="no")
        assert dtypes and set(dtypes) == {torch.float32}
        dtypes.clear()
        bf16 = run(pipe, models, steps=4, gram=1.0, tv=0.5, fast_decoder="tiny", mixed_precision="bf16")
        assert dtypes and set(dtypes) == {torch.bfloat16}
    finally:
        handle.remove()
    assert np.isfinite(bf16.images).all() and all(h["guided"] for h in bf16.loss_history)
    assert np.abs(bf16.images - fp32.images).mean() < 0.02  # the stated tolerance of the bf16 test above
    assert bf16.final_losses["gram"] == pytest.approx(fp32.final_losses["gram"], rel=0.05)


def test_final_losses_follow_targets_not_weights(pipe, models):
    text_only = run(pipe, models, style=False, steps=3)
    assert set(text_only.final_losses) == {"clip_text", "content", "tv"}
    style_only = run(pipe, models, prompt="", steps=3)
    assert set(style_only.final_losses) == {"clip_style", "gram", "content", "tv"}
    assert len(style_only.loss_history) == len(text_only.loss_history) == 2  # 3 steps x strength 0.8


def test_aspect_ratio_kept_and_callback_gets_losses(pipe, models):
    seen = []

    def callback(p, step, timestep, kwargs):
        assert set(kwargs) == {"latents"}  # only the requested tensors, as diffusers' contract says
        seen.append((step, p.step_losses, kwargs["latents"].shape))
        return {}

    out = pipe(prompt="a painting", image=_photo(48, 80), strength=0.8, num_inference_steps=5,
               generator=torch.Generator().manual_seed(0), output_type="pil", guidance={"gram": 1.0},
               style_image=_painting(), guidance_models=models, callback_on_step_end=callback)
    assert out.images[0].size == (80, 48)
    assert [s for s, _, _ in seen] == list(range(4))
    assert all(set(losses) >= {"gram", "clip_text"} for _, losses, _ in seen)


def test_preserve_color_keeps_content_chroma(pipe, models):
    from guided.color import rgb_to_ycbcr

    out = pipe(prompt="a painting", image=_photo(), strength=0.8, num_inference_steps=4, output_type="pt",
               generator=torch.Generator().manual_seed(0), guidance={"gram": 1.0}, style_image=_painting(),
               guidance_models=models, preserve_color=True)
    photo = torch.from_numpy(np.asarray(_photo(), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    error = (rgb_to_ycbcr(out.images.float())[:, 1:] - rgb_to_ycbcr(photo)[:, 1:]).abs()
    # Exact but for pixels whose new luminance puts the photo's chroma outside the RGB cube (clamped).
    assert error.mean() < 0.01 and (error < 0.02).float().mean() > 0.95
    plain = run(pipe, models, steps=4, gram=1.0).images
    plain_error = (rgb_to_ycbcr(torch.from_numpy(plain).permute(0, 3, 1, 2))[:, 1:] - rgb_to_ycbcr(photo)[:, 1:]).abs()
    assert plain_error.mean() > 2 * error.mean()  # without the pass, the colours do move


# ------------------------------------------------------------------------------ bad input
@pytest.fixture
def no_model_loading(monkeypatch):
    import guided.models.loaders as gm

    def fail(*a, **k):
        raise AssertionError("models were loaded before the input was checked")

    monkeypatch.setattr(gm, "load_guidance_models", fail)


@pytest.mark.parametrize("kwargs, message", [
    ({"prompt": "", "style_image": None}, "`prompt` is empty"),
    ({"prompt": None, "style_image": None}, "`prompt` is empty"),
    ({"strength": 0.0}, "`strength`"),
    ({"strength": 1.5}, "`strength`"),
    ({"num_inference_steps": 0}, "`num_inference_steps`"),
    ({"guidance": {"gram": -1.0}}, "`gram`"),
    ({"guidance": {"mode": "turbo"}}, "`mode`"),
    ({"guidance": {"mixed_precision": "fp16"}}, "'fp16' needs a GPU"),  # the pipeline runs on the CPU here
])
def test_bad_input_fails_before_models_load(components, no_model_loading, kwargs, message):
    pipe = GuidedStableDiffusionImg2ImgPipeline(**components)
    args = dict(prompt="a painting", image=_photo(), strength=0.8, num_inference_steps=4)
    with pytest.raises(ValueError, match=message):
        pipe(**{**args, **kwargs})


def test_scheduler_names_listed_without_diffusers_match_the_pipeline():
    from guided.stylize import SCHEDULER_NAMES

    assert tuple(SCHEDULERS) == SCHEDULER_NAMES


def test_unknown_scheduler(pipe):
    with pytest.raises(ValueError, match="`scheduler`.*'bogus'"):
        pipe.set_scheduler("bogus")


def test_corrupt_style_image_names_the_file(tmp_path, pipe, no_model_loading):
    bad = tmp_path / "painting.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageLoadError, match="painting.jpg"):
        pipe(prompt="a painting", image=_photo(), style_image=str(bad))


def test_long_prompt_warned_and_recorded(pipe, models):
    prompt = "a very detailed oil painting of " + " and ".join(f"tree number {i}" for i in range(40))
    with pytest.warns(UserWarning, match="tokens"):
        out = run(pipe, models, prompt=prompt, style=False, steps=2, clip_text=1.0)
    assert any("truncated" in n for n in out.notes)


# ------------------------------------------------------------------------------ precision
def test_bf16_autocast_agrees_with_fp32(pipe, models):
    fp32 = run(pipe, models, steps=5, gram=1.0, clip_text=1.0).images
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = run(pipe, models, steps=5, gram=1.0, clip_text=1.0).images
    assert np.isfinite(bf16).all()
    # Stated tolerance: bf16 keeps 8 bits of mantissa; on 8-bit images the mean error stays < 2%.
    assert np.abs(bf16 - fp32).mean() < 0.02


def test_nan_latents_retried_in_float32_then_error(pipe, models):
    def poison(p, step, timestep, kwargs):
        return {"latents": torch.full_like(kwargs["latents"], float("nan"))}

    with warnings.catch_warnings(record=True) as caught, pytest.raises(NonFiniteError, match="not finite"):
        warnings.simplefilter("always")
        pipe(prompt="a painting", image=_photo(), strength=0.8, num_inference_steps=3, output_type="np",
             guidance={"clip_text": 1.0}, guidance_models=models, callback_on_step_end=poison)
    assert any("retried in float32" in str(w.message) for w in caught)


def test_non_finite_guidance_gradient_is_skipped_and_recorded(pipe, models, monkeypatch):
    from guided.guidance.objective import GuidedObjective

    real = GuidedObjective.image_gradient

    def nan_grad(self, image01, *, step, num_steps):
        grad, values, notes = real(self, image01, step=step, num_steps=num_steps)
        return torch.full_like(grad, float("nan")), values, notes

    monkeypatch.setattr(GuidedObjective, "image_gradient", nan_grad)
    out = run(pipe, models, steps=3, clip_text=1.0)
    assert np.isfinite(out.images).all()
    assert not any(h["guided"] for h in out.loss_history)
    assert any("non-finite" in n for n in out.notes)


# ------------------------------------------------------------------------------ real VGG-16
def test_gram_and_content_guidance_with_real_vgg16(shared_images, vgg16_weights, pipe):
    from guided.io.images import load_image
    from guided.models.bundle import GuidanceModels
    from guided.models.vgg import VGGFeatures, resolve_backbone

    net, info = resolve_backbone(str(vgg16_weights))
    assert not info.random
    tiny = tiny_guidance_models(0, decoder=False)
    real = GuidanceModels(clip=tiny.clip, vgg=VGGFeatures(net, info.arch), info={"vgg": info.describe()})
    photo = load_image(shared_images / "rainier.jpg").resize((96, 64))
    painting = load_image(shared_images / "autumn-oak.jpg").resize((96, 64))

    def go(**weights):
        return pipe(prompt="", image=photo, strength=0.8, num_inference_steps=10, output_type="np",
                    generator=torch.Generator().manual_seed(0), style_image=painting,
                    guidance=GuidanceConfig(**{**ZERO, **weights}, gram_layers=("relu1_1", "relu2_1", "relu3_1"),
                                            content_layers=("relu2_2",), loss_size=96),
                    guidance_models=real).final_losses

    base = go()
    assert go(gram=1.0)["gram"] < 0.97 * base["gram"]
    assert go(content=1.0)["content"] < 0.97 * base["content"]


def test_the_seed_decides_the_clip_cutouts_too(pipe, models, monkeypatch):
    """One seed governs a run: the noise and the random crops CLIP sees. Two seeds draw different
    crops; the same seed twice gives the same crops and the same pixels."""
    draws = []
    encode = type(models.clip).encode_image

    def spy(self, image01, *, cutouts=0, augment=False, generator=None, **kw):
        if cutouts and generator is not None:
            draws.append(generator.get_state().clone())  # the state the crops are drawn from
        return encode(self, image01, cutouts=cutouts, augment=augment, generator=generator, **kw)

    monkeypatch.setattr(type(models.clip), "encode_image", spy)

    def crops_and_pixels(seed):
        draws.clear()
        out = run(pipe, models, seed=seed, steps=4, clip_text=1.0)
        assert draws, "the guided steps drew no cutouts"
        return [d for d in draws], out.images

    crops_a, pixels_a = crops_and_pixels(0)
    crops_b, pixels_b = crops_and_pixels(0)
    crops_c, _ = crops_and_pixels(1)
    assert all(torch.equal(x, y) for x, y in zip(crops_a, crops_b)) and len(crops_a) == len(crops_b)
    np.testing.assert_array_equal(pixels_a, pixels_b)
    assert not torch.equal(crops_a[0], crops_c[0])
