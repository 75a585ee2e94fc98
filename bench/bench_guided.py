"""Cost of guidance: whole-call time and peak memory of guided img2img against diffusers' img2img.

Stable Diffusion 1.5's architecture with random weights (guided.testing.sd15_random_components;
`--arch sdxl`: SDXL base's, guided.testing.sdxl_random_components, against diffusers'
StableDiffusionXLImg2ImgPipeline, DDIM as for SD) and the real guidance architectures with
random weights (CLIP ViT-B-32, VGG-19, AutoencoderTiny: TAESD and TAESDXL share one architecture).
Random weights cost the same arithmetic as trained ones. 256x256, 3 DDIM steps at strength 1.0,
so every step is guided. Configurations are timed round-robin (one call of each per round) so
that drift in machine load hits all of them alike; medians over the rounds. Peak memory is measured
per configuration in a fresh process (memory freed by one configuration stays in the allocator and
would hide the next one's peak): models built, the resident high-water mark (VmHWM) reset through
/proc/self/clear_refs, one call; reported with the models (as a user sees it) and as growth during
the call.

    .venv/bin/python bench/bench_guided.py --repeats 3
    .venv/bin/python bench/bench_guided.py --only unguided,fast:all --repeats 1   # a quick look
    .venv/bin/python bench/bench_guided.py --arch sdxl --size 512 --repeats 1 --only diffusers,unguided,fast:all \
        --memory ''   # SDXL: ~14 GB of float32 weights
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import PIL.Image
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from guided.constants import GUIDANCE_TERMS  # noqa: E402

ZERO = {t: 0.0 for t in GUIDANCE_TERMS}


def configs() -> dict[str, dict | None]:
    """name -> guidance weights and mode; None is diffusers' own img2img."""
    from guided import GuidanceConfig

    d = GuidanceConfig()
    out: dict[str, dict | None] = {"diffusers": None, "unguided": dict(ZERO)}
    for mode in ("fast", "full"):
        for term in GUIDANCE_TERMS:
            out[f"{mode}:{term}"] = {**ZERO, term: getattr(d, term), "mode": mode}
        out[f"{mode}:all"] = {**{t: getattr(d, t) for t in GUIDANCE_TERMS}, "mode": mode}
    # The default measures every term's gradient scale on every `norm_every`-th guided step only;
    # this row measures it on every step (the exact, pre-cache cost).
    out["fast:all:norm_every=1"] = {**out["fast:all"], "norm_every": 1}
    # Full mode decodes through the tiny decoder where there is one; this row through the full VAE.
    out["full:all:vae"] = {**out["full:all"], "fast_decoder": "vae-lowres"}
    # `mixed_precision="auto"` runs the decoder and VGG in bf16 where the device has native bf16;
    # these rows keep every guided step in float32 (what "auto" gives on other machines).
    out["fast:all:fp32"] = {**out["fast:all"], "mixed_precision": "no"}
    out["full:all:fp32"] = {**out["full:all"], "mixed_precision": "no"}
    # Targets (prompt, painting, photo) are kept across calls with the same models; this row forgets
    # them before each call: the cost of a first call, or of a new prompt, painting and photo each time.
    out["fast:all:cold"] = {**out["fast:all"], "cold": True}
    return out


def inputs(size: int):
    shared = ROOT.parent / "shared" / "images"
    if (shared / "rainier.jpg").is_file():
        from guided.io.images import load_image

        photo = load_image(shared / "rainier.jpg").resize((size, size), PIL.Image.LANCZOS)
        painting = load_image(shared / "autumn-oak.jpg").resize((size, size), PIL.Image.LANCZOS)
        return photo, painting, "rainier.jpg + autumn-oak.jpg"
    from guided.demo.assets import demo_photo, painted_style

    return demo_photo().resize((size, size)), painted_style().resize((size, size)), "demo assets"


ARCHS = {"sd15": "SD 1.5", "sdxl": "SDXL base"}


def build(arch: str = "sd15"):
    """(diffusers' pipeline, ours, guidance models) on one set of random components, DDIM for both."""
    from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline, StableDiffusionXLImg2ImgPipeline

    from guided.testing import bench_guidance_models, sd15_random_components, sdxl_random_components
    from pipelines import GuidedStableDiffusionImg2ImgPipeline, GuidedStableDiffusionXLImg2ImgPipeline

    if arch == "sdxl":
        comps = sdxl_random_components(0)
        comps["scheduler"] = DDIMScheduler.from_config(comps["scheduler"].config)  # SD's bench runs DDIM
        ours = GuidedStableDiffusionXLImg2ImgPipeline(**comps)
        ref = StableDiffusionXLImg2ImgPipeline(**comps)
    else:
        comps = sd15_random_components(0)
        ours = GuidedStableDiffusionImg2ImgPipeline(**comps)
        ref = StableDiffusionImg2ImgPipeline(**comps, safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)
    for p in (ours, ref):
        p.set_progress_bar_config(disable=True)
    return ref, ours, bench_guidance_models(0)


def call(name, weights, ref, ours, models, photo, painting, steps):
    """Seconds of one whole call, and the process's peak RSS (MB) during it."""
    args = dict(prompt="an oil painting of autumn oaks", image=photo, strength=1.0, num_inference_steps=steps,
                generator=torch.Generator().manual_seed(0), output_type="np")
    reset_peak()
    resident = peak_rss_mb()  # right after the reset the high-water mark is the current RSS
    start = time.perf_counter()
    if weights is None:
        ref(**args)
    else:
        weights = dict(weights)
        if weights.pop("cold", False):
            models.targets.clear()
        ours(**args, style_image=painting, guidance=weights, guidance_models=models)
    return time.perf_counter() - start, peak_rss_mb(), peak_rss_mb() - resident


def peak_rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:  # "5" resets VmHWM to the current RSS (Linux)
        fh.write("5")


def memory_in_fresh_process(name: str, size: int, steps: int, arch: str) -> dict:
    """Peak RSS of one call in a new process: models built, high-water mark reset, one call."""
    code = (f"import sys, json; sys.argv=['x']; sys.path.insert(0, {str(ROOT)!r}); import torch; "
            f"torch.set_grad_enabled(True); import bench.bench_guided as b; "
            f"ref, ours, models = b.build({arch!r}); photo, painting, _ = b.inputs({size}); "
            f"s, peak, extra = b.call({name!r}, b.configs()[{name!r}], ref, ours, models, photo, painting, {steps}); "
            f"print(json.dumps({{'peak_mb': peak, 'extra_mb': extra}}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=list(ARCHS), default="sd15", help="the diffusion model's architecture")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--only", help="comma-separated configuration names")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--memory", default="diffusers,unguided,fast:all,full:all",
                    help="configurations whose peak memory is measured, each in a fresh process ('' for none)")
    args = ap.parse_args()
    torch.set_grad_enabled(True)
    names = list(configs()) if not args.only else args.only.split(",")
    built = time.perf_counter()
    ref, ours, models = build(args.arch)
    print(f"built {ARCHS[args.arch]} in {time.perf_counter() - built:.0f} s", file=sys.stderr, flush=True)
    photo, painting, source = inputs(args.size)
    table = configs()
    call("warm-up", table["unguided"], ref, ours, models, photo, painting, args.steps)
    times: dict[str, list[float]] = {n: [] for n in names}
    peaks: dict[str, float] = {}  # in this process: the models, plus what each call adds
    for r in range(args.repeats):
        for n in names:
            seconds, peak, _ = call(n, table[n], ref, ours, models, photo, painting, args.steps)
            times[n].append(seconds)
            peaks[n] = max(peaks.get(n, 0.0), peak)
            print(f"round {r + 1}: {n:16s} {seconds:7.2f} s, peak RSS {peak:.0f} MB", file=sys.stderr, flush=True)
    base = statistics.median(times.get("diffusers") or times.get("unguided") or [float("nan")])
    rows = []
    for n in names:
        rows.append({"name": n, "median_s": statistics.median(times[n]), "runs_s": times[n],
                     "ratio": statistics.median(times[n]) / base, "peak_in_process_mb": peaks[n]})
    names = args.memory.split(",") if args.memory else []
    memory = {n: memory_in_fresh_process(n, args.size, args.steps, args.arch) for n in names}
    for row in rows:
        row.update(memory.get(row["name"], {}))
    print(f"\n{ARCHS[args.arch]} architecture, random weights; {args.size}x{args.size}, {args.steps} DDIM steps, "
          f"strength 1.0, pipeline-default classifier-free guidance; "
          f"inputs: {source}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"median of {args.repeats}\n")
    print("| configuration | median s | × diffusers img2img | runs s | peak RSS MB, in process |")
    print("|---|---|---|---|---|")
    for r in rows:
        runs = ", ".join(f"{t:.2f}" for t in r["runs_s"])
        print(f"| {r['name']} | {r['median_s']:.2f} | {r['ratio']:.2f} | {runs} | {r['peak_in_process_mb']:.0f} |")
    if memory:
        ref_row = memory.get("diffusers") or memory.get("unguided") or next(iter(memory.values()))
        print("\nPeak memory, one call in a fresh process (models built, VmHWM reset, one call):\n")
        print("| configuration | peak RSS MB | × diffusers | growth during the call MB | × diffusers |")
        print("|---|---|---|---|---|")
        for n, m in memory.items():
            print(f"| {n} | {m['peak_mb']:.0f} | {m['peak_mb'] / ref_row['peak_mb']:.2f} | {m['extra_mb']:.0f} | "
                  f"{m['extra_mb'] / max(ref_row['extra_mb'], 1):.2f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
