"""Job records on disk: one folder per job under `<out>/jobs/<id>/`, nothing lost across restarts.

    jobs/<id>/job.json          the record (atomic write at every change of status)
    jobs/<id>/inputs/<n>.upload the uploaded files, under names the server chose
    jobs/<id>/result.png        the result with its manifest (+ result.png.json), written atomically

Ids are 32 hex digits made by the server; a client's id is matched against that pattern before
it touches a path. At start, a record left `queued` or `running` by a process that stopped (a
shutdown, `kill -9`, a power cut) is marked `failed` with the reason; finished results stay readable.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from guided.io.files import atomic_write

logger = logging.getLogger(__name__)

#: What a job id looks like (uuid4 hex): the only ids that are ever looked up on disk.
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
#: The final states of a job (it passes through "queued" and "running" first).
FINAL = frozenset({"done", "failed", "cancelled"})
RESULT_NAME = "result.png"


@dataclass
class JobRecord:
    """Everything the API says about one job (GET /api/v1/jobs/{id})."""

    id: str
    method: str  # stylize | gatys | fast | compare
    options: dict
    status: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    step: int = 0  # steps done
    total: int | None = None  # steps in all, once known
    losses: list[dict] = field(default_factory=list)  # per-step loss terms so far (thinned when long)
    error: str | None = None  # one line, for failed and cancelled jobs
    seconds: float | None = None  # wall time of the run
    peak_memory_mb: float | None = None  # peak resident memory during the run
    result: str | None = None  # file name of the result inside the job folder
    notes: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)  # the server-named uploads, content first
    extra: dict = field(default_factory=dict)  # method-specific output (compare: its metrics rows)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["progress"] = {"step": self.step, "total": self.total}
        data["links"] = {"self": f"/api/v1/jobs/{self.id}",
                         "image": f"/api/v1/jobs/{self.id}/image" if self.status == "done" else None}
        data.pop("inputs")
        return data


class JobStore:
    """The records of all jobs, in memory and on disk under `root/jobs`; thread-safe."""

    def __init__(self, root: Path, *, max_losses: int = 2000):
        self.root = Path(root) / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_losses = max_losses
        self._lock = threading.RLock()
        self._jobs: dict[str, JobRecord] = {}
        self._recover()

    # -- paths ---------------------------------------------------------------------------------
    def folder(self, job_id: str) -> Path:
        if not JOB_ID.match(job_id):
            raise KeyError(job_id)
        return self.root / job_id

    def result_path(self, job_id: str) -> Path | None:
        record = self.get(job_id)
        if record is None or record.status != "done" or not record.result:
            return None
        path = self.folder(job_id) / record.result
        return path if path.is_file() else None

    # -- records -------------------------------------------------------------------------------
    def new(self, method: str, options: dict) -> JobRecord:
        record = JobRecord(id=uuid.uuid4().hex, method=method, options=options)
        (self.folder(record.id) / "inputs").mkdir(parents=True)
        with self._lock:
            self._jobs[record.id] = record
        return record

    def save_upload(self, record: JobRecord, data: bytes) -> Path:
        """Write an uploaded file under a name the server chooses (`<n>.upload`); the client's file
        name is never used."""
        path = self.folder(record.id) / "inputs" / f"{len(record.inputs)}.upload"
        atomic_write(path, data)
        record.inputs.append(path.name)
        return path

    def input_paths(self, record: JobRecord) -> list[Path]:
        return [self.folder(record.id) / "inputs" / name for name in record.inputs]

    def get(self, job_id: str) -> JobRecord | None:
        if not isinstance(job_id, str) or not JOB_ID.match(job_id):
            return None
        with self._lock:
            return self._jobs.get(job_id)

    def all(self) -> list[JobRecord]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda r: r.created)

    def update(self, record: JobRecord, *, persist: bool = True, **changes) -> JobRecord:
        """Apply `changes`; write the record (atomically) when `persist`."""
        with self._lock:
            for key, value in changes.items():
                setattr(record, key, value)
            if persist:
                self._write(record)
        return record

    def add_losses(self, record: JobRecord, row: dict) -> None:
        """Append one step's losses; past `max_losses` rows every other row is dropped, so a long run
        keeps its whole curve at a coarser grain and the record stays small."""
        with self._lock:
            record.losses.append(row)
            if len(record.losses) > self.max_losses:
                record.losses = record.losses[::2]

    def discard(self, record: JobRecord) -> None:
        """Forget a job that was never accepted (its upload was refused) and delete its folder."""
        import shutil

        with self._lock:
            self._jobs.pop(record.id, None)
        shutil.rmtree(self.folder(record.id), ignore_errors=True)

    def _write(self, record: JobRecord) -> None:
        data = asdict(record)
        atomic_write(self.folder(record.id) / "job.json", json.dumps(data, indent=1, allow_nan=False) + "\n")

    # -- restart -------------------------------------------------------------------------------
    def _recover(self) -> None:
        """Load every record; mark the ones a stopped process left unfinished as failed, delete the
        hidden temporary files a killed writer may have left, and drop folders without a record."""
        for folder in sorted(self.root.iterdir()):
            if not (folder.is_dir() and JOB_ID.match(folder.name)):
                continue
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
            path = folder / "job.json"
            try:
                record = JobRecord(**json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError) as exc:
                logger.warning("job folder %s has no readable record (%s); ignored", folder.name, exc)
                continue
            if record.status not in FINAL:
                was = record.status
                record.status, record.finished = "failed", time.time()
                record.error = (f"the server stopped while this job was {was}; nothing was written. "
                                "Submit it again")
                self._write(record)
            elif record.status == "done" and not (folder / (record.result or RESULT_NAME)).is_file():
                record.status, record.error = "failed", "the result file is missing (deleted after the run)"
                self._write(record)
            self._jobs[record.id] = record
        logger.info("%d job record(s) under %s", len(self._jobs), self.root)
