"""`guided video IN -o OUT.mp4 --method fast|gatys|stylize`: stylize a clip frame by frame, kept
consistent along the optical flow, with the warping error measured and recorded.

Defaults come from `guided.video` (`VideoConfig`, `DEFAULT_TEMPORAL`) and each method's own
defaults; PyAV and OpenCV are imported only when the command runs (the `video` extra).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from guided.errors import GuidedError

logger = logging.getLogger(__name__)

METHODS = ("fast", "gatys", "stylize")
#: --temporal's default, a trade-off measured on the bench clip (bench/README.md, "Video"): 0.3 lowers the
#: warping error by 59% and raises the style distance by 18% (blending averages texture away); 0.5 removes
#: 81% of the flicker at +38%, 0.7 93% at +71%.
DEFAULT_TEMPORAL = 0.3
#: Where --method fast blends (guided.video.methods.BLENDS): see bench/README.md, "Video".
DEFAULT_BLEND = "output"
#: Kept here, not imported from guided.video.methods, so that `guided video --help` imports no numpy/torch.
BLENDS = ("output", "features")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "video", help="stylize a video without flicker (optical-flow consistency; fast, gatys or stylize)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Stylize IN (a video file, an animated GIF or a folder of frames) into an H.264 MP4 with the "
                    "input's frame rate, duration and audio. Each frame is kept consistent with the previous output "
                    "along DIS optical flow; the warping error (Lai et al.) is printed and recorded in OUT.json.\n\n"
                    "methods:\n  fast     a feed-forward network (--net), the warped previous output blended in\n"
                    "  gatys    classic style transfer per frame (STYLE images via --style), started from the warped\n"
                    "           previous result with a temporal loss (Ruder et al.)\n"
                    "  stylize  guided diffusion img2img, one seed, started from the warped previous result:\n"
                    "           seconds per frame on a GPU, minutes on a CPU (meant for GPUs)\n\n"
                    "A run keeps its finished frames in .OUT.mp4.work/ beside OUT; rerunning the same command after "
                    "Ctrl-C, SIGTERM or a crash continues where it stopped. Needs: pip install guided[video]")
    p.add_argument("input", metavar="IN", help="video file, GIF, or folder of frames (sorted by name)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.mp4", help="the stylized video (H.264, yuv420p)")
    p.add_argument("--method", choices=METHODS, default="fast", help="how frames are stylized (default fast)")
    p.add_argument("--temporal", type=float, default=DEFAULT_TEMPORAL,
                   help=f"strength of the consistency, 0..1; 0 = plain per-frame (default {DEFAULT_TEMPORAL})")
    p.add_argument("--size", type=int, help="output long side in px (default: the input's, rounded down to even)")
    p.add_argument("--fps", type=float, help="resample to this frame rate (a folder of frames: its rate, default 25)")
    p.add_argument("--start", type=float, default=0.0, help="start this many seconds into IN (default 0)")
    p.add_argument("--end", type=float, help="stop this many seconds into IN (default: its end)")
    p.add_argument("--max-frames", type=int, help="at most this many frames")
    p.add_argument("--style", nargs="+", default=[], metavar="STYLE",
                   help="style image(s): gatys paints with them; every method reports the per-frame style distance")
    p.add_argument("--backbone", help="VGG for gatys and the style distance (as `guided gatys --backbone`)")
    p.add_argument("--device", help="cpu, cuda, cuda:N, mps (default: the best available)")
    p.add_argument("--mixed-precision", help="no, bf16 or fp16 (GPU)")
    f = p.add_argument_group("fast")
    f.add_argument("--net", metavar="NET",
                   help="a network from `guided train` (.safetensors) or `guided export` (.onnx)")
    f.add_argument("--blend", choices=BLENDS, default=DEFAULT_BLEND,
                   help="fast: blend the warped previous frame into the output pixels, or into the network's "
                        f"features before its decoder (PyTorch networks; default {DEFAULT_BLEND})")
    g = p.add_argument_group("gatys")
    g.add_argument("--preset", help="gatys: a classic preset (default 'default'); stylize: a style preset")
    g.add_argument("--iterations", type=int, help="gatys: iterations of the first frame (default: the preset's)")
    g.add_argument("--frame-iterations", type=int,
                   help="gatys: iterations of every later frame, started from the warped previous result "
                        "(default: a fifth of --iterations)")
    s = p.add_argument_group("stylize")
    s.add_argument("--prompt", help="stylize: what the result should look like")
    s.add_argument("--strength", type=float, help="stylize: how far from the frame, (0, 1]")
    s.add_argument("--steps", type=int, help="stylize: scheduler steps before strength")
    s.add_argument("--seed", type=int, default=0, help="the one seed of every frame (default 0)")
    s.add_argument("--tiny", action="store_true",
                   help="stylize: tiny RANDOM models (a smoke test)")
    p.set_defaults(func=run)


def _method(args: argparse.Namespace):
    """The method object for `args`, every option checked (no model loaded yet)."""
    from guided.video.run import check_temporal

    temporal = check_temporal(args.temporal, "--temporal")
    misplaced = {"fast": ("iterations", "frame_iterations", "prompt", "strength", "steps"),
                 "gatys": ("net", "prompt", "strength", "steps"),
                 "stylize": ("net", "iterations", "frame_iterations")}[args.method]
    for name in misplaced:
        if getattr(args, name) is not None:
            raise GuidedError(f"`--{name.replace('_', '-')}` does not apply to --method {args.method}")
    if args.method == "fast":
        from guided.video.methods import FastMethod

        if not args.net:
            raise GuidedError("--method fast needs `--net NET` (a network from `guided train`)")
        if not Path(args.net).is_file():
            raise GuidedError(f"`--net` '{args.net}' does not exist")
        return FastMethod(args.net, temporal=temporal, blend=args.blend, device=args.device,
                          mixed_precision=args.mixed_precision)
    if args.method == "gatys":
        from guided.video.gatys_method import GatysMethod

        if not args.style:
            raise GuidedError("--method gatys needs `--style STYLE` (the painting(s) to paint with)")
        return GatysMethod(args.style, temporal=temporal, preset=args.preset or "default", backbone=args.backbone,
                           iterations=args.iterations, frame_iterations=args.frame_iterations, seed=args.seed,
                           device=args.device, mixed_precision=args.mixed_precision)
    from guided.stylize import check_denoising_steps
    from guided.validate import diffusion_options
    from guided.video.methods import StylizeMethod

    if not args.prompt and not args.preset:
        raise GuidedError("--method stylize needs `--prompt` or `--preset`")
    diffusion_options(cli=True, strength=args.strength, steps=args.steps)
    check_denoising_steps(args.preset, strength=args.strength, steps=args.steps, cli=True)
    run_options = {k: v for k, v in (("prompt", args.prompt), ("preset", args.preset), ("strength", args.strength),
                                     ("steps", args.steps), ("style", args.style)) if v}
    load_options = {k: v for k, v in (("device", args.device), ("mixed_precision", args.mixed_precision)) if v}
    return StylizeMethod(temporal=temporal, seed=args.seed, tiny=args.tiny, load_options=load_options,
                         run_options=run_options)


def _need_extra() -> None:
    missing = []
    for module, package in (("av", "av"), ("cv2", "opencv-python-headless")):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise GuidedError(f"`guided video` needs {' and '.join(missing)}: pip install 'guided[video]'")


def run(args: argparse.Namespace) -> int:
    from guided.io.outputs import Output, check_outputs
    from guided.video.run import VideoConfig

    config = VideoConfig(size=args.size, fps=args.fps, start=args.start, end=args.end, max_frames=args.max_frames,
                         styles=tuple(args.style),
                         backbone=args.backbone, progress=not getattr(args, "quiet", False))
    config.check(cli=True)
    method = _method(args)
    check_outputs([Output(Path(args.output), "--output", kind="file", suffixes=(".mp4",))],
                  inputs=[args.input, args.net, *args.style])
    _need_extra()

    from guided.video.run import VideoInterrupted, stylize_video

    try:
        result = stylize_video(args.input, args.output, method, config)
    except VideoInterrupted as stop:
        return 128 + stop.signum  # 130 for Ctrl-C, 143 for SIGTERM; the log said how to continue
    timings = result.metadata["timings"]
    shares = ", ".join(f"{k} {v:.0%}" for k, v in timings["share"].items() if v >= 0.005)
    error = f"{result.warping_error:.5f}" if result.warping_error is not None else "n/a (one frame)"
    style = f"; style distance {result.style_distance:.4g}" if result.style_distance is not None else ""
    resumed = f", {result.resumed} from an earlier run" if result.resumed else ""
    print(f"wrote {result.path} ({result.frames} frames{resumed}, {result.seconds:.1f} s; "
          f"{timings['frames_per_second'] or 0:.2f} frames/s: {shares})")
    print(f"warping error {error} (--temporal {method.temporal:g}){style}", file=sys.stdout)
    return 0
