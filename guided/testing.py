"""Public test helpers: models built in code, offline, every one with RANDOM weights.

Outside code and notebooks import these names from here; they live in `guided.models.tiny` (pure
torch and open_clip) and `guided.models.tiny_sd` (SD and SDXL; diffusers, imported only when called).
"""
from guided.models.tiny import (
                                TINY_CLIP_CONFIG,
                                TINY_VGG_WIDTH,
                                bench_guidance_models,
                                tiny_clip,
                                tiny_guidance_models,
                                tiny_taesd,
                                tiny_vgg,
)
from guided.models.tiny_sd import (
                                sd15_random_components,
                                sdxl_random_components,
                                tiny_sd_components,
                                tiny_sdxl_components,
)
from guided.models.tokenizer import open_clip_tokenizer_files

__all__ = ["TINY_CLIP_CONFIG", "TINY_VGG_WIDTH", "bench_guidance_models", "open_clip_tokenizer_files",
           "sd15_random_components", "sdxl_random_components", "tiny_taesd", "tiny_clip",
           "tiny_guidance_models", "tiny_sd_components", "tiny_sdxl_components", "tiny_vgg"]
