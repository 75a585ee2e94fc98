"""What does `GuidanceConfig.norm_every` change? (not a test; the evidence for its default)

Guidance scales each term's gradient to unit RMS before weighting. Measuring those RMS values
takes one backward pass per term; with `norm_every=N` they are measured on every Nth guided step
and reused in between (one backward of the weighted sum). This script runs the guided pipeline
with exact scales (`norm_every=1`) on several photo/painting pairs, records every term's
gradient at every step, and reports, for each N, how far the direction built from the stale
scales is from the exact one (cosine similarity, and the ratio of their norms), at every step
where they differ. Then it runs the pipeline with `norm_every=N` and compares its final losses
with the exact run's.

    .venv/bin/python bench/guidance_drift.py --every 2,4,8 --steps 20
    .venv/bin/python bench/guidance_drift.py --models bench --steps 10 --size 256   # real architectures

`--precision` compares instead the guided steps in bf16 (`mixed_precision="bf16"`: decoder,
CLIP's vision tower and VGG under autocast) with float32 ones (`"no"`): final losses and pixels.
`--vgg FILE` puts a real VGG (torchvision-format weights) in place of the random one, since bf16 rounding depends on the
weights:

    .venv/bin/python bench/guidance_drift.py --precision --vgg ../shared/weights/vgg16-features-imagenet-ft.safetensors
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from d2l_pairs import image  # noqa: E402

from guided import GuidanceConfig  # noqa: E402
from guided.guidance.objective import GuidedObjective  # noqa: E402

PAIRS = [("rainier.jpg", "autumn-oak.jpg"), ("photos/chelsea.png", "mosaic.jpg"),
         ("photos/coffee.png", "autumn-oak.jpg"), ("photos/astronaut.png", "mosaic.jpg"),
         ("generated:photo", "generated:painting")]
PROMPT = "an oil painting in the style of the reference"


def with_vgg(guidance_models, path: str | None):
    """`guidance_models` with the VGG from `path` (torchvision-format weights) in place of its own."""
    if not path:
        return guidance_models
    from guided.models.bundle import GuidanceModels
    from guided.models.vgg import VGGFeatures, resolve_backbone

    net, info = resolve_backbone(path)
    return GuidanceModels(clip=guidance_models.clip, vgg=VGGFeatures(net, info.arch),
                          tiny_decoder=guidance_models.tiny_decoder, info={"vgg": info.describe()})


def precision_rows(pipe, guidance_models, pairs, size: int, steps: int) -> None:
    """bf16 guided steps against float32 ones, per pair: final losses and pixels."""
    print("| pair | largest final-loss difference, bf16 vs float32 | mean abs pixel difference (0-1) |")
    print("|---|---|---|")
    for content, style in pairs:
        photo = image(content).resize((size, size))
        painting = image(style).resize((size, size))
        exact = call(pipe, guidance_models, photo, painting, steps, mixed_precision="no")
        got = call(pipe, guidance_models, photo, painting, steps, mixed_precision="bf16")
        worst = max(exact.final_losses, key=lambda n: abs(got.final_losses[n] - exact.final_losses[n])
                    / max(abs(exact.final_losses[n]), 1e-12))
        rel = (got.final_losses[worst] - exact.final_losses[worst]) / max(abs(exact.final_losses[worst]), 1e-12)
        pixels = float(abs(got.images - exact.images).mean())
        print(f"| {content} + {style} | {worst} {100 * rel:+.2f}% | {pixels:.4f} |", flush=True)


def pipeline(models: str):
    from guided.testing import bench_guidance_models, sd15_random_components, tiny_guidance_models, tiny_sd_components
    from pipelines import GuidedStableDiffusionImg2ImgPipeline

    comps = sd15_random_components(0) if models == "bench" else tiny_sd_components(0)
    pipe = GuidedStableDiffusionImg2ImgPipeline(**comps)
    pipe.set_progress_bar_config(disable=True)
    return pipe, bench_guidance_models(0) if models == "bench" else tiny_guidance_models(0)


def call(pipe, guidance_models, photo, painting, steps: int, **guidance):
    return pipe(prompt=PROMPT, image=photo, style_image=painting, strength=0.8, num_inference_steps=steps,
                generator=torch.Generator().manual_seed(0), output_type="np", guidance_models=guidance_models,
                guidance=GuidanceConfig(**guidance))


def recorded_gradients(pipe, guidance_models, photo, painting, steps: int) -> list[dict[str, torch.Tensor]]:
    """Every guided step's per-term image gradients, in an exact (`norm_every=1`) run."""
    record: list[dict[str, torch.Tensor]] = []
    original = GuidedObjective._per_term_grads

    def spy(x, values, names):
        grads = original(x, values, names)
        record.append({n: g.detach().clone() for n, g in grads.items() if g is not None})
        return grads

    GuidedObjective._per_term_grads = staticmethod(spy)
    try:
        call(pipe, guidance_models, photo, painting, steps)
    finally:
        GuidedObjective._per_term_grads = staticmethod(original)
    return record


def direction(grads: dict[str, torch.Tensor], rms: dict[str, torch.Tensor], weights: GuidanceConfig) -> torch.Tensor:
    return sum(weights.weight(n) * g / (rms[n] + 1e-12) for n, g in grads.items())


def drift(record: list[dict[str, torch.Tensor]], every: int) -> list[tuple[float, float]]:
    """(cosine, norm ratio) of the stale-scale direction against the exact one, at each reusing step."""
    weights, out = GuidanceConfig(), []
    rms = [{n: g.pow(2).mean().sqrt() for n, g in grads.items()} for grads in record]
    for step, grads in enumerate(record):
        measured = step - step % every
        if measured == step:
            continue
        exact, stale = direction(grads, rms[step], weights), direction(grads, rms[measured], weights)
        cos = float(torch.nn.functional.cosine_similarity(exact.flatten(), stale.flatten(), dim=0))
        out.append((cos, float(stale.norm() / exact.norm())))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", choices=["tiny", "bench"], default="tiny")
    ap.add_argument("--every", default="2,4,8")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pairs", type=int, default=len(PAIRS), help="the first N pairs only")
    ap.add_argument("--precision", action="store_true", help="bf16 guided steps against float32 ones")
    ap.add_argument("--vgg", help="torchvision-format VGG weights in place of the random VGG")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe, guidance_models = pipeline(args.models)
    guidance_models = with_vgg(guidance_models, args.vgg)
    if args.precision:
        print(f"{args.models} models, VGG {args.vgg or 'random'}, {args.size} px, {args.steps} steps at "
              f"strength 0.8, default weights (all terms)\n")
        precision_rows(pipe, guidance_models, PAIRS[: args.pairs], args.size, args.steps)
        return 0
    everies = [int(v) for v in args.every.split(",")]
    print(f"{args.models} models, {args.size} px, {args.steps} steps at strength 0.8, default weights (all terms)\n")
    print("| pair | N | min cosine | median cosine | norm ratio range | final losses vs N=1 (largest difference) |")
    print("|---|---|---|---|---|---|")
    for content, style in PAIRS[: args.pairs]:
        photo = image(content).resize((args.size, args.size))
        painting = image(style).resize((args.size, args.size))
        record = recorded_gradients(pipe, guidance_models, photo, painting, args.steps)
        exact = call(pipe, guidance_models, photo, painting, args.steps).final_losses
        for every in everies:
            pairs = drift(record, every)
            cos = [c for c, _ in pairs]
            ratios = [r for _, r in pairs]
            got = call(pipe, guidance_models, photo, painting, args.steps, norm_every=every).final_losses
            worst = max(exact, key=lambda n: abs(got[n] - exact[n]) / max(abs(exact[n]), 1e-12))
            rel = (got[worst] - exact[worst]) / max(abs(exact[worst]), 1e-12)
            print(f"| {content} + {style} | {every} | {min(cos):.4f} | {statistics.median(cos):.4f} | "
                  f"{min(ratios):.3f}-{max(ratios):.3f} | {worst} {100 * rel:+.2f}% |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
