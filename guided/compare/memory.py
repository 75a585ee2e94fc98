"""Peak resident memory of this process, per stage of a run (Linux VmHWM with a reset that is
probed before it is trusted; elsewhere the process peak)."""
from __future__ import annotations

import mmap
import re
import resource
import sys
from pathlib import Path


class PeakMemory:
    """Peak resident memory of this process per stage.

    Linux: VmHWM from /proc/self/status, reset before each stage by writing 5 to
    /proc/self/clear_refs, so each stage reports its own peak (models already loaded included).
    Some kernels and sandboxes accept that write and ignore it; a probe at construction checks that
    the reset really lowers the peak. Where it does not (and off Linux): ru_maxrss, the process peak
    since start, which only grows (stated in `method`)."""

    PROBE_MB = 64  # big enough to stand out from allocator noise, small enough to cost nothing

    def __init__(self) -> None:
        self.per_stage = self._reset_works()
        self.method = ("peak RSS of the process during the stage (Linux VmHWM, reset per stage via "
                       "/proc/self/clear_refs)" if self.per_stage else
                       "peak RSS of the process since it started (getrusage ru_maxrss; not reset per stage)")

    @classmethod
    def _reset_works(cls) -> bool:
        """Raise the peak with a short-lived block, reset, and check the peak came back down."""
        if not _clear_refs():
            return False
        # An anonymous mapping, every page written, then unmapped: the kernel records the peak at
        # munmap and RSS drops back (a freed Python object may stay resident in the heap instead).
        chunk = b"x" * 2 ** 20
        with mmap.mmap(-1, cls.PROBE_MB * 2 ** 20) as block:
            for offset in range(0, len(block), len(chunk)):
                block[offset:offset + len(chunk)] = chunk
        if not _clear_refs():
            return False
        status = _memory_status()
        if status is None:
            return False
        hwm_kb, rss_kb = status
        return hwm_kb - rss_kb < cls.PROBE_MB * 1024 // 2

    def reset(self) -> None:
        if self.per_stage:
            _clear_refs()

    def peak_mb(self) -> float:
        if self.per_stage:
            return round(_memory_status()[0] / 1024, 1)
        scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2 ** 20, 1)


def _clear_refs() -> bool:
    """Ask Linux to reset this process's peak RSS (VmHWM) to its current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _memory_status() -> tuple[int, int] | None:
    """(VmHWM, VmRSS) in kB, read together from /proc/self/status; None where it has neither."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    hwm, rss = (re.search(rf"{key}:\s+(\d+)\s+kB", text) for key in ("VmHWM", "VmRSS"))
    return (int(hwm.group(1)), int(rss.group(1))) if hwm and rss else None
