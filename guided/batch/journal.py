"""The batch manifest: one JSON object per line in OUTPUT_DIR/manifest.jsonl.

Each record says what happened to one item in one run:

    {"input": "sub/a.jpg", "label": "ink-wash", "output": "sub/a.jpg.ink-wash.png",
     "params": "3f0c...", "status": "done", "reason": null, "seconds": 4.21, "rank": 0,
     "input_size": 48213, "input_mtime_ns": 1763782000000000000, "finished": "2026-11-22T04:10:00Z"}

`status` is "done" (the output exists and is complete) or "failed" (`reason` is the one-line
error); `output` is the planned output path either way. Records are only ever appended, each one
flushed and fsynced, so a `kill -9` loses at most the item in progress. The last record of an
output wins. A line torn by a kill is skipped when reading and dropped at the next merge.

In a distributed run each process appends to its own `manifest.rank{N}.jsonl` (no two processes
write one file); rank 0 merges them into `manifest.jsonl` at the end, and leftovers of a crashed
run at the start of the next one.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from guided.io.files import atomic_write

MANIFEST = "manifest.jsonl"
_RANK_FILE = re.compile(r"manifest\.rank(\d+)\.jsonl")


def rank_manifest(output_dir: Path, rank: int) -> Path:
    return output_dir / f"manifest.rank{rank}.jsonl"


def _lines(path: Path) -> list[str]:
    """The complete JSON-object lines of `path` (a torn or blank line is skipped)."""
    if not path.is_file():
        return []
    good = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            if isinstance(json.loads(line), dict):
                good.append(line)
        except json.JSONDecodeError:
            continue
    return good


def read_records(path: Path) -> list[dict]:
    """Every complete record of a manifest file, in file order."""
    return [json.loads(line) for line in _lines(path)]


def latest_by_output(records: list[dict]) -> dict[str, dict]:
    """The last record of each output path."""
    latest: dict[str, dict] = {}
    for record in records:
        if isinstance(record.get("output"), str):
            latest[record["output"]] = record
    return latest


class JournalWriter:
    """Appends records to one manifest file, each flushed and fsynced before `write` returns."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a+b")
        # A kill during an earlier write may have left a torn last line: start on a fresh one.
        if self._file.seek(0, os.SEEK_END) > 0:
            self._file.seek(-1, os.SEEK_END)
            if self._file.read(1) != b"\n":
                self._file.write(b"\n")

    def write(self, record: dict) -> None:
        self._file.write((json.dumps(record, sort_keys=False) + "\n").encode("utf-8"))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "JournalWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def merge_manifests(output_dir: Path) -> int:
    """Fold every `manifest.rank{N}.jsonl` into `manifest.jsonl`; the number of records moved.

    The merged file is rewritten atomically (temp file, fsync, rename) before the per-rank files
    are removed, and records already present are not added twice, so a crash at any point of the
    merge loses nothing and duplicates nothing.
    """
    rank_files = sorted((p for p in output_dir.glob("manifest.rank*.jsonl") if _RANK_FILE.fullmatch(p.name)),
                        key=lambda p: int(_RANK_FILE.fullmatch(p.name).group(1)))
    if not rank_files:
        return 0
    target = output_dir / MANIFEST
    merged = _lines(target)
    present = set(merged)
    moved = 0
    for path in rank_files:
        for line in _lines(path):
            if line not in present:
                merged.append(line)
                present.add(line)
                moved += 1
    atomic_write(target, "".join(line + "\n" for line in merged))
    for path in rank_files:
        path.unlink()
    return moved
