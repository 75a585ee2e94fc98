"""Models built in code, offline: tiny random ones for tests and smoke runs, real-size random ones
for measuring cost. Every model here has RANDOM weights and says so in its `info`.

The Stable Diffusion components (`tiny_sd_components`, `sd15_random_components`) live in
`guided.testing_sd`, which imports diffusers; they are re-exported here lazily.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch
from torch import nn

from guided.objective import GuidanceModels

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
    from guided.clip import random_clip

    return random_clip(dict(TINY_CLIP_CONFIG), seed=seed)


def tiny_vgg(seed: int = 0, arch: str = "vgg19"):
    """A VGG-shaped feature network with 1/16 of the channels, seeded."""
    from guided.vgg import VGGFeatures, make_vgg_features

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = make_vgg_features(arch, width=TINY_VGG_WIDTH)
    return VGGFeatures(net, arch)


def tiny_autoencoder_tiny(seed: int = 0, *, latent_channels: int = 4, upscale: int = 8, width: int = 8) -> nn.Module:
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
        return AutoencoderTiny(encoder_block_out_channels=(width,) * blocks, decoder_block_out_channels=(width,) * blocks,
                               num_encoder_blocks=(1,) * blocks, num_decoder_blocks=(1,) * blocks,
                               latent_channels=latent_channels).eval().requires_grad_(False)


def tiny_guidance_models(seed: int = 0, *, decoder: bool = True, decoder_upscale: int = 8) -> GuidanceModels:
    """What `guidance_models=` takes, tiny and random: CLIP, VGG-19 and an AutoencoderTiny decoder.

    `decoder=False` leaves `tiny_decoder` None (no diffusers import); `decoder_upscale` must match
    the VAE the decoder stands in for (8 for Stable Diffusion, 2 for a two-block tiny VAE).
    """
    decoder_module = tiny_autoencoder_tiny(seed, upscale=decoder_upscale) if decoder else None
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

    from guided.clip import DEFAULT_CLIP_MODEL, random_clip
    from guided.vgg import VGGFeatures, make_vgg_features

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vgg = VGGFeatures(make_vgg_features("vgg19"), "vgg19")
        decoder = AutoencoderTiny().eval().requires_grad_(False)
    info = {"kind": "bench", "random": True,
            "clip": {"name": DEFAULT_CLIP_MODEL, "source": f"random init, seed {seed}", "random": True},
            "vgg": {"arch": "vgg19", "source": f"random init, seed {seed}", "random": True},
            "tiny_decoder": {"kind": "AutoencoderTiny (default config)", "random": True}}
    return GuidanceModels(clip=random_clip(DEFAULT_CLIP_MODEL, seed), vgg=vgg, tiny_decoder=decoder, info=info)


def tiny_sd_components(seed: int = 0, prediction_type: str = "epsilon") -> dict:
    """Tiny random Stable Diffusion components: `unet`, `vae`, `text_encoder`, `tokenizer`, `scheduler`.

    `prediction_type`: the scheduler's ("epsilon", "v_prediction" as SD 2.x 768, or "sample")."""
    from guided.testing_sd import tiny_sd_components as impl

    return impl(seed, prediction_type=prediction_type)


def sd15_random_components(seed: int = 0) -> dict:
    """The Stable Diffusion 1.5 architecture with random weights (and its tokenizer and scheduler)."""
    from guided.testing_sd import sd15_random_components as impl

    return impl(seed)


# -- a Hugging Face CLIPTokenizer from open_clip's bundled BPE file ----------------------------

def _byte_alphabet() -> list[str]:
    """GPT-2/CLIP byte-level alphabet: each of the 256 bytes as a printable unicode character.

    Printable Latin-1 bytes stand for themselves; the other bytes (controls, space, ...) take the
    code points 256, 257, ... in byte order. Listed in the order CLIP's vocabulary uses: the
    printable bytes first, then the others.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in set(printable)]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def open_clip_tokenizer_files(dest: str | Path) -> tuple[Path, Path]:
    """Write `vocab.json` and `merges.txt` into `dest` from open_clip's bundled BPE merges.

    CLIP's vocabulary (Radford et al. 2021) is: the 256 byte symbols, the same with the end-of-word
    mark `</w>`, one token per merge rule (the first 48894 rules of the file, in order), then
    `<|startoftext|>` and `<|endoftext|>` (ids 49406, 49407). `transformers.CLIPTokenizer` built
    from these files gives the same ids as open_clip's tokenizer.
    """
    import open_clip.tokenizer as oc_tok

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with gzip.open(oc_tok.default_bpe(), "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    n_merges = 49152 - 256 - 2  # CLIP's vocabulary is 49408 = 2*256 + merges + 2 specials
    rules = [line for line in lines[1:1 + n_merges]]  # line 0 is the file's version header
    alphabet = _byte_alphabet()
    tokens = alphabet + [s + "</w>" for s in alphabet] + ["".join(r.split()) for r in rules]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise RuntimeError("open_clip's BPE file produced duplicate tokens; unexpected format")
    vocab_path, merges_path = dest / "vocab.json", dest / "merges.txt"
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_path.write_text("#version: 0.2\n" + "\n".join(rules) + "\n", encoding="utf-8")
    return vocab_path, merges_path
