"""Stable Diffusion components with random weights, built in code (no download).

`tiny_sd_components` is a few-MB model for tests and smoke runs; `sd15_random_components` has
the exact Stable Diffusion 1.5 architecture, for measuring cost. Both are random and say so:
nothing made with them is a real stylization. Imports diffusers only when called.
"""
from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

import torch

# Stable Diffusion 1.x's noise schedule (its scheduler_config.json): every SD 1.x/2.x checkpoint
# uses these betas, so the tiny model denoises on the same grid as the real ones.
SD_SCHEDULE = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                   clip_sample=False, set_alpha_to_one=False, steps_offset=1)


@lru_cache(maxsize=1)
def _tokenizer_dir() -> str:
    from guided.models.tokenizer import open_clip_tokenizer_files

    folder = Path(tempfile.mkdtemp(prefix="guided-tokenizer-"))
    open_clip_tokenizer_files(folder)
    return str(folder)


def clip_tokenizer():
    """A `transformers.CLIPTokenizer` built from open_clip's bundled BPE vocabulary (no Hub)."""
    from transformers import CLIPTokenizer

    folder = Path(_tokenizer_dir())
    # model_max_length: CLIP's text context, which Stable Diffusion pads and truncates to.
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def _scheduler(prediction_type: str = "epsilon"):
    from diffusers import DDIMScheduler

    return DDIMScheduler(prediction_type=prediction_type, **SD_SCHEDULE)


def _text_encoder(hidden: int, intermediate: int, heads: int, layers: int, projection: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=intermediate,
                            num_attention_heads=heads, num_hidden_layers=layers, max_position_embeddings=77,
                            projection_dim=projection, hidden_act="quick_gelu", bos_token_id=49406,
                            eos_token_id=49407, pad_token_id=49407)
    return CLIPTextModel(config).eval()


def tiny_sd_components(seed: int = 0, prediction_type: str = "epsilon") -> dict:
    """Tiny random `unet`, `vae`, `text_encoder`, `tokenizer`, `scheduler` (VAE factor 8, 64 px -> 8x8 latents)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, attention_head_dim=8,
            norm_num_groups=8)
        vae = AutoencoderKL(
            block_out_channels=(8, 16, 16, 16), in_channels=3, out_channels=3, latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=1, norm_num_groups=8, sample_size=64)
        text_encoder = _text_encoder(hidden=32, intermediate=37, heads=4, layers=2, projection=32)
    return {"unet": unet.eval(), "vae": vae.eval(), "text_encoder": text_encoder, "tokenizer": clip_tokenizer(),
            "scheduler": _scheduler(prediction_type)}


def sd15_random_components(seed: int = 0) -> dict:
    """Stable Diffusion 1.5's architecture (UNet 860M, VAE 84M, CLIP ViT-L/14 text 123M), random weights."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=768, attention_head_dim=8)
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512), in_channels=3, out_channels=3, latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2, sample_size=512)
        text_encoder = _text_encoder(hidden=768, intermediate=3072, heads=12, layers=12, projection=768)
    return {"unet": unet.eval(), "vae": vae.eval(), "text_encoder": text_encoder, "tokenizer": clip_tokenizer(),
            "scheduler": _scheduler()}
