"""The 512x512 figures a GPU user asks for, in one table (run by bench/gpu_check.sh on a CUDA machine).

- Stable Diffusion 1.5's architecture (random weights), 30 DDIM steps at strength 1: diffusers'
  img2img vs guided `fast` vs guided `full` (all five terms), fp16 and bf16; s per call and ratio.
- The classic `default` preset: seconds per L-BFGS iteration at 512 px (VGG-19, random weights).
- The fast feed-forward network, when `guided.fast` is installed: ms per frame at 512x512 and
  1920x1080, fp16 and bf16.
Medians of --repeats calls after one warm-up call each; CUDA synchronised around every timing.

    python bench/bench_gpu.py --repeats 3 --out gpu_table.md
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up: cuDNN autotuning, lazy allocations
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def diffusion_rows(repeats: int, size: int, steps: int) -> list[tuple[str, str, float, str]]:
    import PIL.Image
    from diffusers import StableDiffusionImg2ImgPipeline

    from guided import GuidanceConfig
    from guided.constants import GUIDANCE_TERMS
    from guided.testing import bench_guidance_models, sd15_random_components
    from pipelines import GuidedStableDiffusionImg2ImgPipeline

    photo = PIL.Image.new("RGB", (size, size), (120, 140, 160))
    painting = PIL.Image.effect_noise((size, size), 60).convert("RGB")
    rows = []
    for dtype_name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        components = sd15_random_components(0)
        ref = StableDiffusionImg2ImgPipeline(**components, safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False).to("cuda", dtype)
        ref.set_progress_bar_config(disable=True)
        pipe = GuidedStableDiffusionImg2ImgPipeline(**components).to("cuda", dtype)
        pipe.set_guidance_models(bench_guidance_models(0))
        pipe.set_progress_bar_config(disable=True)
        common = dict(prompt="an oil painting", image=photo, strength=1.0, num_inference_steps=steps,
                      output_type="np")
        base = _timed(lambda: ref(**common, generator=torch.Generator().manual_seed(0)), repeats)
        rows.append((f"SD1.5 arch {size}² {steps} steps", f"diffusers img2img {dtype_name}", base, "1.00x"))
        d = GuidanceConfig()
        for mode in ("fast", "full"):
            config = GuidanceConfig(**{t: getattr(d, t) for t in GUIDANCE_TERMS}, mode=mode)
            s = _timed(lambda: pipe(**common, generator=torch.Generator().manual_seed(0), style_image=painting,
                                    guidance=config), repeats)
            rows.append((f"SD1.5 arch {size}² {steps} steps", f"guided {mode}, all terms, {dtype_name}", s,
                         f"{s / base:.2f}x"))
        ref = pipe = components = None  # free the GPU before the next precision
        torch.cuda.empty_cache()
    return rows


def gatys_row(repeats: int, size: int) -> tuple[str, str, float, str]:
    import PIL.Image

    from guided.gatys import stylize

    photo = PIL.Image.effect_noise((size, size), 40).convert("RGB")
    style = PIL.Image.effect_noise((size, size), 90).convert("RGB")
    iterations = 20

    def run():
        stylize(photo, style, preset="default", backbone="vgg19-random", size=size, iterations=iterations,
                multiscale=1, device="cuda", progress=False)

    s = _timed(run, repeats)
    return (f"classic default preset {size} px", "s per L-BFGS iteration (VGG-19, fp32)", s / iterations, "")


def fast_rows(repeats: int) -> list[tuple[str, str, float, str]]:
    try:
        from guided.fast.network import TransformerNet
    except ImportError:
        return [("fast network", "not installed in this build (guided.fast)", float("nan"), "")]
    rows = []
    net = TransformerNet().cuda().eval()
    for h, w in ((512, 512), (1080, 1920)):
        for dtype_name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
            x = torch.rand(1, 3, h, w, device="cuda")
            with torch.no_grad(), torch.autocast("cuda", dtype=dtype):
                s = _timed(lambda: net(x), repeats)
            rows.append((f"fast network {w}x{h}", f"ms per frame, {dtype_name}", s * 1000, ""))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--out", type=Path, default=Path("gpu_table.md"))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device", file=sys.stderr)
        return 2
    rows = [*diffusion_rows(args.repeats, args.size, args.steps), gatys_row(args.repeats, args.size),
            *fast_rows(args.repeats)]
    name = torch.cuda.get_device_name(0)
    lines = [f"GPU: {name}; torch {torch.__version__}; medians of {args.repeats} after a warm-up", "",
             "| workload | configuration | seconds (ms for the fast network) | vs diffusers |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c:.4g} | {d} |" for a, b, c, d in rows]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
