"""How fast do optimiser schedules reduce the d2l objective? (not a test; one run per schedule)

Used to choose the `d2l-fast` preset: each schedule is a list of phases, each phase
`[scale, optimizer, lr, iterations, lr_gamma, lr_step]` (scale 0.5 = half of 300x450; lr_gamma 0
= constant lr). The image is carried from phase to phase by bilinear upsampling, bf16 autocast with
float32 losses, random VGG-19 (seed 0). Every 20 full-size iterations it prints the wall time (the
scoring excluded) and the d2l loss of the clamped image, scored as bench_gatys.py scores it.

    .venv/bin/python bench/gatys_schedules.py '[[1.0, "adam", 0.3, 300, 0.8, 15]]'
    .venv/bin/python bench/gatys_schedules.py '[[0.5, "lbfgs", 1.0, 100, 0, 0], [1.0, "adam", 0.03, 100, 0.8, 20]]'
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gatys import ROOT, SHAPE, d2l_loss  # noqa: E402

from guided.gatys import GatysObjective  # noqa: E402
from guided.gatys.images import preprocess  # noqa: E402
from guided.gatys.presets import D2L  # noqa: E402
from guided.io.images import load_image  # noqa: E402
from guided.models.vgg import VGGFeatures, resolve_backbone  # noqa: E402


def make_optimizer(x: torch.Tensor, name: str, lr: float, gamma: float, step: int):
    if name == "adam":
        opt = torch.optim.Adam([x], lr=lr)
    else:
        opt = torch.optim.LBFGS([x], lr=lr, max_iter=1, history_size=50, tolerance_grad=0.0,
                                tolerance_change=0.0, line_search_fn="strong_wolfe")
    return opt, (torch.optim.lr_scheduler.StepLR(opt, step, gamma) if gamma else None)


def run(phases: list, content, style, vgg) -> None:
    objective = GatysObjective(VGGFeatures(vgg, "vgg19"), D2L)
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    x, scoring, start = None, 0.0, time.perf_counter()
    for scale, name, lr, iterations, gamma, step in phases:
        hw = (round(SHAPE[0] * scale), round(SHAPE[1] * scale))
        content_x = preprocess(content, hw)
        objective.set_targets(content_x, [preprocess(style, hw)], [1.0], autocast)
        x = content_x.clone() if x is None else nn.functional.interpolate(x, size=hw, mode="bilinear",
                                                                            align_corners=False)
        x = x.detach().contiguous().requires_grad_(True)
        opt, sched = make_optimizer(x, name, lr, gamma, step)

        def closure():
            opt.zero_grad()
            loss = objective(x, autocast)["total"]
            loss.backward()
            return loss

        for i in range(iterations):
            if name == "adam":
                closure()
                opt.step()
            else:
                opt.step(closure)
            if sched is not None:
                sched.step()
            if scale == 1.0 and (i + 1) % 20 == 0:
                t0 = time.perf_counter()
                elapsed = t0 - start - scoring  # optimisation time only
                score = d2l_loss(vgg, content, style, x.detach())
                scoring += time.perf_counter() - t0
                print(f"{name} iteration {i + 1}: {elapsed:.1f} s, d2l loss {score:.5f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phases", type=json.loads, help="JSON list of [scale, optimizer, lr, iterations, gamma, step]")
    parser.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "images")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    content = load_image(args.images / "rainier.jpg", what="content image")
    style = load_image(args.images / "autumn-oak.jpg", what="style image")
    vgg, _ = resolve_backbone("vgg19-random", seed=0)
    run(args.phases, content, style, vgg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
