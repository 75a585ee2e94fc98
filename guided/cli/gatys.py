"""`guided gatys CONTENT STYLE [STYLE ...] -o OUT.png`: classic neural style transfer (Gatys et al.).

Defaults come from the presets in `guided.gatys.presets` and the signature of
`guided.gatys.stylize`; the help text prints them from there.
"""
from __future__ import annotations

import argparse
import inspect
import logging
import sys
from pathlib import Path

from guided.errors import GuidedError
from guided.gatys.presets import INITS, OPTIMIZERS, PRESETS
from guided.io.outputs import Output, check_outputs
from guided.validate import parse_floats, style_weights

logger = logging.getLogger(__name__)
_DEFAULT_PRESET = "default"


def _stylize_default(name: str):
    """A keyword default of `stylize` without importing torch for --help (parsed from its signature)."""
    from guided import gatys

    return inspect.signature(gatys.stylize).parameters[name].default


def _per_preset(field: str) -> str:
    return ", ".join(f"{name} {getattr(p, field)}" for name, p in PRESETS.items())


def parse_size(text: str) -> int | tuple[int, int]:
    """'512' (long side) or '300x450' / '300,450' (h x w)."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = [int(v) for v in parts]
    except ValueError:
        raise GuidedError(f"`--size` must be a long side like 512 or HxW like 300x450, got {text!r}") from None
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return (values[0], values[1])
    raise GuidedError(f"`--size` must be a long side like 512 or HxW like 300x450, got {text!r}")


def add_parser(sub) -> None:
    d = PRESETS[_DEFAULT_PRESET]
    p = sub.add_parser(
        "gatys", help="classic neural style transfer (Gatys et al.; Dive into Deep Learning §14.12)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Paint CONTENT in the style of one or more STYLE images by optimising the image itself "
                    "against VGG content, Gram style and total-variation losses.\n\npresets:\n"
                    + "\n".join(f"  {name:9s} {pr.description}" for name, pr in PRESETS.items()))
    p.add_argument("content", metavar="CONTENT", help="the photo")
    p.add_argument("styles", nargs="+", metavar="STYLE", help="style image(s); several are blended by --style-weights")
    p.add_argument("-o", "--output", required=True, metavar="OUT.png", help="output image; a PNG keeps the manifest")
    p.add_argument("--preset", default=_DEFAULT_PRESET,
                   help=f"one of {', '.join(PRESETS)} (default {_DEFAULT_PRESET}); every option below left "
                        "unset takes the preset's value")
    p.add_argument("--size", help="long side in px (e.g. 512) or HxW (e.g. 300x450); per preset: "
                                  f"{_per_preset('size')}")
    p.add_argument("--iterations", type=int, help=f"optimisation steps over all scales; per preset: "
                                                  f"{_per_preset('iterations')}")
    p.add_argument("--optimizer", help=f"{' or '.join(OPTIMIZERS)}; per preset: {_per_preset('optimizer')}")
    p.add_argument("--style-weights", metavar="W,W,...", help="blend weights of the STYLE images (default equal)")
    p.add_argument("--preserve-color", action=argparse.BooleanOptionalAction, default=None,
                   help=f"luminance-only transfer: keep the photo's colours (default {d.preserve_color})")
    p.add_argument("--backbone", help="vgg19, vgg16 (torchvision ImageNet weights from the torch hub cache), "
                                      "vgg19-random / vgg16-random (explicitly RANDOM, for tests), or a local "
                                      ".safetensors/.pth torchvision state dict "
                                      "(default: $GUIDED_VGG_WEIGHTS, else vgg19)")
    p.add_argument("--seed", type=int, default=None, help="seed of noise init and random backbones (default 0)")
    p.add_argument("--device", help="cpu, cuda, cuda:N, mps (default: the best available)")
    p.add_argument("--mixed-precision", help=f"no, bf16 (CPU or GPU) or fp16 (GPU only); losses stay float32; "
                                             f"per preset: {_per_preset('mixed_precision')}")
    p.add_argument("--init", help=f"{' | '.join(INITS)}; per preset: {_per_preset('init')}")
    p.add_argument("--multiscale", type=int, help="number of coarse-to-fine scales; per preset: "
                                                  f"{_per_preset('multiscale')}")
    p.add_argument("--style-scale", type=float, help="style image long side relative to the content's "
                                                     f"(none: resized to the content's exact size); per preset: "
                                                     f"{_per_preset('style_scale')}")
    p.add_argument("--style-weight", type=float, help="weight of the style loss; per preset: "
                                                      f"{_per_preset('style_weight')}")
    p.add_argument("--content-weight", type=float, help=f"weight of the content loss; per preset: "
                                                        f"{_per_preset('content_weight')}")
    p.add_argument("--tv-weight", type=float, help=f"weight of total variation; per preset: {_per_preset('tv_weight')}")
    p.add_argument("--layer-weights", metavar="W,W,...", help="one multiplier per style layer "
                                                              f"{', '.join(d.style_layers)} (default 1 each)")
    p.add_argument("--save-every", type=int, metavar="N", help="also save the image every N iterations next to OUT")
    p.add_argument("--loss-curve", metavar="PATH.png", help="write the loss curves (log scale) to this PNG")
    p.set_defaults(func=run)


def _file_or_none(value: str | None) -> str | None:
    """A model option's value when it names a local file (an input a run must not overwrite)."""
    return value if value and Path(value).expanduser().is_file() else None


def run(args: argparse.Namespace) -> int:
    output = Path(args.output)
    if args.preset not in PRESETS:
        raise GuidedError(f"`--preset` must be one of {', '.join(PRESETS)}, got {args.preset!r}")
    if args.iterations is not None and args.iterations < 0:
        raise GuidedError(f"`--iterations` must be >= 0, got {args.iterations}")
    size = parse_size(args.size) if args.size is not None else None
    blend = parse_floats(args.style_weights, "--style-weights") if args.style_weights else None
    if blend is not None:
        style_weights(blend, len(args.styles), name="--style-weights")
    layer_weights = parse_floats(args.layer_weights, "--layer-weights") if args.layer_weights else None
    for path in [args.content, *args.styles]:
        if not Path(path).is_file():
            raise GuidedError(f"input image '{path}' does not exist")
    save_dir = output.with_name(output.stem + "_steps") if args.save_every else None
    long_side = max(size) if isinstance(size, tuple) else (size or PRESETS[args.preset].long_side())
    outputs = [Output(output, "--output", long_side=long_side)]
    if args.loss_curve:
        outputs.append(Output(Path(args.loss_curve), "--loss-curve", kind="file", suffixes=(".png",)))
    if save_dir is not None:
        outputs.append(Output(save_dir, "--save-every", kind="folder"))
    check_outputs(outputs, inputs=[args.content, *args.styles, _file_or_none(args.backbone)])

    from guided.gatys.transfer import stylize

    seed = args.seed if args.seed is not None else _stylize_default("seed")
    result = stylize(args.content, args.styles, preset=args.preset, backbone=args.backbone, size=size,
                     iterations=args.iterations, optimizer=args.optimizer, mixed_precision=args.mixed_precision,
                     seed=seed, device=args.device, style_weights=blend, preserve_color=args.preserve_color,
                     init=args.init, multiscale=args.multiscale, layer_weights=layer_weights,
                     style_scale=args.style_scale, content_weight=args.content_weight,
                     style_weight=args.style_weight, tv_weight=args.tv_weight, save_every=args.save_every,
                     save_dir=save_dir, progress=not getattr(args, "quiet", False))
    path = result.save(output)
    if args.loss_curve and result.history:
        from guided.io.plots import plot_history

        plot_history(result.history, args.loss_curve, title=f"gatys {args.preset}")
    last = result.history[-1] if result.history else {}
    print(f"wrote {path} ({result.backbone_info.describe()}; {len(result.history)} iterations, "
          f"{result.seconds:.1f} s; final loss {last.get('total', float('nan')):.4g})")
    if result.stopped_early:
        print(f"guided: warning: stopped early: {result.stop_reason}", file=sys.stderr)
    for note in result.notes:
        if not result.stalled or "did not fall" not in note:  # those were already warned about
            logger.info("gatys: %s", note)
    return 0
