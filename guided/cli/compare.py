"""`guided compare CONTENT [--style PAINTING ...] [--prompt ...] -o REPORT_DIR`: classic neural style
transfer, plain img2img and guided img2img side by side, with metrics and an HTML report."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from guided.cli.stylize import (
    add_backbone_option,
    add_stylize_options,
    check_stylize_options,
    load_kwargs,
    stylize_inputs,
    stylize_kwargs,
)
from guided.io.outputs import Output, check_outputs


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare", help="classic NST vs img2img vs guided img2img, scored, as an HTML report",
        description="Run classic neural style transfer (Gatys, default preset), plain Stable Diffusion img2img "
                    "and guided img2img on the same photo, painting, prompt and seed; score every output with "
                    "the same metrics (CLIPScore, CLIP style and directional similarity, VGG Gram and content "
                    "distances, LPIPS when its weights are present, time, peak memory); write the images with "
                    "their manifests, a grid, loss curves, metrics.json/metrics.md and a self-contained "
                    "report.html into REPORT_DIR.")
    p.add_argument("content", metavar="CONTENT", help="the photo")
    p.add_argument("-o", "--output", required=True, metavar="REPORT_DIR",
                   help="report folder (new, empty, or an earlier report, which is replaced)")
    p.add_argument("--sweep", action="append", default=[], metavar="TERM=V,V,...",
                   help="one more guided output per value of a guidance weight, e.g. clip_text=0,50,100 "
                        "(repeatable)")
    p.add_argument("--gatys-iterations", type=int, metavar="N",
                   help="iterations of the classic path (default: its preset's; 10 with --tiny)")
    p.add_argument("--net", action="append", default=[], metavar="NET",
                   help="a fast network from `guided train` (.safetensors or .onnx): one more row (repeatable)")
    add_stylize_options(p)
    add_backbone_option(p)
    p.set_defaults(func=run)


def _check_early(args: argparse.Namespace) -> None:
    """User mistakes found before any model loads."""
    from guided.errors import GuidedError

    check_stylize_options(args)
    check_outputs([Output(Path(args.output), "--output", kind="folder", replaces=True)], inputs=stylize_inputs(args))
    if args.gatys_iterations is not None and args.gatys_iterations < 1:
        raise GuidedError(f"`--gatys-iterations` must be a positive integer, got {args.gatys_iterations}")
    if args.preset:
        from guided.guidance.presets import load_preset

        load_preset(args.preset)


def run(args: argparse.Namespace) -> int:
    from guided.compare.run import compare, parse_sweep

    _check_early(args)
    sweep = parse_sweep(args.sweep)
    options = stylize_kwargs(args)
    options["styles"] = options.pop("style")
    gatys = {"iterations": args.gatys_iterations} if args.gatys_iterations is not None else {}
    from_console = Path(sys.argv[0]).name == "guided"  # not when called in-process (tests, notebooks)
    command = "guided " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if from_console else None
    report = compare(args.content, **options, sweep=sweep, out_dir=args.output, gatys_options=gatys,
                     command=command, nets=args.net, **load_kwargs(args))
    label = " [SMOKE RUN: tiny RANDOM models, not stylizations]" if report.smoke else ""
    print(f"wrote {report.out_dir}/report.html ({len(report.rows) - 1} outputs, metrics.json, metrics.md, grid.png)"
          f"{label}")
    return 0
