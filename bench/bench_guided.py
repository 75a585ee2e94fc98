"""Cost of guidance: whole-call time and peak memory of guided img2img against diffusers' img2img.

Stable Diffusion 1.5's architecture with random weights (guided.testing.sd15_random_components)
and the real guidance architectures with random weights (CLIP ViT-B-32, VGG-19, AutoencoderTiny).
Random weights cost the same arithmetic as trained ones. 256x256, 3 DDIM steps at strength 1.0,
so every step is guided. Configurations are timed round-robin (one call of each per round) so
that drift in machine load hits all of them alike; medians over the rounds.

    .venv/bin/python bench/bench_guided.py --repeats 3            # times, then memory
    .venv/bin/python bench/bench_guided.py --only unguided,fast:all --repeats 1   # a quick look
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TERMS = ("clip_text", "clip_style", "gram", "content", "tv")
ZERO = {t: 0.0 for t in TERMS}


def configs() -> dict[str, dict | None]:
    """name -> guidance weights and mode; None is diffusers' own img2img."""
    from guided import GuidanceConfig

    d = GuidanceConfig()
    out: dict[str, dict | None] = {"diffusers": None, "unguided": dict(ZERO)}
    for mode in ("fast", "full"):
        for term in TERMS:
            out[f"{mode}:{term}"] = {**ZERO, term: getattr(d, term), "mode": mode}
        out[f"{mode}:all"] = {**{t: getattr(d, t) for t in TERMS}, "mode": mode}
    return out


def inputs(size: int):
    shared = ROOT.parent / "shared" / "images"
    if (shared / "rainier.jpg").is_file():
        from guided.imageio import load_image

        photo = load_image(shared / "rainier.jpg").resize((size, size), PIL.Image.LANCZOS)
        painting = load_image(shared / "autumn-oak.jpg").resize((size, size), PIL.Image.LANCZOS)
        return photo, painting, "rainier.jpg + autumn-oak.jpg"
    from guided.demo_assets import demo_photo, painted_style

    return demo_photo().resize((size, size)), painted_style().resize((size, size)), "demo assets"


def build():
    from diffusers import StableDiffusionImg2ImgPipeline

    from guided.testing import bench_guidance_models, sd15_random_components
    from pipelines import GuidedStableDiffusionImg2ImgPipeline

    comps = sd15_random_components(0)
    ours = GuidedStableDiffusionImg2ImgPipeline(**comps)
    ref = StableDiffusionImg2ImgPipeline(**comps, safety_checker=None, feature_extractor=None,
                                         requires_safety_checker=False)
    for p in (ours, ref):
        p.set_progress_bar_config(disable=True)
    return ref, ours, bench_guidance_models(0)


def call(name, weights, ref, ours, models, photo, painting, steps):
    args = dict(prompt="an oil painting of autumn oaks", image=photo, strength=1.0, num_inference_steps=steps,
                generator=torch.Generator().manual_seed(0), output_type="np")
    start = time.perf_counter()
    if weights is None:
        ref(**args)
    else:
        ours(**args, style_image=painting, guidance=weights, guidance_models=models)
    return time.perf_counter() - start


def peak_rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:  # "5" resets VmHWM to the current RSS (Linux)
        fh.write("5")


def one_memory(name: str, size: int, steps: int) -> dict:
    """Run in a fresh process: warm-up call, reset the high-water mark, measured call."""
    ref, ours, models = build()
    photo, painting, _ = inputs(size)
    weights = configs()[name]
    call(name, weights, ref, ours, models, photo, painting, steps)
    base = peak_rss_mb()
    reset_peak()
    rss_before = peak_rss_mb()
    call(name, weights, ref, ours, models, photo, painting, steps)
    return {"name": name, "peak_mb": peak_rss_mb(), "during_call_mb": peak_rss_mb() - rss_before,
            "after_load_peak_mb": base}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--only", help="comma-separated configuration names")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--memory-one", help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    torch.set_grad_enabled(True)
    if args.memory_one:
        print(json.dumps(one_memory(args.memory_one, args.size, args.steps)))
        return

    names = list(configs()) if not args.only else args.only.split(",")
    ref, ours, models = build()
    photo, painting, source = inputs(args.size)
    table = configs()
    call("warm-up", table["unguided"], ref, ours, models, photo, painting, args.steps)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.repeats):
        for n in names:
            times[n].append(call(n, table[n], ref, ours, models, photo, painting, args.steps))
            print(f"round {r + 1}: {n:16s} {times[n][-1]:7.2f} s", file=sys.stderr, flush=True)
    base = statistics.median(times.get("diffusers") or times.get("unguided") or [float("nan")])
    rows = []
    for n in names:
        row = {"name": n, "median_s": statistics.median(times[n]), "runs_s": times[n]}
        row["ratio"] = row["median_s"] / base
        if not args.no_memory:
            out = subprocess.run([sys.executable, __file__, "--memory-one", n, "--size", str(args.size),
                                  "--steps", str(args.steps)], capture_output=True, text=True, check=True)
            row.update({k: v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items() if k != "name"})
        rows.append(row)
    mem_base = next((r.get("peak_mb") for r in rows if r["name"] == "diffusers"), None)
    print(f"\nSD 1.5 architecture, random weights; {args.size}x{args.size}, {args.steps} DDIM steps, strength 1.0; "
          f"inputs: {source}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"median of {args.repeats}\n")
    print("| configuration | median s | × diffusers img2img | peak RSS MB | × diffusers peak | runs s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        peak = r.get("peak_mb")
        mem = f"{peak:.0f}" if peak else "-"
        mem_ratio = f"{peak / mem_base:.2f}" if peak and mem_base else "-"
        runs = ", ".join(f"{t:.2f}" for t in r["runs_s"])
        print(f"| {r['name']} | {r['median_s']:.2f} | {r['ratio']:.2f} | {mem} | {mem_ratio} | {runs} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
