"""`guided stylize CONTENT --prompt ... -o OUT.png`: guided Stable Diffusion img2img."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from guided.config import GuidanceConfig
from guided.constants import (
    DEFAULT_CLIP_MODEL,
    DEFAULT_CLIP_PRETRAINED,
    MIXED_PRECISION,
    MODES,
    SCHEDULER_NAMES,
)
from guided.io.outputs import Output, check_outputs
from guided.stylize import DEFAULTS, check_denoising_steps
from guided.validate import diffusion_options, parse_floats, style_weights

logger = logging.getLogger(__name__)
_G = GuidanceConfig()


def _weights(text: str) -> list[float]:
    from guided.errors import GuidedError

    try:
        return parse_floats(text, "--style-weights")
    except GuidedError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_stylize_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `stylize`, `compare` and `batch`; defaults come from the Python API."""
    g = parser.add_argument_group("stylization")
    g.add_argument("--prompt", help="what the result should look like (or take it from --preset)")
    g.add_argument("--style", nargs="+", default=[], metavar="PAINTING", help="reference painting(s)")
    g.add_argument("--style-weights", type=_weights, metavar="W,W", help="blend weights of several --style images")
    g.add_argument("--negative-prompt", help="what the result should not look like")
    g.add_argument("--preset", help="a style preset from prompts/ or $GUIDED_PRESETS_DIR (see `guided presets`)")
    g.add_argument("--strength", type=float, help=f"how far from the photo, (0, 1] (default {DEFAULTS.strength})")
    g.add_argument("--steps", type=int, help=f"scheduler steps before strength (default {DEFAULTS.steps})")
    g.add_argument("--guidance-scale", type=float, help=f"classifier-free guidance (default {DEFAULTS.guidance_scale})")
    g.add_argument("--scheduler", choices=list(SCHEDULER_NAMES),
                   help=f"denoising scheduler (default {DEFAULTS.scheduler})")
    g.add_argument("--size", type=int, help="long side in pixels (default: the model's native resolution, 512 for "
                                            "SD 1.5, 1024 for SDXL, 64 with --tiny)")
    g.add_argument("--preserve-color", action="store_true", help="keep the photo's colours")
    w = parser.add_argument_group("guidance weights (0 turns a term off)")
    w.add_argument("--clip-text-weight", type=float, help=f"CLIP similarity to the prompt (default {_G.clip_text})")
    w.add_argument("--clip-style-weight", type=float, help=f"CLIP similarity to the painting (default {_G.clip_style})")
    w.add_argument("--gram-weight", type=float, help=f"VGG Gram (style) loss to the painting (default {_G.gram})")
    w.add_argument("--content-weight", type=float, help=f"VGG content loss to the photo (default {_G.content})")
    w.add_argument("--tv-weight", type=float, help=f"total variation (default {_G.tv})")
    w.add_argument("--mode", choices=MODES, help=f"fast: no UNet backward; full: through the UNet (default {_G.mode})")
    r = parser.add_argument_group("run")
    r.add_argument("--seed", type=int, default=DEFAULTS.seed, help=f"random seed (default {DEFAULTS.seed})")
    r.add_argument("--device", help="cpu, cuda, cuda:N, mps (default: the best available)")
    r.add_argument("--mixed-precision", choices=MIXED_PRECISION, help="Accelerate mixed precision (default no)")
    r.add_argument("--model", help="Stable Diffusion 1.x/2.x or SDXL Hub id or local folder, told apart by its "
                                   "model_index.json (default: see `guided models`)")
    r.add_argument("--clip", help="CLIP for guidance: open_clip NAME or NAME:TAG, or a local checkpoint "
                                  f"(default {DEFAULT_CLIP_MODEL}:{DEFAULT_CLIP_PRETRAINED})")
    r.add_argument("--tiny", action="store_true",
                   help="run on tiny RANDOM models built in code: an offline smoke test of the install")


def add_backbone_option(parser: argparse.ArgumentParser) -> None:
    """`--backbone` of `stylize` and `compare` (not in the shared options: `batch` has its own, for gatys)."""
    parser.add_argument("--backbone", help="VGG for guidance (and, in compare, the classic path): vgg19, vgg16, "
                                           "or a local weights file (default $GUIDED_VGG_WEIGHTS, else vgg19)")


def load_kwargs(args: argparse.Namespace) -> dict:
    """Keyword arguments of `Stylizer.load` from parsed options."""
    return {"tiny": args.tiny, "model": args.model, "scheduler": args.scheduler, "device": args.device,
            "mixed_precision": args.mixed_precision, "clip": getattr(args, "clip", None),
            "backbone": getattr(args, "backbone", None)}


def stylize_kwargs(args: argparse.Namespace) -> dict:
    """Keyword arguments of `Stylizer.run` from parsed options (None: preset or API default)."""
    weights = {"clip_text": args.clip_text_weight, "clip_style": args.clip_style_weight, "gram": args.gram_weight,
               "content": args.content_weight, "tv": args.tv_weight, "mode": args.mode}
    return {"prompt": args.prompt, "negative_prompt": args.negative_prompt, "style": list(args.style),
            "style_weights": args.style_weights, "strength": args.strength, "steps": args.steps,
            "guidance_scale": args.guidance_scale, "guidance": {k: v for k, v in weights.items() if v is not None},
            "seed": DEFAULTS.seed if args.seed is None else args.seed, "size": args.size,
            "preserve_color": args.preserve_color, "preset": args.preset}


def add_parser(sub) -> None:
    p = sub.add_parser("stylize", help="guided Stable Diffusion img2img of one photo",
                       description="Stylize a photo toward a prompt and/or reference paintings with Stable "
                                   "Diffusion img2img, every step steered by CLIP and VGG losses.")
    p.add_argument("content", metavar="CONTENT", nargs="?",
                   help="the photo (with --from: optional, the recorded photo when it is still there)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.png", help="output image (.png keeps the manifest)")
    p.add_argument("--from", dest="from_image", metavar="IMAGE.png",
                   help="rerun with the parameters recorded in a PNG written by guided")
    add_stylize_options(p)
    add_backbone_option(p)
    p.set_defaults(func=run, seed=None)  # None: not given, so --from can tell the recorded seed from an explicit one


def check_stylize_options(args: argparse.Namespace, presets: list[str] | None = None) -> None:
    """The shared stylization options that are wrong whatever the image (stylize, compare, batch):
    caught before any model loads, and in `batch` before the first item (`presets`: its list)."""
    from guided.stylize import guidance_from

    diffusion_options(cli=True, strength=args.strength, steps=args.steps, guidance_scale=args.guidance_scale,
                      size=args.size)
    for preset in presets or [args.preset]:
        check_denoising_steps(preset, strength=args.strength, steps=args.steps, cli=True)
    if args.style_weights is not None:
        style_weights(args.style_weights, len(args.style), name="--style-weights")
    guidance_from(stylize_kwargs(args)["guidance"])  # each weight a finite number >= 0, named if not


def stylize_inputs(args: argparse.Namespace) -> list:
    """Every local file a stylize run reads (content, paintings, preset, --from image, model files):
    what no output of the run may overwrite."""
    candidates = [getattr(args, "content", None), *args.style, args.preset, getattr(args, "from_image", None),
                  args.clip, getattr(args, "backbone", None), args.model]
    return [c for c in candidates if c and Path(c).expanduser().exists()]


def _check_early(args: argparse.Namespace) -> None:
    """User mistakes that need no model: missing files, empty objective, out-of-range numbers."""
    from guided.errors import GuidedError
    from guided.io.images import load_image

    load_image(args.content, what="content image")
    for s in args.style:
        load_image(s, what="style image")
    check_stylize_options(args)
    # The model's native size (at most 1024) fits every format; an explicit --size is checked.
    check_outputs([Output(Path(args.output), "--output", long_side=args.size)], inputs=stylize_inputs(args))
    if not args.preset and not (args.prompt or "").strip() and not args.style:
        raise GuidedError("`--prompt` is empty and no --style painting was given: nothing to stylize toward")


def apply_recorded(args: argparse.Namespace) -> None:
    """Fill options the user did not give from the manifest of a PNG written by `guided stylize`."""
    from guided.errors import GuidedError
    from guided.io.images import read_metadata

    meta = read_metadata(args.from_image)
    if meta.get("kind") != "stylize":
        raise GuidedError(f"`--from` image {args.from_image!r} was not written by `guided stylize`")
    p = meta["parameters"]
    if args.content is None:
        recorded_content = p.get("content")
        if not recorded_content or recorded_content == "<PIL image>" or not Path(recorded_content).is_file():
            raise GuidedError(f"CONTENT is required: the manifest of {args.from_image!r} names "
                              f"{recorded_content!r}, which is not there; give the photo to stylize")
        args.content = recorded_content
        logger.info("CONTENT: %s (recorded in %s)", recorded_content, args.from_image)
    g = p.get("guidance", {})
    recorded = {"prompt": p.get("prompt"), "negative_prompt": p.get("negative_prompt"),
                "style_weights": p.get("style_weights"),
                "strength": p.get("strength"), "steps": p.get("steps"), "guidance_scale": p.get("guidance_scale"),
                "size": p.get("size"), "clip_text_weight": g.get("clip_text"), "clip_style_weight": g.get("clip_style"),
                "gram_weight": g.get("gram"), "content_weight": g.get("content"), "tv_weight": g.get("tv"),
                "mode": g.get("mode")}
    for key, value in recorded.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if not args.style:
        args.style = list(p.get("style") or [])
    if args.scheduler is None and p.get("scheduler") in SCHEDULER_NAMES:
        args.scheduler = p["scheduler"]
    args.preserve_color = args.preserve_color or bool(p.get("preserve_color"))
    if args.seed is None:  # an explicit --seed wins over the recorded one
        args.seed = meta.get("seed")
    if not args.tiny and p.get("tiny") is True:
        args.tiny = True
    for key in ("model", "clip", "backbone", "mixed_precision"):  # the models and precision it was made with
        if getattr(args, key, None) is None and p.get(key) is not None:
            setattr(args, key, p[key])


def run(args: argparse.Namespace) -> int:
    from guided.io.images import save_image
    from guided.stylize import Stylizer

    if args.from_image:
        apply_recorded(args)
    elif args.content is None:
        from guided.errors import GuidedError

        raise GuidedError("CONTENT is required: give the photo to stylize (or --from IMAGE.png to rerun one)")
    _check_early(args)
    stylizer = Stylizer.load(**load_kwargs(args))
    result = stylizer.run(args.content, **stylize_kwargs(args))
    path = save_image(result.image, args.output, metadata=result.metadata)
    losses = ", ".join(f"{k} {v:.4g}" for k, v in result.final_losses.items())
    label = " [tiny RANDOM models: not a real stylization]" if args.tiny else ""
    print(f"wrote {path} in {result.seconds:.1f}s; final losses: {losses}{label}")
    return 0
