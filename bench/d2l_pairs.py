"""Does a classic preset reach the chapter's objective on pairs it was not tuned on? (not a test)

For each content/style pair: the chapter's run (`d2l`: fp32 Adam lr 0.3, StepLR(50, 0.8), 500
iterations) gives the target, the d2l objective of its clamped output; then a candidate preset runs
and every iterate at the final size is scored the same way. Reported per pair: the first iteration
and the time at which the candidate is at or below the target, its final score, and the ratio of
times. The chapter's runs are deterministic (same random VGG-19, seed 0), so their scores are
cached in `--cache` and reused; with `--time-reference N` their time is measured in the same run
as the candidate's, from N of its iterations scaled to 500 (medians of `--repeats`).

    .venv/bin/python bench/d2l_pairs.py --pairs tune --preset d2l-fast
    .venv/bin/python bench/d2l_pairs.py --pairs all --preset d2l-fast --time-reference 30 --repeats 3

Pairs: the real photos of ../shared/images (+ photos/) crossed with both paintings, plus generated
ones (guided.demo.assets). `tune` is the subset the preset may be chosen on; `check` the held-out rest.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guided.gatys import GatysObjective, stylize  # noqa: E402
from guided.gatys.images import preprocess  # noqa: E402
from guided.gatys.presets import D2L, get_preset  # noqa: E402
from guided.io.images import load_image  # noqa: E402
from guided.models.vgg import VGGFeatures, resolve_backbone  # noqa: E402
from guided.models.vgg import imagenet_denormalize as denormalize  # noqa: E402
from guided.models.vgg import imagenet_normalize as normalize  # noqa: E402

SHARED = ROOT.parent / "shared" / "images"
PHOTOS = ["rainier.jpg", "amber.jpg", "photos/astronaut.png", "photos/chelsea.png", "photos/coffee.png",
          "photos/rocket.jpg", "generated:photo"]
PAINTINGS = ["autumn-oak.jpg", "mosaic.jpg", "generated:painting"]
# Chosen on these; never on the others (the chapter's own pair is among them, as it was before).
TUNE = [("rainier.jpg", "autumn-oak.jpg"), ("photos/chelsea.png", "mosaic.jpg"),
        ("photos/coffee.png", "autumn-oak.jpg"), ("generated:photo", "mosaic.jpg")]
CHECK = [("amber.jpg", "mosaic.jpg"), ("photos/astronaut.png", "autumn-oak.jpg"),
         ("photos/rocket.jpg", "mosaic.jpg"), ("rainier.jpg", "generated:painting")]


def image(name: str):
    if name == "generated:photo":
        from guided.demo.assets import demo_photo

        return demo_photo()
    if name == "generated:painting":
        from guided.demo.assets import painted_style

        return painted_style()
    return load_image(SHARED / name, what=name)


class Scorer:
    """The d2l objective (fp32) of an output: de-normalised, clamped to [0, 1], re-normalised."""

    def __init__(self, vgg, content, style, shape):
        self.objective = GatysObjective(VGGFeatures(vgg, "vgg19"), D2L)
        self.objective.set_targets(preprocess(content, shape), [preprocess(style, shape)], [1.0],
                                   contextlib.nullcontext)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> float:
        return float(self.objective(normalize(denormalize(x.float())), contextlib.nullcontext)["total"])


def run(content, style, vgg, preset, shape) -> tuple[object, dict[int, torch.Tensor], list[float]]:
    """One run; every iterate at the final size (normalised space) and the time at the end of each step."""
    images: dict[int, torch.Tensor] = {}
    stamps: list[float] = []
    start = time.perf_counter()

    def keep(i, x01, losses):
        stamps.append(time.perf_counter() - start)
        if tuple(x01.shape[-2:]) == tuple(shape):
            images[i] = normalize(x01.detach().clone())

    res = stylize(content, style, preset=preset, backbone=vgg, size=shape, progress=False, seed=0, callback=keep)
    return res, images, stamps


def reference(pair, vgg, shape, cache: dict) -> dict:
    key = f"{pair[0]}|{pair[1]}|{shape[0]}x{shape[1]}"
    if key not in cache:
        content, style = image(pair[0]), image(pair[1])
        res, _, stamps = run(content, style, vgg, D2L, shape)
        cache[key] = {"target": Scorer(vgg, content, style, shape)(res.tensor), "seconds": stamps[-1]}
    return cache[key]


def candidate(pair, vgg, preset, shape, target: float) -> dict:
    content, style = image(pair[0]), image(pair[1])
    score = Scorer(vgg, content, style, shape)
    res, images, stamps = run(content, style, vgg, preset, shape)
    reached = next((i for i in sorted(images) if score(images[i]) <= target), None)
    return {"reached_at": reached, "seconds_to_target": stamps[reached - 1] if reached else None,
            "seconds": stamps[-1], "final": score(res.tensor), "iterations": len(stamps),
            "notes": res.notes}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", choices=["tune", "check", "all"], default="tune")
    ap.add_argument("--preset", default="d2l-fast", help="preset name, or a JSON object of overrides of d2l-fast")
    ap.add_argument("--shape", default="150x225", help="HxW: the issue's 150x225 (the chapter's 300x450 is 4x dearer)")
    ap.add_argument("--cache", type=Path, default=ROOT / "bench" / "results" / "d2l_references.json")
    ap.add_argument("--time-reference", type=int, default=0, metavar="N",
                    help="time the chapter's run in this process: N of its iterations, scaled to its 500 (every "
                         "iteration costs the same: one forward and backward pass); 0: the cached time")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", help="comma-separated indices into the chosen pairs (to split the work)")
    ap.add_argument("--references-only", action="store_true", help="compute and cache the chapter's runs, nothing else")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    shape = tuple(int(v) for v in args.shape.split("x"))
    if args.preset.startswith("{"):
        changes = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(args.preset).items()}
        preset = replace(get_preset("d2l-fast"), **changes)
    else:
        preset = get_preset(args.preset)
    pairs = {"tune": TUNE, "check": CHECK, "all": TUNE + CHECK}[args.pairs]
    if args.only:
        pairs = [pairs[int(i)] for i in args.only.split(",")]
    cache = json.loads(args.cache.read_text()) if args.cache.is_file() else {}
    vgg, _ = resolve_backbone("vgg19-random", seed=0)
    rows = []
    for pair in pairs:
        ref = reference(pair, vgg, shape, cache)
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        args.cache.write_text(json.dumps(cache, indent=1))
        if args.references_only:
            print(f"{pair[0]} + {pair[1]}: chapter's loss {ref['target']:.5f} ({ref['seconds']:.0f} s)", flush=True)
            continue
        ref_times, runs = [], []
        for _ in range(args.repeats):
            if args.time_reference:
                stamps = run(image(pair[0]), image(pair[1]), vgg, replace(D2L, iterations=args.time_reference),
                             shape)[2]
                per = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
                ref_times.append(stamps[0] + per * (D2L.iterations - 1))
            runs.append(candidate(pair, vgg, preset, shape, ref["target"]))
        reached = [r["seconds_to_target"] for r in runs]
        row = {"pair": pair, "target": ref["target"], **runs[-1],
               "seconds_to_target": statistics.median(reached) if None not in reached else None,
               "reference_seconds": statistics.median(ref_times) if ref_times else ref["seconds"]}
        row["ratio"] = row["seconds_to_target"] / row["reference_seconds"] if row["seconds_to_target"] else None
        rows.append(row)
        when = "never" if row["seconds_to_target"] is None else f"{row['seconds_to_target']:.1f} s"
        print(f"{pair[0]} + {pair[1]}: target {ref['target']:.5f}, final {row['final']:.5f} "
              f"({100 * (row['final'] / ref['target'] - 1):+.1f}%), reached at iteration {row['reached_at']} "
              f"({when} of {row['reference_seconds']:.1f} s: ratio {row['ratio'] and round(row['ratio'], 3)}) "
              f"{row['notes']}", flush=True)
    if args.references_only:
        return 0
    ratios = [r["ratio"] for r in rows]
    print(f"preset {preset.name}: reached on {sum(r is not None for r in ratios)}/{len(rows)} pairs; "
          f"worst ratio {max(ratios) if None not in ratios else 'n/a'}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
