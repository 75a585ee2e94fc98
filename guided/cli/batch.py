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


def add_parser(subparsers) -> argparse.ArgumentParser:
    from guided.cli.stylize import add_stylize_options
    from guided.gatys.presets import DEFAULT, OPTIMIZERS, PRESETS

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
    parser.add_argument("--method", choices=("stylize", "gatys", "fast"), default="stylize",
                        help="guided Stable Diffusion (stylize, the default), classic Gatys style transfer, or a "
                             "fast network from `guided train` (fast, with --net)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    before = {action.dest for action in parser._actions}
    add_stylize_options(parser)  # one source for the options (and defaults) of `guided stylize`
    stylize_only = sorted({action.dest for action in parser._actions} - before - set(BOTH))
    options = parser._option_string_actions
    options["--preset"].help = (
        "preset name, or several separated by commas (one output per image and preset): with --method "
        f"stylize a preset from prompts/ (see `guided presets`), with --method gatys one of {', '.join(PRESETS)}")
    options["--size"].help += f"; with --method gatys: the preset's ({DEFAULT.name}: {DEFAULT.size})"
    gatys = parser.add_argument_group("options of --method gatys (default: the preset's value)")
    gatys_only = [
        gatys.add_argument("--iterations", type=int, default=None,
                           help=f"optimisation steps ({DEFAULT.name}: {DEFAULT.iterations})").dest,
        gatys.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help="optimizer").dest,
        gatys.add_argument("--backbone", default=None,
                           help="vgg19, vgg16, vgg19-random, vgg16-random or a weights file (default: "
                                "$GUIDED_VGG_WEIGHTS, else vgg19)").dest,
    ]
    fast = parser.add_argument_group("options of --method fast (also --size, --mixed-precision, --device)")
    fast_only = [fast.add_argument("--net", default=None, metavar="NET",
                                   help="network file from `guided train` (.safetensors) or `guided export` "
                                        "(.onnx)").dest]
    real = [a for a in parser._actions if a.default is not argparse.SUPPRESS]  # not the deprecated spellings
    parser.set_defaults(defaults={a.dest: a.default for a in real},
                        spellings={a.dest: a.option_strings[-1] for a in real if a.option_strings})
    parser.set_defaults(func=run, gatys_only=gatys_only, stylize_only=stylize_only, fast_only=fast_only)
    return parser


# Options that mean the same for both methods; every other stylize option is refused with --method gatys.
BOTH = ("style", "style_weights", "preset", "seed", "device", "mixed_precision", "size", "preserve_color")


def _given(args: argparse.Namespace, dests: list[str]) -> list[str]:
    """The options among `dests` that the user set (their value is not the parser's default)."""
    defaults = args.defaults
    return [args.spellings.get(d, f"--{d.replace('_', '-')}") for d in dests if getattr(args, d) != defaults.get(d)]


def _presets(text: str | None) -> tuple[str, ...] | None:
    from guided.batch.items import check_label
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
    if args.method == "fast":
        return _fast_job(args, presets)
    given = _given(args, args.fast_only)
    if given:
        raise GuidedError(f"{', '.join(given)} only apply to --method fast")
    if args.method == "gatys":
        from guided.batch.jobs import GatysJob

        given = _given(args, args.stylize_only)
        if given:
            raise GuidedError(f"{', '.join(given)} only apply to --method stylize")

        options = {"size": args.size, "iterations": args.iterations, "optimizer": args.optimizer,
                   "mixed_precision": args.mixed_precision, "preserve_color": args.preserve_color or None,
                   "style_weights": args.style_weights}
        return GatysJob(styles=_styles(args.style), presets=presets,
                        options={k: v for k, v in options.items() if v is not None},
                        backbone=args.backbone, seed=args.seed, device=getattr(args, "device", None))
    given = _given(args, args.gatys_only)
    if given:
        raise GuidedError(f"{', '.join(given)} only apply to --method gatys")
    from guided.batch.jobs import StylizeJob
    from guided.cli.stylize import check_stylize_options, load_kwargs, stylize_kwargs

    check_stylize_options(args, presets)  # wrong for every image: refused before the first one, not per item
    run_options = stylize_kwargs(args)
    run_options.pop("preset", None)  # one output per preset: the job sets it per item
    if not presets and not (run_options.get("prompt") or "").strip() and not run_options.get("style"):
        raise GuidedError("`--prompt` is empty and no --style painting or --preset was given: nothing to "
                          "stylize toward")
    return StylizeJob(run_options=run_options, load_options=load_kwargs(args), presets=presets)


def _fast_job(args: argparse.Namespace, presets):
    from guided.batch.jobs import FastJob
    from guided.errors import GuidedError

    if not args.net:
        raise GuidedError("`--net` is required with --method fast: a network from `guided train`")
    given = _given(args, [d for d in args.stylize_only + args.gatys_only if d != "preserve_color"])
    given += ["--preset"] * bool(presets) + ["--style"] * bool(_styles(args.style)) + \
        ["--style-weights"] * (args.style_weights is not None)
    if given:
        raise GuidedError(f"{', '.join(given)} do not apply to --method fast (the network is the style)")
    return FastJob(net=args.net, size=args.size, preserve_color=bool(args.preserve_color),
                   mixed_precision=args.mixed_precision, device=getattr(args, "device", None))


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from guided.batch.engine import run_batch
    from guided.io.outputs import Output, check_outputs

    job = make_job(args)
    inputs = [*(args.style or []), getattr(args, "backbone", None), getattr(args, "model", None),
              *(p for p in (args.preset or "").split(",") if p.endswith(".json"))]
    check_outputs([Output(Path(args.output_dir), "--output", kind="folder")],
                  inputs=[args.input_dir, *(p for p in inputs if p and Path(p).expanduser().exists())])
    cpu = getattr(args, "device", None) == "cpu"
    summary = run_batch(job, Path(args.input_dir), Path(args.output_dir), recursive=args.recursive,
                        progress=args.progress, cpu=cpu)
    from accelerate import PartialState

    if PartialState().is_main_process:
        for output, reason in summary.failures:
            print(f"  failed: {output}: {reason}", file=sys.stderr)
        print(f"guided batch: {summary.describe()} -> {Path(args.output_dir) / 'manifest.jsonl'}", file=sys.stderr)
    return summary.exit_code
