"""Names and numbers that several parts of guided share: model ids, term names, modes, formats.

Plain data, no imports beyond the standard library, so the CLI reads its choices from here without
loading torch. A literal that stands for one of these is never written out again elsewhere.
"""
from __future__ import annotations

# -- model ids (Hugging Face Hub repositories; each also accepts a local folder) ------------------
#: Stable Diffusion 1.5, the checkpoint most style work starts from (and the pipeline's default).
DEFAULT_SD_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
#: SDXL base 1.0: the checkpoint most current style fine-tunes start from.
DEFAULT_SDXL_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"
#: The tiny autoencoder (AutoencoderTiny) for each model family's latents, TAESD and TAESDXL: fast
#: mode decodes the x0 estimate with it (a few MB, far cheaper than the VAE).
TINY_DECODERS = {"sd": "madebyollin/taesd", "sdxl": "madebyollin/taesdxl"}
DEFAULT_TINY_DECODER = TINY_DECODERS["sd"]
#: open_clip's name and pretrained tag of the guidance CLIP: ViT-B/32 trained on LAION-2B, small
#: enough to run on every guided step and on several cutouts per step.
DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b79k"
#: Where open_clip publishes that tag on the Hub (its weights file is looked for in this repo's cache).
DEFAULT_CLIP_HUB_REPO = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
#: Environment variable naming a local VGG weights file, used when no `--backbone` is given.
ENV_VGG_WEIGHTS = "GUIDED_VGG_WEIGHTS"


# -- the guidance objective ----------------------------------------------------------------------
#: Terms of the guidance objective, in the order they are reported.
GUIDANCE_TERMS = ("clip_text", "clip_style", "gram", "content", "tv")
#: fast: x0 from a no-grad UNet pass, gradient through the decoder only; full: through the UNet too.
MODES = ("fast", "full")
#: How fast mode decodes x0: "auto" = the tiny decoder where present, else the VAE at low resolution.
FAST_DECODERS = ("auto", "tiny", "vae-lowres")
#: Schedulers `guided stylize --scheduler` offers (`pipelines.SCHEDULERS` maps them to diffusers').
SCHEDULER_NAMES = ("ddim", "pndm", "ddpm", "lms", "euler", "euler-ancestral", "heun", "dpm++", "unipc")

# -- classic neural style transfer ---------------------------------------------------------------
#: Keys of a classic run's per-iteration history (weighted losses), in plotting order.
GATYS_TERMS = ("total", "content", "style", "tv")

# -- precision ----------------------------------------------------------------------------------
#: Accelerate's mixed-precision choices.
MIXED_PRECISION = ("no", "fp16", "bf16")

# -- images ------------------------------------------------------------------------------------
#: torchvision's ImageNet statistics: the input normalisation every ImageNet VGG expects.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: OpenAI CLIP's input statistics (open_clip's default for most tags).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: Output file suffix -> Pillow format. PNG carries the full manifest in a text chunk.
SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
#: The largest image side guided makes (px): an output of 16384 x 16384 is already a 1 GB float
#: tensor per copy; beyond it a run would exhaust memory long before it finished.
MAX_SIDE = 16384
#: The largest side each output format can hold (libwebp: 16383 px; JPEG's 16-bit header: 65535).
FORMAT_MAX_SIDE = {"PNG": 2 ** 31 - 1, "JPEG": 65535, "WEBP": 16383}
