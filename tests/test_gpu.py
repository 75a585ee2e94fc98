"""The GPU path (CUDA only; skipped elsewhere, with the reason): half precision with its NaN guard and
float32 VAE retry, Gram matrices in float32, channels_last, and a seeded run reproducible twice.

`bench/gpu_check.sh` runs these on a lent GPU machine together with the 512x512 benches.
"""
from __future__ import annotations

import pytest
import torch
from factories import painting, photo

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bench/gpu_check.sh)")


@pytest.fixture(scope="module")
def cuda_pipe():
    from guided.testing import tiny_guidance_models, tiny_sd_components
    from pipelines import GuidedStableDiffusionImg2ImgPipeline

    pipe = GuidedStableDiffusionImg2ImgPipeline(**tiny_sd_components(0)).to("cuda")
    pipe.set_guidance_models(tiny_guidance_models(0, decoder=False))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe, seed=0, **kwargs):
    from guided import GuidanceConfig

    return pipe(prompt="a painting", image=photo(), strength=0.8, num_inference_steps=4,
                generator=torch.Generator("cpu").manual_seed(seed), output_type="np", style_image=painting(),
                guidance=GuidanceConfig(**kwargs))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_runs_finite_on_cuda(cuda_pipe, dtype):
    with torch.autocast("cuda", dtype=dtype):
        out = _run(cuda_pipe)
    assert torch.isfinite(torch.as_tensor(out.images)).all()
    assert all(v == v for v in out.final_losses.values())


def test_an_overflowing_fp16_decode_is_retried_in_float32(monkeypatch):
    """SD's VAE overflows in fp16 on some images; the guard retries the final decode in float32."""
    from guided.testing import tiny_guidance_models, tiny_sd_components
    from pipelines import GuidedStableDiffusionImg2ImgPipeline

    pipe = GuidedStableDiffusionImg2ImgPipeline(**tiny_sd_components(0)).to("cuda", torch.float16)
    pipe.set_guidance_models(tiny_guidance_models(0, decoder=False))
    pipe.set_progress_bar_config(disable=True)
    vae, real_decode, dtypes = pipe.vae, pipe.vae.decode, []

    def decode(latents, *args, **kwargs):
        dtypes.append(vae.dtype)
        out = real_decode(latents, *args, **kwargs)
        if vae.dtype == torch.float16:  # what an overflowing fp16 VAE gives
            out = (torch.full_like(out[0], float("inf")),) + tuple(out[1:])
        return out

    monkeypatch.setattr(vae, "decode", decode)
    out = _run(pipe, clip_text=0.0, clip_style=0.0, gram=0.0, content=0.0, tv=0.0)
    assert torch.float16 in dtypes and torch.float32 in dtypes
    assert torch.isfinite(torch.as_tensor(out.images)).all()
    assert any("float32" in note for note in out.notes)


def test_gram_matrices_stay_float32_under_fp16():
    from guided.losses import gram_loss, gram_matrix

    features = torch.full((1, 64, 32, 32), 300.0, device="cuda", dtype=torch.float16)  # fp16 products overflow
    with torch.autocast("cuda", dtype=torch.float16):
        gram = gram_matrix(features)
        loss = gram_loss(features, gram)
    assert gram.dtype == torch.float32 and torch.isfinite(gram).all()
    assert float(loss) == 0.0


def test_channels_last_gives_the_same_features():
    from guided.testing import tiny_vgg

    vgg = tiny_vgg(0).to("cuda")
    x = torch.rand(1, 3, 64, 96, device="cuda")
    plain = vgg(x, ["relu3_1", "relu5_1"])
    vgg_cl = vgg.to(memory_format=torch.channels_last)
    fast = vgg_cl(x.contiguous(memory_format=torch.channels_last), ["relu3_1", "relu5_1"])
    for layer in plain:
        torch.testing.assert_close(fast[layer], plain[layer], rtol=1e-3, atol=1e-4)


def test_a_seeded_run_is_reproducible_twice(cuda_pipe):
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    first = torch.as_tensor(_run(cuda_pipe, seed=7, clip_text=1.0, gram=1.0).images)
    second = torch.as_tensor(_run(cuda_pipe, seed=7, clip_text=1.0, gram=1.0).images)
    assert (first - second).abs().max() <= 1 / 255
