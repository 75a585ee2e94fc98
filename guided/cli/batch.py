"""`guided batch INPUT_DIR -o OUTPUT_DIR`: stylize a whole folder, resumably, on one or many processes."""
from __future__ import annotations

import argparse
import sys

EPILOG = """\
outputs: INPUT_DIR/sub/a.jpg with --preset ink-wash -> OUTPUT_DIR/sub/a.jpg.ink-wash.png (+ .json
sidecar); without --preset the label is the method: a.jpg.stylize.png / a.jpg.gatys.png.
OUTPUT_DIR/manifest.jsonl records every item (status done/failed, reason, parameter hash, seconds);
a rerun skips what is done with the same parameters and input, and retries the rest.
exit status: 0 all done, 1 some failed, 2 none done or a usage error, 130/143 interrupted.
scale out: accelerate launch -m guided batch ...   or   torchrun --nproc_per_node N -m guided batch ...
"""


def _stylize_options():
    """The stylize command's shared options, or None while that command is not installed."""
    try:
        from guided.cli.stylize import add_stylize_options, load_kwargs, stylize_kwargs
    except ImportError:
        return None
    return add_stylize_options, stylize_kwargs, load_kwargs


def _add(group, parser: argparse.ArgumentParser, *flags: str, **kwargs) -> str | None:
    """Add an option unless the stylize options already define it (same flag, same meaning); its dest."""
    if any(flag in parser._option_string_actions for flag in flags):
        return None
    return group.add_argument(*flags, **kwargs).dest


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_parser(subparsers) -> argparse.ArgumentParser:
    from guided.gatys_presets import DEFAULT, OPTIMIZERS, PRESETS

    parser = subparsers.add_parser(
        "batch", help="stylize every image of a folder (resumable; scales out with accelerate/torchrun)",
        description="Stylize every image in INPUT_DIR into OUTPUT_DIR with one setting (or one output per "
                    "preset with --preset a,b,c). Resumable: interrupted or failed items are redone by "
                    "rerunning the same command.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input_dir", metavar="INPUT_DIR", help="folder of images (jpg, png, webp, bmp, tiff, gif)")
    parser.add_argument("-o", "--output", dest="output_dir", metavar="OUTPUT_DIR", required=True,
                        help="folder for the outputs and manifest.jsonl (created if missing)")
    parser.add_argument("--recursive", "-r", action="store_true", help="also take images in subfolders")
    parser.add_argument("--method", choices=("stylize", "gatys"), default="stylize",
                        help="guided Stable Diffusion (stylize, the default) or classic Gatys style transfer")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    shared = _stylize_options()
    if shared is not None:
        shared[0](parser)
    common = parser.add_argument_group("options of both methods")
    _add(common, parser, "--preset", default=None,
         help="preset name, or several separated by commas (one output per image and preset); with "
              f"--method gatys: {', '.join(PRESETS)} (default: {DEFAULT.name})")
    _add(common, parser, "--style", action="append", default=None, metavar="IMAGE",
         help="style image (repeat for several)")
    _add(common, parser, "--style-weights", type=_floats, default=None, help="blend weights of the style images")
    _add(common, parser, "--seed", type=int, default=0, help="random seed (default: 0)")
    _add(common, parser, "--mixed-precision", choices=("no", "fp16", "bf16"), default=None,
         help="mixed precision (default: the preset's)")
    gatys = parser.add_argument_group("options of --method gatys (default: the preset's value)")
    only = [
        gatys.add_argument("--iterations", type=int, default=None,
                           help=f"optimisation steps ({DEFAULT.name}: {DEFAULT.iterations})").dest,
        gatys.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help="optimizer").dest,
        gatys.add_argument("--original-colors", action="store_true", default=None,
                           help="keep the photo's colours").dest,
        gatys.add_argument("--backbone", default=None,
                           help="vgg19, vgg16, vgg19-random, vgg16-random or a weights file (default: "
                                "$GUIDED_VGG_WEIGHTS, else vgg19)").dest,
        _add(gatys, parser, "--size", type=int, default=None,
             help=f"long side in pixels ({DEFAULT.name}: {DEFAULT.size})"),
    ]
    _add(gatys, parser, "--device", default=None, help="cpu, cuda, ... (default: the best available)")
    parser.set_defaults(func=run, gatys_only=[dest for dest in only if dest])
    return parser


def _presets(text: str | None) -> tuple[str, ...] | None:
    from guided.batch_items import check_label
    from guided.errors import GuidedError

    if text is None:
        return None
    names = tuple(name.strip() for name in str(text).split(",") if name.strip())
    if not names:
        raise GuidedError(f"`--preset` names no preset: {text!r}")
    return tuple(check_label(name) for name in names)


def _styles(value) -> list[str]:
    """--style as a flat list of paths, whether given once, repeated or with several values."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        return [str(value)]
    flat: list[str] = []
    for v in value:
        flat.extend(_styles(v))
    return flat


def make_job(args: argparse.Namespace):
    """The batch job the options describe (validated before any model loads)."""
    from guided.errors import GuidedError

    presets = _presets(getattr(args, "preset", None))
    if args.method == "gatys":
        from guided.batch_jobs import GatysJob

        options = {"size": args.size, "iterations": args.iterations, "optimizer": args.optimizer,
                   "mixed_precision": args.mixed_precision, "original_colors": args.original_colors,
                   "style_weights": args.style_weights}
        return GatysJob(styles=_styles(args.style), presets=presets,
                        options={k: v for k, v in options.items() if v is not None},
                        backbone=args.backbone, seed=args.seed, device=getattr(args, "device", None))
    given = [f"--{name.replace('_', '-')}" for name in args.gatys_only if getattr(args, name) is not None]
    if given:
        raise GuidedError(f"{', '.join(given)} only apply to --method gatys")
    shared = _stylize_options()
    if shared is None:
        raise GuidedError("--method stylize is not available yet in this version (guided.cli.stylize is "
                          "missing); use --method gatys")
    from guided.batch_jobs import StylizeJob

    run_options = shared[1](args)
    run_options.pop("preset", None)  # one output per preset: the job sets it per item
    if not presets and not (run_options.get("prompt") or "").strip() and not run_options.get("style"):
        raise GuidedError("`--prompt` is empty and no --style painting or --preset was given: nothing to "
                          "stylize toward")
    return StylizeJob(run_options=run_options, load_options=shared[2](args), presets=presets)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from guided.batch import run_batch

    job = make_job(args)
    cpu = getattr(args, "device", None) == "cpu"
    summary = run_batch(job, Path(args.input_dir), Path(args.output_dir), recursive=args.recursive,
                        progress=args.progress, cpu=cpu)
    from accelerate import PartialState

    if PartialState().is_main_process:
        for output, reason in summary.failures:
            print(f"  failed: {output}: {reason}", file=sys.stderr)
        print(f"guided batch: {summary.describe()} -> {Path(args.output_dir) / 'manifest.jsonl'}", file=sys.stderr)
    return summary.exit_code
