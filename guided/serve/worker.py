"""One worker thread runs jobs one at a time from a bounded queue (models are loaded once and a
second run in parallel would only halve the speed of both)."""
from __future__ import annotations

import collections
import logging
import threading
import time

from guided.errors import GuidedError, one_line
from guided.serve.runner import Control, JobCancelled, Runner
from guided.serve.store import FINAL, RESULT_NAME, JobRecord, JobStore

logger = logging.getLogger(__name__)

#: Why a job cut off by a shutdown failed (the record says so after a restart, too).
SHUTDOWN_REASON = "the server shut down while this job was running; nothing was written. Submit it again"


class QueueFull(GuidedError):
    """No room in the queue: a 429 with `Retry-After` (seconds)."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class JobQueue:
    """A bounded FIFO of job ids and the thread that works through it."""

    def __init__(self, store: JobStore, runner: Runner, *, size: int):
        from guided.compare.memory import PeakMemory

        self.store, self.runner, self.size = store, runner, size
        self._pending: collections.deque[str] = collections.deque()
        self._cond = threading.Condition()
        self._current: tuple[JobRecord, Control] | None = None
        self._durations: collections.deque[float] = collections.deque(maxlen=20)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._memory = PeakMemory()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="guided-serve-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking jobs, end the running one (failed, with the reason) and fail the queued ones."""
        with self._cond:
            self._stopping = True
            if self._current is not None:
                self._current[1].reason = SHUTDOWN_REASON
                self._current[1].cancel.set()
            pending, self._pending = list(self._pending), collections.deque()
            self._cond.notify_all()
        for job_id in pending:
            record = self.store.get(job_id)
            if record is not None and record.status == "queued":
                self.store.update(record, status="failed", finished=time.time(),
                                  error="the server shut down before this job ran. Submit it again")
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():  # a step that does not return: its record says why anyway
                current = self._current
                if current is not None and current[0].status == "running":
                    self.store.update(current[0], status="failed", finished=time.time(), error=SHUTDOWN_REASON)

    # -- the API's side --------------------------------------------------------------------------
    def submit(self, record: JobRecord) -> None:
        with self._cond:
            if self._stopping:
                raise QueueFull("the server is shutting down", 30)
            if len(self._pending) >= self.size:
                raise QueueFull(f"the queue is full ({self.size} jobs waiting); try again later", self.retry_after())
            self.store.update(record, status="queued")
            self._pending.append(record.id)
            self._cond.notify()

    def cancel(self, record: JobRecord) -> JobRecord:
        with self._cond:
            if record.id in self._pending:
                self._pending.remove(record.id)
                return self.store.update(record, status="cancelled", finished=time.time(),
                                         error="cancelled by the user before it ran")
            if self._current is not None and self._current[0].id == record.id:
                self._current[1].cancel.set()
        return record

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the mean recent run time times the jobs ahead."""
        mean = sum(self._durations) / len(self._durations) if self._durations else 5.0
        return max(1, min(3600, round(mean * (len(self._pending) + 1))))

    def preview(self, job_id: str) -> bytes | None:
        current = self._current
        return current[1].preview if current is not None and current[0].id == job_id else None

    def waiting(self) -> int:
        return len(self._pending)

    def running(self) -> str | None:
        current = self._current
        return current[0].id if current is not None else None

    # -- the worker's side -----------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                record = self.store.get(self._pending.popleft())
                if record is None or record.status != "queued":
                    continue
                control = Control()
                self._current = (record, control)
            try:
                self._run(record, control)
            finally:
                with self._cond:
                    self._current = None

    def _run(self, record: JobRecord, control: Control) -> None:
        from guided.io.images import save_image

        start = time.time()
        self.store.update(record, status="running", started=start)
        self._memory.reset()
        try:
            outcome = self.runner.run(record, control)
            if control.cancel.is_set():
                raise JobCancelled(control.reason)
            metadata = {**outcome.metadata, "serve": {"job": record.id, "method": record.method}}
            save_image(outcome.image, self.store.folder(record.id) / RESULT_NAME, metadata=metadata)
        except JobCancelled as exc:
            status = "failed" if str(exc) == SHUTDOWN_REASON else "cancelled"
            self._finish(record, start, status=status, error=str(exc))
            return
        except GuidedError as exc:
            self._finish(record, start, status="failed", error=one_line(exc))
            return
        except Exception as exc:  # noqa: BLE001 - the worker must survive any job
            logger.exception("job %s failed", record.id)
            self._finish(record, start, status="failed", error=f"internal error: {type(exc).__name__}: "
                                                               f"{one_line(exc)}")
            return
        self._durations.append(time.time() - start)
        self._finish(record, start, status="done", result=RESULT_NAME, notes=outcome.notes, extra=outcome.extra)

    def _finish(self, record: JobRecord, start: float, **changes) -> None:
        if record.status in FINAL:  # already failed by a shutdown that did not wait for us
            return
        now = time.time()
        self.store.update(record, finished=now, seconds=round(now - start, 3),
                          peak_memory_mb=self._memory.peak_mb(), **changes)
        logger.info("job %s %s in %.1f s", record.id, record.status, now - start)
