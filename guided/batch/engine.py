"""Batch stylization of a folder: resumable, nothing lost, split over processes with Accelerate.

The engine knows nothing about stylization: the per-item work is a `BatchJob` (load the models
once per process, then turn one image into one output under a label). `guided.batch.jobs` holds
the jobs of the `guided batch` command; tests plug in cheap ones.

    job = MyJob(...)
    summary = run_batch(job, "photos", "out/photos", recursive=True)
    raise SystemExit(summary.exit_code)

Under `accelerate launch` or `torchrun`, every process runs the same call. Rank 0 folds the
manifests left by a crashed run, plans the items still to do and broadcasts that list; process
`r` of `n` takes items `r, r+n, r+2n, ...` of it and records them in its own
`manifest.rank{r}.jsonl`; after a barrier rank 0 merges those into `manifest.jsonl`.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Protocol

from guided.batch.items import BatchItem, plan_items
from guided.batch.journal import (
    MANIFEST,
    JournalWriter,
    latest_by_output,
    merge_manifests,
    rank_manifest,
    read_records,
)
from guided.errors import GuidedError
from guided.interrupts import Interrupted, InterruptGuard
from guided.io.discovery import find_images, image_extensions
from guided.io.files import remove_stale_temps


class BatchJob(Protocol):
    """The per-item work of a batch."""

    method: str  # recorded in the parameter hash ("gatys", "stylize", ...)
    labels: tuple[str, ...]  # one output per input and label (presets, or (method,))

    def params(self, label: str) -> dict:
        """Everything that changes the output under `label`, JSON-serialisable (hashed)."""

    def load(self) -> None:
        """Load the models; called once per process, before the first item."""

    def run(self, image, label: str) -> tuple[object, dict]:
        """Stylize one RGB PIL image under `label`: (output PIL image, metadata dict)."""


@dataclass
class BatchSummary:
    """What a batch did. `skipped` items were already done by an earlier run."""

    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (output, reason), all ranks
    interrupted: int | None = None  # the signal number when stopped by one

    @property
    def exit_code(self) -> int:
        """0 all outputs exist, 1 some failed, 2 none exists; 128+signal when interrupted."""
        if self.interrupted is not None:
            return 128 + self.interrupted
        if self.failed == 0:
            return 0
        return 1 if self.done + self.skipped > 0 else 2

    def describe(self) -> str:
        text = (f"{self.done} done, {self.failed} failed, {self.skipped} already done "
                f"of {self.total} items in {self.seconds:.1f} s")
        return f"interrupted: {text}" if self.interrupted is not None else text


def param_hash(method: str, label: str, params: dict) -> str:
    """A short stable hash of everything that decides an item's output."""
    blob = json.dumps({"method": method, "label": label, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def failure_reason(exc: BaseException) -> str:
    """The one-line reason recorded for a failed item."""
    text = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, GuidedError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- processes ---------------------------------------------------------------------------------

class _Processes:
    """Rank, world size and the collectives the engine needs, from Accelerate's PartialState."""

    def __init__(self, cpu: bool = False):
        import os

        import torch
        from accelerate import PartialState

        # Accelerate only sets up a CPU (gloo) process group when told `cpu=True`; on a machine
        # without GPUs every launched process would otherwise believe it is alone.
        gpu = torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())
        self.state = PartialState(cpu=cpu or not gpu)
        self.rank = self.state.process_index
        self.world = self.state.num_processes
        launched = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if launched != self.world:  # never let several processes each do the whole batch
            raise GuidedError(f"launched as {launched} processes (WORLD_SIZE) but Accelerate sees "
                              f"{self.world}; check the launcher's configuration")

    def barrier(self) -> None:
        if self.world > 1:
            self.state.wait_for_everyone()

    def broadcast(self, value):
        """`value` as rank 0 has it, on every rank."""
        if self.world == 1:
            return value
        from accelerate.utils import broadcast_object_list

        box = [value if self.rank == 0 else None]
        broadcast_object_list(box, from_process=0)
        return box[0]

    def gather(self, value) -> list:
        """`value` of every rank, in rank order, on every rank."""
        if self.world == 1:
            return [value]
        from accelerate.utils import gather_object

        return gather_object([value])


# --- planning ----------------------------------------------------------------------------------

def _input_stat(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def is_done(item: BatchItem, params: str, latest: dict[str, dict], input_dir: Path, output_dir: Path) -> bool:
    """Whether an earlier run finished `item` with the same parameters and input, output intact."""
    record = latest.get(item.output)
    if record is None or record.get("status") != "done" or record.get("params") != params:
        return False
    if not (output_dir / item.output).is_file():
        return False
    try:
        size, mtime = _input_stat(input_dir / item.input)
    except OSError:
        return False
    return record.get("input_size") == size and record.get("input_mtime_ns") == mtime


def plan(job: BatchJob, input_dir: Path, output_dir: Path, *, recursive: bool,
         formats) -> tuple[list[tuple[BatchItem, str]], int]:
    """(items still to do with their parameter hashes, number of items in the batch)."""
    if input_dir.is_dir() and output_dir.resolve() == input_dir.resolve():
        raise GuidedError(f"`OUTPUT_DIR` '{output_dir}' is `INPUT_DIR`: the outputs would become inputs of the "
                          "next run; choose another folder (a subfolder is fine)")
    exclude = output_dir
    inputs = find_images(input_dir, extensions=image_extensions(formats), recursive=recursive, exclude=exclude)
    if not inputs:
        how = "" if recursive else " (add --recursive to search its subfolders)"
        raise GuidedError(f"no images found in `INPUT_DIR` '{input_dir}'{how}")
    items = plan_items(inputs, list(job.labels))
    hashes = {label: param_hash(job.method, label, job.params(label)) for label in job.labels}
    latest = latest_by_output(read_records(output_dir / MANIFEST))
    todo = [(item, hashes[item.label]) for item in items
            if not is_done(item, hashes[item.label], latest, input_dir, output_dir)]
    return todo, len(items)


# --- the batch ---------------------------------------------------------------------------------

def _default_io():
    from guided.io.images import ALLOWED_FORMATS, load_image, save_image

    return ALLOWED_FORMATS, load_image, save_image


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True)


def _log(bar, text: str) -> None:
    bar.write(text, file=sys.stderr)


def run_batch(job: BatchJob, input_dir: str | Path, output_dir: str | Path, *, recursive: bool = False,
              progress: bool = True, cpu: bool = False, formats=None,
              load_image: Callable | None = None, save_image: Callable | None = None) -> BatchSummary:
    """Stylize every image under `input_dir` into `output_dir` with `job`; see the module doc.

    `formats`, `load_image(path)` and `save_image(image, path, metadata=...)` default to
    guided.io.images's allowlist, loader and atomic writer. `cpu=True` keeps a distributed run on
    the CPU (gloo) even where GPUs exist.
    """
    started = time.perf_counter()
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if formats is None or load_image is None or save_image is None:
        default_formats, default_load, default_save = _default_io()
        formats, load_image, save_image = formats or default_formats, load_image or default_load, \
            save_image or default_save
    procs = _Processes(cpu=cpu)
    summary = BatchSummary()
    with InterruptGuard() as signals:
        try:
            # 1. Rank 0 folds leftovers of a crashed run, plans, and tells everyone.
            todo, summary.total = _agree_on_plan(procs, job, input_dir, output_dir, recursive, formats)
            summary.skipped = summary.total - len(todo)
            mine = todo[procs.rank::procs.world]
            # 2. Models, once per process (not at all when this process has nothing to do).
            if mine:
                job.load()
            # 3. The items, each recorded as soon as it is done or failed.
            _work_through(mine, job, input_dir, output_dir, procs, load_image, save_image, signals, summary,
                          progress)
        except Interrupted as stop:
            # Other ranks may be gone too: no barrier, no merge; the next run folds our manifest.
            summary.interrupted = stop.signum
            summary.seconds = time.perf_counter() - started
            return summary

    # 4. Everyone finished: rank 0 merges the per-process manifests; totals for every rank.
    procs.barrier()
    if procs.world > 1 and procs.rank == 0:
        merge_manifests(output_dir)
    everyone = procs.gather((summary.done, summary.failed, summary.failures))
    summary.done = sum(done for done, _, _ in everyone)
    summary.failed = sum(failed for _, failed, _ in everyone)
    summary.failures = sorted(failure for _, _, failures in everyone for failure in failures)
    procs.barrier()
    summary.seconds = time.perf_counter() - started
    return summary


def _agree_on_plan(procs: _Processes, job: BatchJob, input_dir: Path, output_dir: Path, recursive: bool,
                   formats) -> tuple[list[tuple[BatchItem, str]], int]:
    """Rank 0's plan on every rank; a usage error found by rank 0 is raised on every rank."""
    planned: tuple | str | None = None
    if procs.rank == 0:
        try:
            if output_dir.is_dir():
                merge_manifests(output_dir)
                remove_stale_temps(output_dir, recursive=True)
            planned = plan(job, input_dir, output_dir, recursive=recursive, formats=formats)
            output_dir.mkdir(parents=True, exist_ok=True)
        except (GuidedError, OSError) as exc:
            planned = failure_reason(exc)
    planned = procs.broadcast(planned)
    if isinstance(planned, str):
        raise GuidedError(planned)
    return planned


def _work_through(mine: list[tuple[BatchItem, str]], job: BatchJob, input_dir: Path, output_dir: Path,
                  procs: _Processes, load_image: Callable, save_image: Callable, signals: InterruptGuard,
                  summary: BatchSummary, progress: bool) -> None:
    """Run this process's items in order, recording each one and counting into `summary`."""
    path = output_dir / MANIFEST if procs.world == 1 else rank_manifest(output_dir, procs.rank)
    desc = "batch" if procs.world == 1 else f"batch (rank 0 of {procs.world})"
    with JournalWriter(path) as manifest, _progress(len(mine), progress and procs.rank == 0, desc) as bar:
        for item, params in mine:
            record = _run_item(job, item, params, input_dir, output_dir, procs.rank, load_image, save_image,
                               signals, manifest)
            if record["status"] == "done":
                summary.done += 1
            else:
                summary.failed += 1
                summary.failures.append((item.output, record["reason"]))
                _log(bar, f"guided: batch: failed {item.input} [{item.label}]: {record['reason']}")
            bar.set_postfix(done=summary.done, failed=summary.failed,
                            remaining=len(mine) - summary.done - summary.failed, refresh=False)
            bar.update(1)


def _run_item(job: BatchJob, item: BatchItem, params: str, input_dir: Path, output_dir: Path, rank: int,
              load_image: Callable, save_image: Callable, signals: InterruptGuard, manifest: JournalWriter) -> dict:
    """Do one item and record it; any Exception makes it a failed item, never a stopped batch."""
    start = time.perf_counter()
    source = input_dir / item.input
    record = {"input": item.input, "label": item.label, "output": item.output, "params": params,
              "status": "done", "reason": None, "seconds": 0.0, "rank": rank}
    try:
        record["input_size"], record["input_mtime_ns"] = _input_stat(source)
        image, metadata = job.run(load_image(source), item.label)
        metadata = dict(metadata or {})
        metadata["batch"] = {"input": item.input, "label": item.label, "params": params}
        target = output_dir / item.output
        target.parent.mkdir(parents=True, exist_ok=True)
        with signals.critical():
            save_image(image, target, metadata=metadata)
            record["seconds"] = round(time.perf_counter() - start, 4)
            record["finished"] = _now()
            manifest.write(record)
        return record
    except Exception as exc:  # noqa: BLE001 - one bad item never stops the batch
        record.update(status="failed", reason=failure_reason(exc), seconds=round(time.perf_counter() - start, 4),
                      finished=_now())
        with signals.critical():
            manifest.write(record)
        return record


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
