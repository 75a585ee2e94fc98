"""Benchmark of the classic path (not a test): fp32 vs bf16 vs a plain chapter implementation,
d2l-fast vs d2l time to the same loss, peak memory at 512 px.

    .venv/bin/python bench/bench_gatys.py                     # full figures (slow on a CPU)
    .venv/bin/python bench/bench_gatys.py --repeats 3 --iterations 10 --d2l-iterations 100

Same random VGG-19 weights (vgg19-random, seed 0) everywhere; everything is measured side by side
in one run, repeats interleaved, medians reported. Results go to stdout as a Markdown table and,
with --json, to a file.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guided.gatys import GatysObjective, stylize  # noqa: E402
from guided.gatys.images import preprocess  # noqa: E402
from guided.gatys.presets import D2L  # noqa: E402
from guided.io.images import load_image  # noqa: E402
from guided.models.vgg import VGGFeatures, resolve_backbone  # noqa: E402
from guided.models.vgg import imagenet_denormalize as denormalize  # noqa: E402
from guided.models.vgg import imagenet_normalize as normalize  # noqa: E402

SHAPE = (300, 450)


def chapter_plain(content, style, vgg19_features, iterations: int, shape=SHAPE) -> tuple[list[float], list[float]]:
    """Dive into Deep Learning §14.12 as plain PyTorch (fp32, in-place ReLUs, indices 0,5,10,19,28 / 25).
    Returns per-iteration end timestamps and totals."""
    # Intentional copy: tests/test_gatys.py (`chapter_run`) has the same plain loop as the parity
    # test's independent reference; the bench times the chapter as written, apart from the library.
    import torchvision

    T = torchvision.transforms
    prep = T.Compose([T.Resize(shape), T.ToTensor(),
                      T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    style_layers, content_layers = [0, 5, 10, 19, 28], [25]
    net = nn.Sequential(*[vgg19_features[i] for i in range(29)])

    def extract(X):
        contents, styles = [], []
        for i in range(len(net)):
            X = net[i](X)
            if i in style_layers:
                styles.append(X)
            if i in content_layers:
                contents.append(X)
        return contents, styles

    def gram(X):
        c, n = X.shape[1], X.numel() // X.shape[1]
        X = X.reshape((c, n))
        return X @ X.T / (c * n)

    content_X = prep(content).unsqueeze(0)
    contents_Y, _ = extract(content_X)
    _, styles_Y = extract(prep(style).unsqueeze(0))
    grams = [gram(Y).detach() for Y in styles_Y]
    contents_Y = [Y.detach() for Y in contents_Y]
    X = nn.Parameter(content_X.clone())
    opt = torch.optim.Adam([X], lr=0.3)
    sched = torch.optim.lr_scheduler.StepLR(opt, 50, 0.8)
    stamps, totals = [], []
    for _ in range(iterations):
        opt.zero_grad()
        cyh, syh = extract(X)
        loss = (sum(torch.square(a - b).mean() for a, b in zip(cyh, contents_Y))
                + sum(torch.square(gram(a) - g).mean() * 1e4 for a, g in zip(syh, grams))
                + 10 * 0.5 * ((X[:, :, 1:, :] - X[:, :, :-1, :]).abs().mean()
                              + (X[:, :, :, 1:] - X[:, :, :, :-1]).abs().mean()))
        loss.backward()
        opt.step()
        sched.step()
        totals.append(loss.item())
        stamps.append(time.perf_counter())
    return stamps, totals


def timed_stylize(content, style, vgg, **kw) -> tuple[list[float], object]:
    stamps: list[float] = []
    result = stylize(content, style, backbone=vgg, progress=False, seed=0,
                     callback=lambda i, x, losses: stamps.append(time.perf_counter()), **kw)
    return stamps, result


def per_iteration(stamps: list[float]) -> float:
    """Seconds per iteration, excluding the first (warm-up, target computation)."""
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


@torch.no_grad()
def d2l_loss(vgg, content, style, image_x: torch.Tensor) -> float:
    """The d2l objective (fp32) of the output image: de-normalised, clamped to [0, 1] (the chapter's
    postprocess), re-normalised; so every run is scored on what it outputs."""
    key = (id(vgg), id(content), id(style))
    if key not in _SCORERS:  # targets once per inputs: d2l-fast's ~250 iterates are each scored
        obj = GatysObjective(VGGFeatures(vgg, "vgg19"), D2L)
        obj.set_targets(preprocess(content, SHAPE), [preprocess(style, SHAPE)], [1.0], contextlib.nullcontext)
        _SCORERS[key] = obj
    return float(_SCORERS[key](normalize(denormalize(image_x.float())), contextlib.nullcontext)["total"])


_SCORERS: dict[tuple[int, int, int], GatysObjective] = {}


def bench_iterations(content, style, vgg, repeats: int, iterations: int) -> dict:
    rows = {"plain fp32 (chapter)": [], "d2l fp32": [], "d2l bf16": []}
    finals = {"d2l fp32": [], "d2l bf16": []}
    for r in range(repeats):
        stamps, _ = chapter_plain(content, style, vgg, iterations)
        rows["plain fp32 (chapter)"].append(per_iteration(stamps))
        for name, mp in (("d2l fp32", "no"), ("d2l bf16", "bf16")):
            stamps, res = timed_stylize(content, style, vgg, preset="d2l", iterations=iterations, mixed_precision=mp)
            rows[name].append(per_iteration(stamps))
            finals[name].append(d2l_loss(vgg, content, style, res.tensor))
        print(f"  repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.3f} s/it" for k, v in rows.items()), flush=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    loss32, loss16 = statistics.median(finals["d2l fp32"]), statistics.median(finals["d2l bf16"])
    return {"seconds_per_iteration": med, "runs": rows, "iterations": iterations,
            "final_loss_fp32": loss32, "final_loss_bf16": loss16,
            "bf16_loss_diff": abs(loss16 - loss32) / loss32,
            "speedup_bf16_vs_fp32": med["d2l fp32"] / med["d2l bf16"],
            "speedup_fp32_vs_plain": med["plain fp32 (chapter)"] / med["d2l fp32"]}


def bench_time_to_loss(content, style, vgg, repeats: int, d2l_iterations: int, fast_iterations: int | None,
                       bf16_full: bool = True) -> dict:
    """d2l's fp32 loss after its iterations, and the wall time d2l-fast needs to get there.

    Each repeat runs `d2l` (fp32) in full, then `d2l-fast`; times are medians over the repeats. The
    target is `d2l`'s final loss. Reached = the first d2l-fast iterate at 300x450 whose d2l loss,
    re-evaluated in fp32, is at or below the target; its time is from the start of `stylize` to the
    end of the step that made it. With `bf16_full`, one more full-length `d2l` run in bf16 gives the
    final-loss comparison the issue asks for (bf16 within 2 % of fp32 after all iterations).
    """
    d2l_runs, fast_raw = [], []
    for r in range(repeats):
        _, ref = timed_stylize(content, style, vgg, preset="d2l", iterations=d2l_iterations)
        d2l_runs.append({"seconds": ref.seconds, "final_loss": d2l_loss(vgg, content, style, ref.tensor)})
        print(f"  repeat {r + 1}: d2l {d2l_iterations} it {ref.seconds:.1f} s, final loss "
              f"{d2l_runs[-1]['final_loss']:.5g}", flush=True)
        fast_raw.append(_fast_run(content, style, vgg, fast_iterations))
        print(f"  repeat {r + 1}: d2l-fast total {fast_raw[-1][0].seconds:.1f} s", flush=True)
    target = statistics.median(run["final_loss"] for run in d2l_runs)
    runs = [_reached(vgg, content, style, target, *raw) for raw in fast_raw]
    for r, run in enumerate(runs):
        print(f"  d2l-fast repeat {r + 1}: target {target:.5g} reached at "
              f"{'%.1f s' % run['seconds_to_target'] if run['seconds_to_target'] is not None else 'never'}, "
              f"final loss {run['final_loss']:.5g}", flush=True)
    times = [run["seconds_to_target"] for run in runs]
    reached_all = all(t is not None for t in times)
    fast_seconds = statistics.median(times) if reached_all else None
    d2l_seconds = statistics.median(run["seconds"] for run in d2l_runs)
    out = {"d2l_iterations": d2l_iterations, "fast_iterations": fast_iterations or "preset",
           "d2l_runs": d2l_runs, "d2l_seconds": d2l_seconds, "d2l_final_loss": target,
           "fast_runs": runs, "fast_seconds_to_target": fast_seconds, "fast_reached": reached_all,
           "ratio": fast_seconds / d2l_seconds if reached_all else None}
    if bf16_full:
        _, res = timed_stylize(content, style, vgg, preset="d2l", iterations=d2l_iterations, mixed_precision="bf16")
        loss16 = d2l_loss(vgg, content, style, res.tensor)
        out["bf16_full"] = {"seconds": res.seconds, "final_loss": loss16,
                            "loss_diff_vs_fp32": abs(loss16 - target) / target,
                            "speedup_vs_fp32_median": d2l_seconds / res.seconds}
        print(f"  d2l bf16 {d2l_iterations} it: {res.seconds:.1f} s, final loss {loss16:.5g} "
              f"({100 * abs(loss16 - target) / target:.2f} % from fp32)", flush=True)
    return out


def _fast_run(content, style, vgg, fast_iterations: int | None):
    """One d2l-fast run; keeps every full-size iterate and the time at the end of each step."""
    images: dict[int, torch.Tensor] = {}
    stamps: list[float] = []
    start = time.perf_counter()

    def keep(i, x01, losses):
        stamps.append(time.perf_counter() - start)
        if list(x01.shape[-2:]) == list(SHAPE):
            images[i] = x01.clone()

    res = stylize(content, style, preset="d2l-fast", backbone=vgg, progress=False, seed=0, callback=keep,
                  iterations=fast_iterations)
    return res, images, stamps


def _reached(vgg, content, style, target: float, res, images: dict, stamps: list[float]) -> dict:
    reached = None
    for i in sorted(images):
        if d2l_loss(vgg, content, style, normalize(images[i])) <= target:
            reached = stamps[i - 1]  # from the call of `stylize` (setup included) to the end of step i
            break
    return {"seconds_total": res.seconds, "seconds_to_target": reached,
            "final_loss": d2l_loss(vgg, content, style, res.tensor)}


MEMORY_CHILD = """
import os, sys, threading, time, torch
sys.path.insert(0, {root!r})
torch.set_num_threads({threads})
from guided.gatys import stylize
from guided.models.vgg import resolve_backbone

def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

vgg, _ = resolve_backbone("vgg19-random", seed=0)
before, peak, done = rss(), [0], threading.Event()

def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.005)

thread = threading.Thread(target=sample)
thread.start()
stylize({content!r}, {style!r}, preset={preset!r}, backbone=vgg, size=512, iterations={iterations},
        mixed_precision={mp!r}, multiscale=1, progress=False)
done.set()
thread.join()
print(before, max(peak[0], rss()))
"""


def bench_memory(content_path: Path, style_path: Path, threads: int, iterations: int) -> dict:
    """Peak resident memory at 512 px long side: a fresh process per configuration, RSS sampled every
    5 ms during `stylize` (ru_maxrss is useless here: importing torch's CUDA build peaks higher)."""
    out = {}
    for name, preset, mp in (("adam fp32 (d2l)", "d2l", "no"), ("adam bf16 (d2l)", "d2l", "bf16"),
                             ("adam bf16 (d2l-fast)", "d2l-fast", "bf16"),
                             ("lbfgs fp32 (default)", "default", "no")):
        code = MEMORY_CHILD.format(root=str(ROOT), threads=threads, content=str(content_path), style=str(style_path),
                                   preset=preset, mp=mp, iterations=iterations)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        base, peak = (int(v) for v in proc.stdout.split()[-2:])
        out[name] = {"rss_before_mib": base / 2**20, "peak_rss_mib": peak / 2**20,
                     "peak_increase_mib": (peak - base) / 2**20}
        print(f"  {name}: RSS before {base / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB "
              f"(+{(peak - base) / 2**20:.0f})", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "images")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per measurement (median reported)")
    parser.add_argument("--iterations", type=int, default=20, help="iterations per timing run")
    parser.add_argument("--d2l-iterations", type=int, default=500, help="d2l iterations whose loss d2l-fast must reach")
    parser.add_argument("--fast-iterations", type=int, help="cap d2l-fast's iterations (default: its preset's)")
    parser.add_argument("--memory-iterations", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--no-bf16-full", action="store_true",
                        help="skip the full-length d2l bf16 run (final loss vs fp32 after --d2l-iterations)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["iterations", "time-to-loss", "memory"])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    content_path, style_path = args.images / "rainier.jpg", args.images / "autumn-oak.jpg"
    content, style = load_image(content_path, what="content image"), load_image(style_path, what="style image")
    vgg, _ = resolve_backbone("vgg19-random", seed=0)
    report: dict = {"threads": args.threads, "repeats": args.repeats, "torch": torch.__version__}
    if "iterations" not in args.skip:
        print(f"time per iteration at {SHAPE[0]}x{SHAPE[1]} ({args.iterations} iterations, {args.repeats} repeats)")
        report["iterations"] = bench_iterations(content, style, vgg, args.repeats, args.iterations)
    if "time-to-loss" not in args.skip:
        print(f"d2l-fast vs d2l ({args.d2l_iterations} iterations) at {SHAPE[0]}x{SHAPE[1]}")
        report["time_to_loss"] = bench_time_to_loss(content, style, vgg, args.repeats, args.d2l_iterations,
                                                    args.fast_iterations, not args.no_bf16_full)
    if "memory" not in args.skip:
        print("peak memory at 512 px long side")
        report["memory"] = bench_memory(content_path, style_path, args.threads, args.memory_iterations)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
