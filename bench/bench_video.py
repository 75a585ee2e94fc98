"""Benchmark of `guided video` (not a test): flicker with and without --temporal, style kept, throughput.

    .venv/bin/python bench/bench_video.py --net mosaic.safetensors [--net-temporal mosaic-t.safetensors]
    .venv/bin/python bench/bench_video.py --net mosaic.safetensors --photo photos/rocket.jpg --no-speed

1. A real clip: a slow pan and zoom over ../shared/images/rainier.jpg (or `--photo`, relative to
   ../shared/images), 640x360, 24 fps, rendered with Lanczos resampling and encoded by PyAV (H.264, CRF 18).
2. Quality, side by side in one run: the same network with --temporal 0 (plain per-frame) and each
   value of --temporals (output blending) and --feature-temporals (feature blending); the
   --temporal-weight network (`--net-temporal`) plain and with each --net-temporal-temporals;
   Lai et al.'s warping error and the per-frame style distance to the painting (Gram distance on
   the real VGG-16 beside the project, at the frames' 640 px).
3. Throughput at 640x360 with the network and flow, no style meter: frames per second and the share of
   time in decode, flow, network, metric, frame saving and the final encode (the run's own clock).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared"
VGG16 = SHARED / "weights" / "vgg16-features-imagenet-ft.safetensors"


def make_clip(path: Path, *, frames: int, width: int = 640, height: int = 360, fps: int = 24,
              photo: str = "rainier.jpg") -> Path:
    """A slow pan (left to right, 15% of the photo) with a 10% zoom-in over `photo` (in ../shared/images)."""
    import av
    from PIL import Image

    photo = Image.open(SHARED / "images" / photo).convert("RGB")
    W, H = photo.size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18"}
        for i in range(frames):
            t = i / max(frames - 1, 1)
            crop_w = W * 0.75 * (1 - 0.10 * t)
            crop_h = crop_w * height / width
            left = W * (0.05 + 0.15 * t)
            top = (H - crop_h) * 0.5
            box = (left, top, left + crop_w, top + crop_h)
            frame = photo.resize((width, height), Image.Resampling.LANCZOS, box=box)
            video = av.VideoFrame.from_ndarray(np.asarray(frame), format="rgb24")
            video.pts = i
            for packet in stream.encode(video):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def run_one(clip: Path, out: Path, net: Path, temporal: float, styles: tuple, backbone, blend: str = "output") -> dict:
    from guided.video.methods import FastMethod
    from guided.video.run import VideoConfig, stylize_video

    result = stylize_video(clip, out, FastMethod(net, temporal=temporal, blend=blend),
                           VideoConfig(styles=styles, backbone=backbone, progress=False))
    timings = result.metadata["timings"]
    return {"net": net.name, "blend": blend, "temporal": temporal, "frames": result.frames,
            "warping_error": result.warping_error,
            "style_distance": result.style_distance, "seconds": round(result.seconds, 2),
            "frames_per_second": timings["frames_per_second"], "share": timings["share"],
            "stage_seconds": timings["seconds"]}


def _values(text: str) -> list[float]:
    """`"0.3,0.5"` -> [0.3, 0.5]; an empty string -> []."""
    return [float(v) for v in text.split(",") if v.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", required=True, type=Path, help="the fast network (.safetensors)")
    parser.add_argument("--net-temporal", type=Path, help="a network trained with --temporal-weight (one more row)")
    parser.add_argument("--style", type=Path, default=SHARED / "images" / "mosaic.jpg", help="its painting")
    parser.add_argument("--temporals", default="0.3,0.5,0.7", help="output-blending --temporal values besides 0")
    parser.add_argument("--feature-temporals", default="", help="feature-blending --temporal values (--blend features)")
    parser.add_argument("--net-temporal-temporals", default="0.3",
                        help="output-blending values for --net-temporal besides 0")
    parser.add_argument("--photo", default="rainier.jpg", help="the clip's photo, relative to ../shared/images")
    parser.add_argument("--frames", type=int, default=48, help="frames of the quality clip (24 fps)")
    parser.add_argument("--speed-frames", type=int, default=48, help="frames of the throughput run")
    parser.add_argument("--no-speed", action="store_true", help="quality only: skip the throughput run")
    parser.add_argument("--no-quality", action="store_true", help="throughput only: skip the quality runs")
    parser.add_argument("--speed-blend", default="output", help="the throughput run's --blend")
    parser.add_argument("--speed-temporal", type=float, default=0.5, help="the throughput run's --temporal")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--work", type=Path, default=Path("out/bench_video"))
    parser.add_argument("--out", type=Path, default=Path("out/bench_video/results.json"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    clip = make_clip(args.work / f"{Path(args.photo).stem}_pan.mp4", frames=args.frames, photo=args.photo)
    rows = []
    # 1. Quality: plain per-frame, then each setting, the same clip, one after the other.
    runs = [] if args.no_quality else [(args.net, "output", t) for t in [0.0, *_values(args.temporals)]]
    runs += [(args.net, "features", t) for t in _values(args.feature_temporals) if not args.no_quality]
    if args.net_temporal and not args.no_quality:
        runs += [(args.net_temporal, "output", t) for t in [0.0, *_values(args.net_temporal_temporals)]]
    for net, blend, temporal in runs:
        out = args.work / f"{Path(args.photo).stem}_{net.stem}_{blend}_t{temporal:g}.mp4"
        row = run_one(clip, out, net, temporal, (args.style,), VGG16, blend)
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("net", "blend", "temporal", "warping_error", "style_distance")}),
              flush=True)
    # 2. Throughput: no style meter; the clip at 640x360.
    speed = None
    if not args.no_speed:
        speed_clip = clip if args.speed_frames == args.frames else make_clip(
            args.work / "speed.mp4", frames=args.speed_frames, photo=args.photo)
        speed = run_one(speed_clip, args.work / "speed.mp4.out.mp4", args.net, args.speed_temporal, (), None,
                        args.speed_blend)
    report = {"clip": {"source": f"{args.photo} pan+zoom", "size": "640x360", "fps": 24, "frames": args.frames},
              "threads": args.threads, "load_average": os.getloadavg(), "cpus": os.cpu_count(),
              "quality": rows, "throughput": speed, "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nclip: {args.photo}, {args.frames} frames; 'vs plain': vs {args.net.name} per frame (--temporal 0)")
    if rows:
        print("| network | blend | --temporal | warping error | vs plain | style distance | vs plain |")
        print("|---|---|---|---|---|---|---|")
    for row in rows:
        ref = rows[0]  # the --net network, plain per-frame: what every row is compared with, as the issue asks
        print(f"| {row['net']} | {row['blend']} | {row['temporal']:g} | {row['warping_error']:.5f} | "
              f"{row['warping_error'] / ref['warping_error'] - 1:+.0%} | {row['style_distance']:.4g} | "
              f"{row['style_distance'] / ref['style_distance'] - 1:+.1%} |")
    if speed is not None:
        share = ", ".join(f"{k} {v:.0%}" for k, v in speed["share"].items())
        print(f"\nthroughput 640x360 (--blend {args.speed_blend}, --temporal {args.speed_temporal:g}): "
              f"{speed['frames_per_second']:.2f} frames/s ({share}); threads {args.threads}, "
              f"load average {report['load_average'][0]:.1f} on {report['cpus']} CPUs")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
