"""Every classic preset on every real photo with every painting, at several sizes: does the objective
fall at every scale, and does the style distance fall well below the photo's own?

    .venv/bin/python bench/gatys_check.py --presets default --sizes 128,256 \
        --backbone ../shared/weights/vgg16-features-imagenet-ft.safetensors --out bench/results/gatys_check_default.md

One row per (preset, photo, painting, size): the objective's first and last value at each scale, the
style distance (VGG Gram distance to the painting, relu1_1..relu5_1) of the output divided by the
photo's, whether a scale stalled, and the optimiser's notes (L-BFGS memory resets, Adam fallbacks).
A row FAILS when a scale's objective did not fall or the ratio is above --max-ratio.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from guided.compare.metrics import Scorer  # noqa: E402
from guided.config import DEFAULT_GRAM_LAYERS  # noqa: E402
from guided.gatys import stylize  # noqa: E402
from guided.gatys.presets import get_preset  # noqa: E402
from guided.io.images import load_image, pil_to_tensor  # noqa: E402
from guided.models.bundle import GuidanceModels  # noqa: E402
from guided.models.vgg import VGGFeatures, resolve_backbone  # noqa: E402

SHARED = ROOT.parent / "shared" / "images"
PHOTOS = ["rainier.jpg", "amber.jpg", "photos/astronaut.png", "photos/chelsea.png", "photos/coffee.png",
          "photos/rocket.jpg"]
PAINTINGS = ["autumn-oak.jpg", "mosaic.jpg"]


def _scales(history: list[dict]) -> list[tuple[str, float, float]]:
    out: list[tuple[str, list[float]]] = []
    for h in history:
        key = "x".join(map(str, h["size"]))
        if not out or out[-1][0] != key:
            out.append((key, []))
        out[-1][1].append(h["total"])
    return [(key, totals[0], totals[-1]) for key, totals in out]


def _view(image, hw):
    """`image` as a tensor of exactly `hw`: the photo is measured at the output's own size."""
    return torch.nn.functional.interpolate(pil_to_tensor(image), size=hw, mode="bilinear", antialias=True,
                                           align_corners=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="default,d2l,d2l-fast")
    ap.add_argument("--sizes", default="128,256")
    ap.add_argument("--backbone", default="vgg19-random", help="for every preset (d2l needs VGG-19 layers)")
    ap.add_argument("--photos", default=",".join(PHOTOS))
    ap.add_argument("--paintings", default=",".join(PAINTINGS))
    ap.add_argument("--max-ratio", type=float, default=0.5, help="style distance of the output / the photo's")
    ap.add_argument("--content-layer", help="replace the presets' content layer (d2l's relu4_4 is VGG-19 only: "
                                            "relu4_3 runs d2l and d2l-fast on the real VGG-16)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True, help="markdown table; a .json beside it holds every row")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net, info = resolve_backbone(args.backbone, seed=0)
    vgg = VGGFeatures(net, info.arch).eval()
    rows = []
    for name in args.presets.split(","):
        preset = get_preset(name)
        if args.content_layer:
            preset = replace(preset, content_layers=(args.content_layer,))
        for photo_name in args.photos.split(","):
            for painting_name in args.paintings.split(","):
                for size in [int(s) for s in args.sizes.split(",")]:
                    photo, painting = SHARED / photo_name, SHARED / painting_name
                    start = time.perf_counter()
                    result = stylize(photo, painting, preset=preset, backbone=args.backbone, size=size, progress=False)
                    seconds = time.perf_counter() - start
                    hw = (result.image.height, result.image.width)
                    style_image = load_image(painting)
                    style_hw = (round(max(hw) * style_image.height / max(style_image.size)),
                                round(max(hw) * style_image.width / max(style_image.size)))
                    scorer = Scorer(GuidanceModels(vgg=vgg), paintings01=[_view(style_image, style_hw)],
                                    gram_layers=DEFAULT_GRAM_LAYERS)
                    before = scorer.score(_view(load_image(photo), hw))["gram"]
                    after = scorer.score(_view(result.image, hw))["gram"]
                    scales = _scales(result.history)
                    falls = all(last < first for _, first, last in scales)
                    ratio = after / before
                    row = {"preset": name, "photo": photo_name, "painting": painting_name, "size": size,
                           "scales": scales, "objective_falls": falls, "style_ratio": ratio,
                           "stalled": result.stalled, "notes": result.notes, "seconds": round(seconds, 1),
                           "ok": falls and not result.stalled and ratio <= args.max_ratio}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    _write(args, rows, info.describe())
    return 0 if all(r["ok"] for r in rows) else 1


def _write(args, rows, backbone: str) -> None:
    layer = f" (content layer {args.content_layer})" if args.content_layer else ""
    lines = [f"backbone: {backbone}{layer}; style ratio = Gram distance to the painting (relu1_1..relu5_1) of the "
             "output / of the photo, both at the output's size, the painting at the same long side; a row "
             "passes when every scale's objective falls, nothing stalled and the "
             f"ratio <= {args.max_ratio}", "",
             "| preset | photo | painting | size | objective per scale (first -> last) | style ratio | "
             "L-BFGS resets / Adam fallbacks | s | ok |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        scales = "; ".join(f"{k}: {a:.4g} -> {b:.4g}" for k, a, b in r["scales"])
        resets = sum("memory reset" in n for n in r["notes"])
        fallbacks = sum("Adam" in n for n in r["notes"])
        lines.append(f"| {r['preset']} | {r['photo']} | {r['painting']} | {r['size']} | {scales} | "
                     f"{r['style_ratio']:.3f} | {resets} / {fallbacks} | {r['seconds']} | "
                     f"{'yes' if r['ok'] else '**NO**'} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
