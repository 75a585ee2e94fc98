"""Stable Diffusion and SDXL components with random weights, built in code (no download).

`tiny_sd_components` and `tiny_sdxl_components` are few-MB models for tests and smoke runs;
`sd15_random_components` and `sdxl_random_components` have the exact Stable Diffusion 1.5 and SDXL
base architectures, for measuring cost. All are random and say so: nothing made with them is a
real stylization. Imports diffusers only when called.
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


def clip_tokenizer(pad_token: str = "<|endoftext|>"):
    """A `transformers.CLIPTokenizer` built from open_clip's bundled BPE vocabulary (no Hub).

    `pad_token`: SD's and SDXL's first tokenizer pad with the end token; SDXL's second
    (OpenCLIP bigG's) pads with "!", id 0, as open_clip does."""
    from transformers import CLIPTokenizer

    folder = Path(_tokenizer_dir())
    # model_max_length: CLIP's text context, which Stable Diffusion pads and truncates to.
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77,
                         pad_token=pad_token)


def _scheduler(prediction_type: str = "epsilon"):
    from diffusers import DDIMScheduler

    return DDIMScheduler(prediction_type=prediction_type, **SD_SCHEDULE)


def _sdxl_scheduler(prediction_type: str = "epsilon"):
    """SDXL base's scheduler: Euler on SD's betas, "leading" spacing (its scheduler_config.json)."""
    from diffusers import EulerDiscreteScheduler

    # from_config keeps DDIM's keys (clip_sample ...) in the config, as the real file does, so
    # `set_scheduler("ddim")` builds DDIM with SD's settings rather than its own defaults.
    return EulerDiscreteScheduler.from_config(dict(SD_SCHEDULE, prediction_type=prediction_type,
                                                   timestep_spacing="leading", interpolation_type="linear"))


def _text_encoder(hidden: int, intermediate: int, heads: int, layers: int, projection: int, *,
                  act: str = "quick_gelu", with_projection: bool = False):
    """CLIP's text tower (OpenAI's quick_gelu; OpenCLIP bigG's gelu); `with_projection` adds the
    pooled, projected output SDXL's second encoder gives."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=intermediate,
                            num_attention_heads=heads, num_hidden_layers=layers, max_position_embeddings=77,
                            projection_dim=projection, hidden_act=act, bos_token_id=49406,
                            eos_token_id=49407, pad_token_id=49407)
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config).eval()


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


def _sdxl_unet(*, blocks: tuple[int, ...], transformer_layers: tuple[int, ...], heads: tuple[int, ...],
               layers_per_block: int, sample_size: int, text_dims: tuple[int, int], time_dim: int, **extra):
    """SDXL's UNet layout: no attention in the first block; cross-attention on both text encoders'
    hidden states side by side; `text_time` added conditioning = six size/crop numbers embedded in
    `time_dim` each, plus the second encoder's pooled projection."""
    from diffusers import UNet2DConditionModel

    n = len(blocks)
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=layers_per_block,
        block_out_channels=blocks, down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        transformer_layers_per_block=transformer_layers,
        attention_head_dim=heads, use_linear_projection=True, cross_attention_dim=sum(text_dims),
        addition_embed_type="text_time", addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=6 * time_dim + text_dims[1], **extra).eval()


def _sdxl_vae(blocks: tuple[int, ...], layers_per_block: int, sample_size: int, **extra):
    """SD's VAE layout with SDXL's latent scaling (0.13025); `force_upcast`: it overflows in fp16."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=blocks, in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * len(blocks),
                         up_block_types=("UpDecoderBlock2D",) * len(blocks), layers_per_block=layers_per_block,
                         sample_size=sample_size, scaling_factor=0.13025, force_upcast=True, **extra).eval()


def tiny_sdxl_components(seed: int = 0, prediction_type: str = "epsilon") -> dict:
    """Tiny random SDXL components: exactly what `StableDiffusionXLImg2ImgPipeline(**components)` takes.

    `unet` (text_time conditioning), `vae` (factor 8: 64 px -> 8x8 latents, the UNet's
    sample_size), `text_encoder` and `text_encoder_2` (with projection), both tokenizers built
    offline, SDXL's Euler `scheduler`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = _sdxl_unet(blocks=(32, 64), transformer_layers=(1, 2), heads=(2, 4), layers_per_block=1,
                          sample_size=8, text_dims=(32, 32), time_dim=8, norm_num_groups=8)
        vae = _sdxl_vae((8, 16, 16, 16), layers_per_block=1, sample_size=64, norm_num_groups=8)
        text_encoder = _text_encoder(hidden=32, intermediate=37, heads=4, layers=2, projection=32)
        text_encoder_2 = _text_encoder(hidden=32, intermediate=37, heads=4, layers=2, projection=32, act="gelu",
                                       with_projection=True)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "text_encoder_2": text_encoder_2,
            "tokenizer": clip_tokenizer(), "tokenizer_2": clip_tokenizer(pad_token="!"),
            "scheduler": _sdxl_scheduler(prediction_type)}


def sdxl_random_components(seed: int = 0) -> dict:
    """SDXL base 1.0's architecture, random weights: UNet 2.6B, VAE 84M, CLIP ViT-L/14 text 123M,
    OpenCLIP bigG/14 text with projection 695M (about 14 GB in float32)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = _sdxl_unet(blocks=(320, 640, 1280), transformer_layers=(1, 2, 10), heads=(5, 10, 20),
                          layers_per_block=2, sample_size=128, text_dims=(768, 1280), time_dim=256)
        vae = _sdxl_vae((128, 256, 512, 512), layers_per_block=2, sample_size=1024)
        text_encoder = _text_encoder(hidden=768, intermediate=3072, heads=12, layers=12, projection=768)
        text_encoder_2 = _text_encoder(hidden=1280, intermediate=5120, heads=20, layers=32, projection=1280,
                                       act="gelu", with_projection=True)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "text_encoder_2": text_encoder_2,
            "tokenizer": clip_tokenizer(), "tokenizer_2": clip_tokenizer(pad_token="!"),
            "scheduler": _sdxl_scheduler()}
