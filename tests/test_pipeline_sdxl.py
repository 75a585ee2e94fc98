"""The guided SDXL img2img pipeline on tiny random models: equivalence with diffusers (in memory and
from a saved folder), each guidance term, schedulers and prediction types, the float32 decode
retry, and `guided stylize --model FOLDER` end to end."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from pipeline_inputs import DEFAULT, ZERO, _painting, _photo, assert_clip_text_guidance_lowers_it, run

from guided import GuidanceConfig
from guided.constants import GUIDANCE_TERMS
from guided.errors import NonFiniteError
from guided.testing import tiny_guidance_models, tiny_sdxl_components, tiny_taesd
from pipelines import SCHEDULERS, GuidedStableDiffusionXLImg2ImgPipeline


def _pipe(components) -> GuidedStableDiffusionXLImg2ImgPipeline:
    pipe = GuidedStableDiffusionXLImg2ImgPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _diffusers(components):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    ref = StableDiffusionXLImg2ImgPipeline(**components)
    ref.set_progress_bar_config(disable=True)
    return ref


@pytest.fixture(scope="module")
def components():
    return tiny_sdxl_components(0)


@pytest.fixture(scope="module")
def models():
    # No tiny decoder: a random AutoencoderTiny does not approximate the random VAE, so fast
    # guidance decodes with the VAE at reduced resolution (mode "fast" still).
    return tiny_guidance_models(0, decoder=False)


@pytest.fixture(scope="module")
def pipe(components):
    return _pipe(components)


@pytest.fixture(scope="module")
def unguided(pipe, models):
    return run(pipe, models).final_losses


# ------------------------------------------------------------------------------ components
def test_tiny_sdxl_components_are_what_diffusers_takes(components):
    import inspect

    from diffusers import StableDiffusionXLImg2ImgPipeline

    params = inspect.signature(StableDiffusionXLImg2ImgPipeline.__init__).parameters
    required = {n for n, p in params.items() if n != "self" and p.default is inspect.Parameter.empty}
    assert set(components) == required
    unet = components["unet"]
    assert unet.config.addition_embed_type == "text_time"
    # Cross-attention reads both encoders' hidden states side by side; the added embedding takes six
    # size/crop numbers and the second encoder's pooled projection.
    hidden = components["text_encoder"].config.hidden_size + components["text_encoder_2"].config.hidden_size
    assert unet.config.cross_attention_dim == hidden
    assert unet.add_embedding.linear_1.in_features == (
        6 * unet.config.addition_time_embed_dim + components["text_encoder_2"].config.projection_dim)
    assert sum(p.numel() for p in unet.parameters()) < 3_000_000
    for key in ("tokenizer", "tokenizer_2"):
        ids = components[key]("a watercolor of a harbour", padding="max_length", max_length=77).input_ids
        assert len(ids) == 77 and ids[0] == 49406
    assert components["tokenizer_2"].pad_token == "!"  # as SDXL's OpenCLIP tokenizer pads
    again = tiny_sdxl_components(0)
    for a, b in zip(unet.parameters(), again["unet"].parameters()):
        assert torch.equal(a, b)  # seeded


# ------------------------------------------------------------------------------ equivalence
def test_zero_weights_equal_diffusers_sdxl_img2img(components, pipe, models):
    kwargs = {"prompt": "a watercolor of a harbour", "prompt_2": "soft light", "image": _photo(), "strength": 0.7,
              "num_inference_steps": 6, "negative_prompt": "blurry", "guidance_scale": 6.0,
              "num_images_per_prompt": 2, "original_size": (128, 192), "target_size": (64, 96), "output_type": "np"}
    expected = _diffusers(components)(**kwargs, generator=torch.Generator().manual_seed(3)).images
    got = pipe(**kwargs, generator=torch.Generator().manual_seed(3), style_image=_painting(),
               guidance=GuidanceConfig(**ZERO), guidance_models=models)
    assert got.images.shape == expected.shape == (2, 64, 96, 3)
    assert np.abs(got.images - expected).max() <= 1e-5
    assert not any(h["guided"] for h in got.loss_history)
    assert set(got.final_losses) == set(GUIDANCE_TERMS)  # measured whatever the weights


@pytest.mark.parametrize("window", [{"denoising_end": 0.6}, {"denoising_start": 0.5}])
def test_zero_weights_equal_diffusers_with_denoising_start_or_end(components, pipe, models, window):
    kwargs = {"prompt": "a watercolor", "image": _photo(), "strength": 0.9, "num_inference_steps": 6,
              "output_type": "np", **window}
    expected = _diffusers(components)(**kwargs, generator=torch.Generator().manual_seed(1)).images
    got = pipe(**kwargs, generator=torch.Generator().manual_seed(1), guidance=GuidanceConfig(**ZERO),
               guidance_models=models)
    assert np.abs(got.images - expected).max() <= 1e-5
    assert 0 < len(got.loss_history) < 6


@pytest.fixture(scope="module")
def sdxl_folder(tmp_path_factory, components) -> Path:
    """A tiny SDXL checkpoint saved as diffusers saves one (model_index.json and a folder per component)."""
    folder = tmp_path_factory.mktemp("models") / "tiny-sdxl"
    _diffusers(components).save_pretrained(str(folder))
    return folder


def test_zero_weights_equal_diffusers_from_a_saved_folder(sdxl_folder, models):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    ours = GuidedStableDiffusionXLImg2ImgPipeline.from_pretrained(str(sdxl_folder))
    ref = StableDiffusionXLImg2ImgPipeline.from_pretrained(str(sdxl_folder))
    for p in (ours, ref):
        p.set_progress_bar_config(disable=True)
    kwargs = {"prompt": "an ink wash painting", "image": _photo(), "strength": 0.8, "num_inference_steps": 5,
              "output_type": "np"}
    expected = ref(**kwargs, generator=torch.Generator().manual_seed(0)).images
    got = ours(**kwargs, generator=torch.Generator().manual_seed(0), guidance=GuidanceConfig(**ZERO),
               guidance_models=models).images
    assert np.abs(got - expected).max() <= 1e-5
    assert ours.native_size == 64  # UNet sample size 8 x VAE factor 8


# ------------------------------------------------------------------------------ guidance
@pytest.mark.parametrize("term", GUIDANCE_TERMS)
def test_each_term_alone_lowers_it(pipe, models, unguided, term):
    out = run(pipe, models, **{term: getattr(DEFAULT, term)})
    assert out.final_losses[term] < unguided[term]
    assert all(h["guided"] for h in out.loss_history)


@pytest.mark.parametrize("seed", [1, 2])
def test_all_terms_together_lower_each(models, seed):
    """On tiny models seeded 1 and 2. On the seed-0 model the random CLIP puts the prompt and the
    painting on nearly opposite sides of this image: clip_text alone raises clip_style 1.5x, and
    with clip_style's weight raised from 0.5 to 1.0 / 1.5 / 2.0 one of the two CLIP terms still ends
    above the unguided run (measured). That is the random CLIP's geometry, not the pipeline's."""
    pipe = _pipe(tiny_sdxl_components(seed))
    unguided = run(pipe, models).final_losses
    out = run(pipe, models, **{t: getattr(DEFAULT, t) for t in GUIDANCE_TERMS})
    for term in GUIDANCE_TERMS:
        assert out.final_losses[term] < unguided[term], term


def test_full_mode_lowers_clip_text(pipe, models, unguided):
    # On SDXL's Euler: full mode asks for the step's sigma before the UNet call has set the step index.
    out = run(pipe, models, clip_text=1.0, mode="full")
    assert out.final_losses["clip_text"] < unguided["clip_text"]


@pytest.mark.parametrize("name", ["ddim", "pndm", "lms", "euler", "euler-ancestral", "dpm++", "unipc"])
def test_scheduler_matrix(components, models, name):
    pipe = _pipe(components)
    pipe.set_scheduler(name)
    assert isinstance(pipe.scheduler, SCHEDULERS[name])
    assert_clip_text_guidance_lowers_it(pipe, models)


@pytest.mark.parametrize("name", ["ddim", "euler", "dpm++"])
def test_v_prediction(models, name):
    pipe = _pipe(tiny_sdxl_components(0, prediction_type="v_prediction"))
    pipe.set_scheduler(name)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert_clip_text_guidance_lowers_it(pipe, models)


def test_fast_mode_decodes_with_the_tiny_decoder_when_given(pipe, models, monkeypatch):
    """With a tiny decoder (TAESDXL's stand-in) fast mode never runs the VAE for the loss; without
    one it runs the VAE at `loss_size`."""
    decoder = tiny_taesd(0, upscale=8)
    with_decoder = tiny_guidance_models(0, decoder=False)
    with_decoder.tiny_decoder = decoder
    calls = []
    real = type(pipe.vae).decode

    def counting(self, z, *args, **kwargs):
        calls.append(tuple(z.shape[-2:]))
        return real(self, z, *args, **kwargs)

    monkeypatch.setattr(type(pipe.vae), "decode", counting)
    out = run(pipe, with_decoder, steps=4, gram=1.0)
    assert np.isfinite(out.images).all() and all(h["guided"] for h in out.loss_history)
    assert calls == [(8, 12)]  # the final decode only
    calls.clear()
    run(pipe, models, steps=4, gram=1.0, loss_size=48)
    assert calls[:-1] == [(4, 6)] * 3 and calls[-1] == (8, 12)  # 48 px guidance decodes, then the final one


def test_callback_gets_losses_and_sdxl_tensors(pipe, models):
    seen = []

    def callback(p, step, timestep, kwargs):
        seen.append((step, set(kwargs), p.step_losses))
        return {}

    out = pipe(prompt="a painting", image=_photo(48, 80), strength=0.8, num_inference_steps=5,
               generator=torch.Generator().manual_seed(0), guidance={"gram": 1.0}, style_image=_painting(),
               guidance_models=models, callback_on_step_end=callback,
               callback_on_step_end_tensor_inputs=["latents", "add_time_ids", "noise_pred"])
    assert out.images[0].size == (80, 48)
    assert [s for s, _, _ in seen] == list(range(4))
    assert all(keys == {"latents", "add_time_ids", "noise_pred"} for _, keys, _ in seen)  # only those asked for
    assert all("gram" in losses for _, _, losses in seen)


def test_bad_input_names_the_argument(pipe):
    with pytest.raises(ValueError, match="`prompt` is empty"):
        pipe(prompt="", image=_photo())
    with pytest.raises(ValueError, match="`strength`.*1.5"):
        pipe(prompt="a painting", image=_photo(), strength=1.5)
    with pytest.raises(ValueError, match="`mode`"):
        pipe(prompt="a painting", image=_photo(), guidance={"mode": "turbo"})


# ------------------------------------------------------------------------------ precision
@pytest.fixture
def overflowing_vae(components):
    """The tiny VAE with a latent scaling factor so small that the latents it decodes exceed
    float16's range (65504), as SDXL's VAE activations do at 1024 px: float32 decodes them (the
    decoder's first group norm rescales), float16 gives inf and then NaN."""
    vae = copy.deepcopy(components["vae"])
    vae.register_to_config(scaling_factor=1e-6)
    return vae


def test_fp16_autocast_overflow_in_the_final_decode_is_retried_in_float32(components, overflowing_vae):
    pipe = _pipe({**components, "vae": overflowing_vae})
    guided = tiny_guidance_models(0, decoder=False)
    guided.tiny_decoder = tiny_taesd(0, upscale=8)  # fast guidance through TAESDXL's stand-in

    def go():
        return pipe(prompt="a painting", image=_photo(), strength=0.8, num_inference_steps=4, output_type="np",
                    generator=torch.Generator().manual_seed(0), guidance={**ZERO, "clip_text": 1.0},
                    guidance_models=guided)

    reference = go()
    assert not any("retried" in n for n in reference.notes)
    with warnings.catch_warnings(record=True) as caught, torch.autocast("cpu", dtype=torch.float16):
        warnings.simplefilter("always")
        half = go()
    assert any("retried in float32" in str(w.message) for w in caught)
    assert any("retried in float32" in n for n in half.notes)
    assert np.isfinite(half.images).all()
    # The UNet ran in float16 as well, so the image moves a little: stated tolerance on [0, 1] pixels.
    assert np.abs(half.images - reference.images).mean() < 0.02
    assert all(h["guided"] for h in half.loss_history)


@pytest.mark.parametrize("force_upcast", [True, False])
def test_half_precision_vae_decodes_finite(components, overflowing_vae, force_upcast):
    """A float16 VAE with `force_upcast` (SDXL's own) decodes in float32 from the start, as
    diffusers does; without it (an "fp16-fix" VAE that still overflows) the retry catches it.
    Either way the VAE is float16 again afterwards."""
    pipe = _pipe(components)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    expected = pipe._decode_checked(latents, [])  # float32 VAE, not overflowing
    pipe.vae = overflowing_vae.half()
    latents = latents.half()  # a float16 pipeline's latents
    pipe.vae.register_to_config(force_upcast=force_upcast)
    upcast = pipe.vae.dtype == torch.float16 and pipe.vae.config.force_upcast
    notes: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = pipe._decode_checked(latents, notes, upcast=upcast)
    assert image.dtype == torch.float32 and torch.isfinite(image).all()
    assert bool(notes) is (not force_upcast)
    assert pipe.vae.dtype == torch.float16
    assert image.shape == expected.shape


def test_nan_latents_retried_in_float32_then_error(pipe, models):
    def poison(p, step, timestep, kwargs):
        return {"latents": torch.full_like(kwargs["latents"], float("nan"))}

    with warnings.catch_warnings(record=True) as caught, pytest.raises(NonFiniteError, match="not finite"):
        warnings.simplefilter("always")
        pipe(prompt="a painting", image=_photo(), strength=0.8, num_inference_steps=3, output_type="np",
             guidance={"clip_text": 1.0}, guidance_models=models, callback_on_step_end=poison)
    assert any("retried in float32" in str(w.message) for w in caught)


# ------------------------------------------------------------------------------ the app
def test_stylizer_picks_the_pipeline_from_model_index(sdxl_folder, tmp_path):
    from guided.errors import GuidedError
    from guided.models.hub import model_family

    assert model_family(sdxl_folder) == "sdxl"
    index = json.loads((sdxl_folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLImg2ImgPipeline"
    sd3 = tmp_path / "sd3"
    sd3.mkdir()
    (sd3 / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusion3Pipeline",
                                                      "transformer": ["diffusers", "SD3Transformer2DModel"]}))
    with pytest.raises(GuidedError, match="StableDiffusion3Pipeline"):
        model_family(sd3)


def test_cli_stylize_with_a_saved_sdxl_folder(sdxl_folder, tmp_path):
    """`guided stylize --model FOLDER` end to end in a fresh process: SDXL found from its
    model_index.json, the size defaults to its native resolution, the manifest names the pipeline.
    Guidance models: a saved tiny CLIP folder and the seeded random VGG-19 (no weights here)."""
    from guided.io.images import read_metadata, save_image
    from guided.models.clip import save_clip_folder
    from guided.testing import TINY_CLIP_CONFIG, tiny_clip

    clip_folder = save_clip_folder(tiny_clip(0), tmp_path / "clip",
                                   {k: v for k, v in TINY_CLIP_CONFIG.items() if k != "name"})
    photo = save_image(_photo(96, 128), tmp_path / "photo.png")
    out = tmp_path / "out.png"
    args = [sys.executable, "-m", "guided", "stylize", str(photo), "--model", str(sdxl_folder), "--clip",
            str(clip_folder), "--backbone", "vgg19-random", "--prompt", "an ink wash painting", "--steps", "3",
            "--strength", "0.7", "--gram-weight", "0", "--content-weight", "0", "-o", str(out)]
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    meta = read_metadata(out)
    assert meta["models"]["pipeline"] == "GuidedStableDiffusionXLImg2ImgPipeline"
    assert meta["models"]["family"] == "sdxl"
    assert meta["parameters"]["size"] == 64 and meta["parameters"]["model"] == str(sdxl_folder)
    with PIL.Image.open(out) as im:
        assert im.size == (64, 48)  # native long side, aspect kept
    history = meta["losses"]["history"]
    assert len(history) == 2 and all(h["guided"] for h in history)
    assert "clip_text" in meta["losses"]["final"]


def test_guided_models_lists_sdxl_and_taesdxl(tmp_path, sdxl_folder):
    from guided.constants import DEFAULT_SDXL_MODEL, TINY_DECODERS
    from guided.models.hub import SDXL_REQUIRED_FILES, missing_files
    from guided.models.status import model_status

    rows = {r.source: r for r in model_status(cache_dir=tmp_path)}  # an empty cache
    sdxl, taesdxl = rows[DEFAULT_SDXL_MODEL], rows[TINY_DECODERS["sdxl"]]
    assert sdxl.feature == taesdxl.feature == "stylize"
    assert sdxl.component.startswith("SDXL model") and taesdxl.component.startswith("TAESDXL")
    assert not sdxl.present and not sdxl.required and "hf download" in sdxl.how
    assert not taesdxl.present and not taesdxl.required
    assert missing_files(sdxl_folder, SDXL_REQUIRED_FILES) == []  # a saved SDXL folder has every listed file
