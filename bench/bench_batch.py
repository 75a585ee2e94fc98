"""Benchmark of `guided batch`: throughput on 1 and 2 CPU processes, memory over a long batch.

    .venv/bin/python bench/bench_batch.py [--items 32] [--repeats 3] [--iterations 10]

A batch of `--items` tiny-model jobs (classic Gatys, random VGG-19, 32x32 px, d2l preset with
`--iterations` Adam steps) runs with 1 process (plain python) and with 2 processes (torchrun, gloo on
the CPU), one torch thread per process, alternating, `--repeats` times; each run writes into a fresh
output folder. Throughput counts the batch itself (planning, model load, items, merge) and, separately,
the whole command (interpreter start and imports included). Memory: each process samples its RSS
after every item; the report shows, per process, the RSS after items 1, 2, 4, 8, ... and its last,
and the peak (ru_maxrss). The CPU is shared with other work: read ratios, not absolutes.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(args: argparse.Namespace) -> None:
    """One process of a measured batch (run by python or torchrun)."""
    import psutil

    from guided.batch import run_batch
    from guided.batch.jobs import GatysJob

    job = GatysJob(styles=[str(args.style)], presets=("d2l",), backbone="vgg19-random",
                   options={"size": 32, "iterations": args.iterations})
    rss: list[int] = []
    marks: dict[str, float] = {}
    run, load = job.run, job.load

    def measured(image, label):
        marks.setdefault("first", time.perf_counter())
        result = run(image, label)
        rss.append(psutil.Process().memory_info().rss)
        marks["last"] = time.perf_counter()
        return result

    def timed_load():
        start = time.perf_counter()
        load()
        marks["load"] = time.perf_counter() - start

    job.run, job.load = measured, timed_load
    start = time.perf_counter()
    summary = run_batch(job, args.input, args.output, progress=False)
    seconds = time.perf_counter() - start
    rank = int(os.environ.get("RANK", "0"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB
    (Path(args.output) / f"bench.rank{rank}.json").write_text(json.dumps(
        {"rank": rank, "seconds": seconds, "items_seconds": marks["last"] - marks["first"],
         "load_seconds": marks["load"], "done": summary.done, "failed": summary.failed, "rss": rss,
         "peak": peak}))


def make_inputs(folder: Path, n: int) -> Path:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"img{i:03d}.png")
    style = folder.parent / "style.png"
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(style)
    return style


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(nproc: int, inputs: Path, style: Path, out: Path, iterations: int) -> dict:
    me = [str(Path(__file__).resolve()), "--worker", "--input", str(inputs), "--output", str(out),
          "--style", str(style), "--iterations", str(iterations)]
    if nproc == 1:
        cmd = [sys.executable, *me]
    else:
        torchrun = Path(sys.executable).with_name("torchrun")
        cmd = [str(torchrun), "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), *me]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    ranks = [json.loads(p.read_text()) for p in sorted(out.glob("bench.rank*.json"))]
    n = len(list(inputs.iterdir()))  # every rank reports the batch totals; each sampled its own items
    assert len(ranks) == nproc and all(r["done"] == n for r in ranks), ranks
    assert sum(len(r["rss"]) for r in ranks) == n, ranks
    return {"wall": wall, "batch": max(r["seconds"] for r in ranks),
            "items": max(r["items_seconds"] for r in ranks), "load": max(r["load_seconds"] for r in ranks),
            "ranks": ranks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--style", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--items", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--processes", default="1,2", help="process counts to compare (default 1,2)")
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "in"
        style = make_inputs(inputs, args.items)
        counts = [int(v) for v in args.processes.split(",")]
        runs: dict[int, list[dict]] = {nproc: [] for nproc in counts}
        for repeat in range(args.repeats):
            for nproc in counts:
                out = Path(tmp) / f"out-{nproc}-{repeat}"
                runs[nproc].append(measure(nproc, inputs, style, out, args.iterations))
                r = runs[nproc][-1]
                print(f"repeat {repeat} nproc {nproc}: items {r['items']:.1f} s, batch {r['batch']:.1f} s, "
                      f"command {r['wall']:.1f} s", flush=True)

    n = args.items
    print(f"\n{n} items, gatys d2l 32 px, {args.iterations} iterations, random VGG-19, 1 torch thread/process; "
          f"medians of {args.repeats}")
    print("| processes | items s | images/min (items) | batch s | images/min (batch) | model load s "
          "| command s | images/min (command) |")
    print("|---|---|---|---|---|---|---|---|")
    med = {}
    for nproc, rs in runs.items():
        med[nproc] = {k: statistics.median(r[k] for r in rs) for k in ("items", "batch", "load", "wall")}
        m = med[nproc]
        print(f"| {nproc} | {m['items']:.1f} | {60 * n / m['items']:.1f} | {m['batch']:.1f} | "
              f"{60 * n / m['batch']:.1f} | {m['load']:.1f} | {m['wall']:.1f} | {60 * n / m['wall']:.1f} |")
    if 1 in med and 2 in med:
        for key in ("items", "batch", "wall"):
            print(f"speed-up 2 vs 1 process ({key}): {med[1][key] / med[2][key]:.2f}x")
    print("\nmemory per process (last repeat): RSS in MB after its item k, peak (ru_maxrss)")
    marks = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    print("| processes | rank | " + " | ".join(f"item {k}" for k in marks if k <= n) + " | last | peak |")
    print("|---|---|" + "---|" * (sum(k <= n for k in marks) + 2))
    for nproc, rs in runs.items():
        for r in rs[-1]["ranks"]:
            rss = r["rss"]
            cells = [f"{rss[k - 1] / 2**20:.0f}" if k <= len(rss) else "" for k in marks if k <= n]
            print(f"| {nproc} | {r['rank']} | " + " | ".join(cells) + f" | {rss[-1] / 2**20:.0f} | "
                  f"{r['peak'] / 2**20:.0f} |")


if __name__ == "__main__":
    main()
