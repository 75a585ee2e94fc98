"""`guided train STYLE... --data PHOTOS -o NET.safetensors`: train a fast network for a style.

Defaults come from `guided.fast.config.TrainConfig` (torch-free), so `--help` stays fast.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from guided.constants import GUIDANCE_TERMS
from guided.fast.config import WIDTHS, TrainConfig

_D = TrainConfig()
_TERM_HELP = {"gram": "VGG Gram (style) loss to the painting(s)", "content": "VGG content loss to each photo",
              "tv": "total variation of the output", "clip_text": "CLIP distance to --prompt",
              "clip_style": "CLIP distance to the painting(s)"}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train a fast feed-forward network for a style (Johnson et al.), then stylize in one pass",
        description="Train a transformation network on a folder of photos so that its outputs minimise our "
                    "objective: VGG Gram distance to the painting(s), VGG content distance to each photo, total "
                    "variation, and optionally CLIP text (--prompt) and CLIP style terms. Each term is divided by a "
                    "fixed scale measured at the start (weights mean the same on any VGG). Writes NET.safetensors "
                    "with a model card, and next to it NET.ckpt.safetensors (resumable checkpoint), "
                    "NET.curves.png and NET.samples.png. Ctrl-C/SIGTERM write the checkpoint and stop; --resume "
                    "continues. Runs on several processes under `accelerate launch` or `torchrun`.")
    p.add_argument("styles", nargs="*", metavar="STYLE_IMAGE", help="painting(s); may be omitted with --prompt")
    p.add_argument("--data", required=True, metavar="PHOTOS_DIR",
                   help="folder of training photos (recursive; hidden files skipped; broken files skipped and counted)")
    p.add_argument("-o", "--output", required=True, metavar="NET.safetensors", help="the network file to write")
    p.add_argument("--prompt", help="CLIP text target: train from a prompt (alone or with paintings)")
    p.add_argument("--style-weights", metavar="W,W,...", help="blend weights of several STYLE_IMAGEs (default equal)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--iterations", type=int, default=_D.iterations,
                        help=f"training steps of one global batch (default {_D.iterations})")
    length.add_argument("--epochs", type=float, help="or: passes over the photos")
    p.add_argument("--image-size", type=int, default=_D.image_size, help=f"crop size in px (default {_D.image_size})")
    p.add_argument("--batch-size", type=int, default=_D.batch_size,
                   help=f"photos per step and process (default {_D.batch_size})")
    p.add_argument("--lr", type=float, default=_D.lr, help=f"Adam learning rate (default {_D.lr:g})")
    p.add_argument("--style-size", type=int, help="long side of the painting for its Gram targets "
                                                  "(default: --image-size)")
    p.add_argument("--width", choices=list(WIDTHS), default=_D.width,
                   help=f"full = 32-64-128 channels, half = 16-32-64 (default {_D.width})")
    p.add_argument("--input-noise", type=float, default=_D.input_noise, metavar="SIGMA",
                   help="std of a fixed noise pattern added to the input (0-1 pixel range), in training and in "
                        "every later use of the network: lets it paint texture on flat regions such as a "
                        f"clear sky (default {_D.input_noise:g})")
    w = p.add_argument_group("term weights (0 turns a term off)")
    for name in GUIDANCE_TERMS:
        w.add_argument(f"--{name.replace('_', '-')}-weight", dest=name, type=float, default=getattr(_D, name),
                       help=f"{_TERM_HELP[name]} (default {getattr(_D, name):g})")
    w.add_argument("--temporal-weight", type=float, default=_D.temporal_weight,
                   help="temporal loss on synthetically moved crops, for networks meant for video (ReReVST; "
                        f"10 cut a mosaic network's warping error by 52-70%% at <3%% style cost, bench/README.md; "
                        f"default {_D.temporal_weight:g}: off)")
    p.add_argument("--backbone", help="VGG weights: vgg19, vgg16, vgg19-random/vgg16-random (explicitly RANDOM), or "
                                      "a local .safetensors/.pth file (default: $GUIDED_VGG_WEIGHTS, else vgg19)")
    p.add_argument("--seed", type=int, default=_D.seed,
                   help=f"seed of the network init and the data (default {_D.seed})")
    p.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default=_D.mixed_precision,
                   help="bf16 (CPU or GPU) or fp16 (GPU); Gram matrices and losses stay float32 "
                        f"(default {_D.mixed_precision})")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format for the network")
    p.add_argument("--device", help="cpu, cuda, cuda:N, mps (default: the best available)")
    p.add_argument("--workers", type=int, default=_D.workers, help=f"data loader processes (default {_D.workers})")
    p.add_argument("--checkpoint-every", type=int, default=_D.checkpoint_every,
                   help=f"steps between checkpoints (default {_D.checkpoint_every})")
    p.add_argument("--sample-every", type=int, default=_D.sample_every,
                   help=f"steps between loss-curve and sample-grid PNGs (default {_D.sample_every})")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                   help="continue from NET.ckpt.safetensors (or from CKPT); its settings, paintings, prompt, "
                        "backbone and photos must be this command's (--iterations may grow)")
    p.add_argument("--resume-with-changes", dest="allow_changes", action="store_true",
                   help="with --resume: continue although settings changed; the card records what and when")
    p.set_defaults(func=run)


def config_from(args: argparse.Namespace) -> TrainConfig:
    from guided.cli.gatys import parse_floats

    names = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names and k != "style_weights"}
    blend = parse_floats(args.style_weights, "--style-weights") if args.style_weights else None
    return TrainConfig(**values, style_weights=blend).validate()


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from guided.fast.training import TrainingInterrupted, check_output, train

    config = config_from(args)
    check_output(args.output)
    from guided.io.outputs import Output, check_outputs

    inputs = [*args.styles, args.backbone if args.backbone and Path(args.backbone).is_file() else None]
    check_outputs([Output(Path(args.output), "--output", kind="file")], inputs=inputs)
    if config.style_weights is not None:
        from guided.validate import style_weights

        style_weights(config.style_weights, len(args.styles), name="--style-weights")
    try:
        result = train(args.styles, args.data, args.output, config, resume=args.resume,
                       allow_changes=args.allow_changes, progress=not getattr(args, "quiet", False))
    except TrainingInterrupted as exc:
        print(f"guided: {exc}", file=sys.stderr)
        return 130 if exc.signal_name == "SIGINT" else 143
    from accelerate import PartialState

    if PartialState().is_main_process and result.path is not None:
        final = ", ".join(f"{k} {v:.4g}" for k, v in result.card["final_losses"].items())
        skipped = result.card["data"]["skipped"]
        print(f"wrote {result.path} ({result.card['iterations']} steps, {result.card['training_seconds']:.0f} s; "
              f"final {final}){f'; {skipped} unreadable photo(s) skipped' if skipped else ''}")
        print(f"  see {Path(args.output).name.removesuffix('.safetensors')}.samples.png and .curves.png next to it; "
              f"stylize with: guided fast {result.path} PHOTO -o OUT.png")
    return 0
