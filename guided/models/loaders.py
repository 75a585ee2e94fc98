"""Loading the guidance models (CLIP, VGG, tiny decoder) from real weights.

Every model comes from real weights or the call fails with a `WeightsNotFoundError` that says
what is missing and how to get it. Random models exist only in `guided.testing`.
"""
from __future__ import annotations

import logging

from guided.config import GuidanceConfig
from guided.constants import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED, DEFAULT_TINY_DECODER
from guided.errors import WeightsNotFoundError

logger = logging.getLogger(__name__)

#: Defaults: open_clip's LAION-2B ViT-B/32 (fast on CPU, the most used open CLIP), torchvision's
#: VGG-19 (the network of Gatys et al.), and TAESD, the tiny autoencoder for SD 1.x/2.x latents
#: (`guided.constants.TINY_DECODERS` names TAESDXL for SDXL).
DEFAULT_CLIP = (DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED)
DEFAULT_VGG = None  # resolve_backbone(None): $GUIDED_VGG_WEIGHTS, else torchvision's VGG-19


def load_tiny_decoder(source: str = DEFAULT_TINY_DECODER):
    """diffusers' `AutoencoderTiny` from a Hub id or local folder (raises when absent)."""
    from diffusers import AutoencoderTiny

    from guided.models.hub import resolve_model_dir

    folder = resolve_model_dir(source, what="tiny decoder (AutoencoderTiny)")
    return AutoencoderTiny.from_pretrained(str(folder)).eval().requires_grad_(False)


def load_guidance_models(config: GuidanceConfig | None = None, *, clip: str | tuple[str, str | None] | None = None,
                         vgg=DEFAULT_VGG, tiny_decoder: str | None = DEFAULT_TINY_DECODER):
    """`GuidanceModels` with CLIP and VGG (both always: final losses measure every term) and,
    for fast mode, the tiny decoder when its weights are present."""
    from guided.models.bundle import GuidanceModels
    from guided.models.clip import load_clip
    from guided.models.vgg import VGGFeatures, resolve_backbone

    config = config or GuidanceConfig()
    if isinstance(clip, str):  # a local checkpoint, or an architecture name (its default tag for ViT-B-32)
        name, tag = clip, (DEFAULT_CLIP[1] if clip == DEFAULT_CLIP[0] else None)
    else:
        name, tag = clip or DEFAULT_CLIP
    clip_model = load_clip(name, tag)
    net, vgg_info = resolve_backbone(vgg)
    decoder, decoder_info = None, "none (full VAE at reduced resolution)"
    wants_tiny = config.fast_decoder in ("auto", "tiny") and tiny_decoder
    if wants_tiny:
        try:
            decoder = load_tiny_decoder(tiny_decoder)
            decoder_info = str(tiny_decoder)
        except WeightsNotFoundError as exc:
            if config.fast_decoder == "tiny":
                raise
            logger.info("%s. Guidance decodes with the full VAE at reduced resolution instead.", exc)
    info = {"clip": getattr(clip_model, "info", {"name": name, "pretrained": tag}),
            "vgg": vgg_info.describe(), "tiny_decoder": decoder_info}
    return GuidanceModels(clip=clip_model, vgg=VGGFeatures(net, vgg_info.arch), tiny_decoder=decoder, info=info)
