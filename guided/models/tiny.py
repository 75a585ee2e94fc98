"""Models built in code, offline: tiny random ones for tests and smoke runs, real-size random ones
for measuring cost. Every model here has RANDOM weights and says so in its `info`.

The Stable Diffusion components live in `guided.models.tiny_sd` (diffusers, imported when called);
`guided.testing` is the public module that gathers both.
"""
from __future__ import annotations

import torch
from torch import nn

from guided.models.bundle import GuidanceModels

#: A tiny open_clip architecture: the real BPE vocabulary (49408 tokens) and 77-token context,
#: so the real tokenizer works unchanged, with 32-wide two-layer towers and a 32-pixel input.
TINY_CLIP_CONFIG = {
    "name": "guided-tiny-clip",
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
TINY_VGG_WIDTH = 1 / 16  # 4..32 channels: a VGG-19 layout that runs in milliseconds


def tiny_clip(seed: int = 0):
    """A tiny random open_clip CLIP (TINY_CLIP_CONFIG) with open_clip's real tokenizer."""
    from guided.models.clip import random_clip

    return random_clip(dict(TINY_CLIP_CONFIG), seed=seed)


def tiny_vgg(seed: int = 0, arch: str = "vgg19"):
    """A VGG-shaped feature network with 1/16 of the channels, seeded."""
    from guided.models.vgg import VGGFeatures, make_vgg_features

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = make_vgg_features(arch, width=TINY_VGG_WIDTH)
    return VGGFeatures(net, arch)


def tiny_taesd(seed: int = 0, *, latent_channels: int = 4, upscale: int = 8, width: int = 8) -> nn.Module:
    """A small random diffusers `AutoencoderTiny` decoding latents to images `upscale`× larger.

    `upscale` must be a power of two (8 matches Stable Diffusion's VAE; a tiny test VAE with two
    blocks has 2).
    """
    from diffusers import AutoencoderTiny

    blocks = upscale.bit_length()  # one block more than the number of ×2 steps
    if upscale < 1 or upscale & (upscale - 1):
        raise ValueError(f"`upscale` must be a power of two, got {upscale}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderTiny(encoder_block_out_channels=(width,) * blocks,
                               decoder_block_out_channels=(width,) * blocks,
                               num_encoder_blocks=(1,) * blocks, num_decoder_blocks=(1,) * blocks,
                               latent_channels=latent_channels).eval().requires_grad_(False)


def tiny_guidance_models(seed: int = 0, *, decoder: bool = True, decoder_upscale: int = 8) -> GuidanceModels:
    """What `guidance_models=` takes, tiny and random: CLIP, VGG-19 and an AutoencoderTiny decoder.

    `decoder=False` leaves `tiny_decoder` None (no diffusers import); `decoder_upscale` must match
    the VAE the decoder stands in for (8 for Stable Diffusion, 2 for a two-block tiny VAE).
    """
    decoder_module = tiny_taesd(seed, upscale=decoder_upscale) if decoder else None
    info = {"kind": "tiny", "random": True,
            "clip": {"name": TINY_CLIP_CONFIG["name"], "source": f"random init, seed {seed}", "random": True},
            "vgg": {"arch": "vgg19", "width": TINY_VGG_WIDTH, "source": f"random init, seed {seed}", "random": True},
            "tiny_decoder": ({"kind": "AutoencoderTiny (tiny)", "upscale": decoder_upscale, "random": True}
                             if decoder else None)}
    return GuidanceModels(clip=tiny_clip(seed), vgg=tiny_vgg(seed), tiny_decoder=decoder_module, info=info)


def bench_guidance_models(seed: int = 0) -> GuidanceModels:
    """The real guidance architectures with RANDOM weights, for measuring cost: CLIP ViT-B-32,
    VGG-19 and diffusers' `AutoencoderTiny` at its default (TAESD) size."""
    from diffusers import AutoencoderTiny

    from guided.models.clip import DEFAULT_CLIP_MODEL, random_clip
    from guided.models.vgg import VGGFeatures, make_vgg_features

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vgg = VGGFeatures(make_vgg_features("vgg19"), "vgg19")
        decoder = AutoencoderTiny().eval().requires_grad_(False)
    info = {"kind": "bench", "random": True,
            "clip": {"name": DEFAULT_CLIP_MODEL, "source": f"random init, seed {seed}", "random": True},
            "vgg": {"arch": "vgg19", "source": f"random init, seed {seed}", "random": True},
            "tiny_decoder": {"kind": "AutoencoderTiny (default config)", "random": True}}
    return GuidanceModels(clip=random_clip(DEFAULT_CLIP_MODEL, seed), vgg=vgg, tiny_decoder=decoder, info=info)
