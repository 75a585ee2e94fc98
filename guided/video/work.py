"""The work folder of a video run: finished frames, each written atomically as it finishes.

`.OUT.mp4.work/` beside the output holds `job.json` (what the frames are a function of),
`frames.jsonl` (one record per finished frame, appended and fsynced after its PNG is in place,
the batch journal's writer) and `NNNNNN.png` (the stylized frames, lossless). A frame counts as
finished when its record and its PNG both exist, so a `kill -9` at any moment costs at most the
frame in progress. Each frame depends on the one before, so a rerun continues after the longest
finished prefix. A folder made for other parameters or another input is discarded (with a warning).
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np

from guided.batch.journal import JournalWriter, read_records
from guided.io.files import atomic_write

logger = logging.getLogger(__name__)

JOB = "job.json"
RECORDS = "frames.jsonl"
#: PNG's fastest deflate level: frames are temporary, and level 1 is ~5x quicker to write than 6.
PNG_LEVEL = 1


def work_folder(output: Path) -> Path:
    return output.with_name(f".{output.name}.work")


def job_key(job: dict) -> str:
    blob = json.dumps(job, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


class WorkFolder:
    """Finished frames of one job; `done` is how many frames from the first on are finished."""

    def __init__(self, folder: Path, job: dict):
        self.folder, self.job, self.key = folder, job, job_key(job)
        self.records: dict[int, dict] = {}
        self._writer: JournalWriter | None = None

    def open(self) -> int:
        """Create or reuse the folder; return how many frames are already finished."""
        previous = self._read_key()
        if previous is not None and previous != self.key:
            logger.warning("the work folder '%s' was made for other parameters or another input: starting over",
                           self.folder)
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if previous != self.key:
            atomic_write(self.folder / JOB, json.dumps({"key": self.key, "job": self.job}, indent=2, default=str))
        for record in read_records(self.folder / RECORDS):
            if isinstance(record.get("index"), int) and self.frame_path(record["index"]).is_file():
                self.records[record["index"]] = record
        self._writer = JournalWriter(self.folder / RECORDS)
        return self.done

    def _read_key(self) -> str | None:
        path = self.folder / JOB
        if not self.folder.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8")).get("key")
        except (OSError, ValueError, AttributeError):
            return ""  # a folder without a readable job file: not ours to continue

    @property
    def done(self) -> int:
        count = 0
        while count in self.records:
            count += 1
        return count

    def frame_path(self, index: int) -> Path:
        return self.folder / f"{index:06d}.png"

    def save(self, index: int, frame: np.ndarray, record: dict) -> None:
        """The frame's PNG (atomic), then its record: a frame is finished once both are on disk."""
        from PIL import Image

        image = Image.fromarray(frame)
        atomic_write(self.frame_path(index), lambda fh: image.save(fh, format="PNG", compress_level=PNG_LEVEL))
        record = {"index": index, **record}
        self._writer.write(record)
        self.records[index] = record

    def load(self, index: int) -> np.ndarray:
        from PIL import Image

        with Image.open(self.frame_path(index)) as image:
            return np.asarray(image.convert("RGB"))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)


__all__ = ["WorkFolder", "job_key", "work_folder"]
