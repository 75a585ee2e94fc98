"""What the web UI's buttons do: queue a job on the server's own queue (the same checks as the REST
API) and follow it, yielding progress, the step preview, the loss curves and finally the result.
Kept apart from the layout (`ui`) so it reads, and is tested, without a browser."""
from __future__ import annotations

import html
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from guided.errors import GuidedError, ImageLoadError, one_line
from guided.serve.options import check_options
from guided.serve.store import FINAL

logger = logging.getLogger(__name__)

#: How often the UI looks at a running job: smooth enough for a progress bar, cheap on the server.
POLL_SECONDS = 0.25
#: The longest the UI follows one job before it says so (the job itself goes on; its record stays).
FOLLOW_LIMIT_SECONDS = 6 * 3600


@dataclass
class Update:
    """One refresh of the result panel; None leaves a part as it is."""

    status: str  # HTML: the progress bar and the status line
    preview: Image.Image | None = None
    losses: Image.Image | None = None  # the loss curves
    result: tuple[Image.Image, Image.Image] | None = None  # (before, after) for the slider
    info: str | None = None  # Markdown: time, memory, notes
    download: str | None = None  # HTML: the download link
    error: str | None = None  # one readable line
    job_id: str | None = None
    rows: list[list] | None = None  # compare: the metrics table
    report: Image.Image | None = None  # compare: the report's grid


def start_job(state, method: str, photo: str | None, styles: list[str] | None, options: dict) -> str:
    """Queue a job from the UI; returns its id. Raises `GuidedError` with one readable line."""
    if not photo:
        raise GuidedError("Upload a photo first")
    styles = [s for s in (styles or []) if s]
    options = check_options(method, {k: v for k, v in options.items() if v is not None}, styles=len(styles),
                            nets=state.nets.names)
    if method == "fast" and state.nets.why_unavailable():
        raise GuidedError(state.nets.why_unavailable())
    record = state.store.new(method, options)
    try:
        for path, what in [(photo, "photo"), *((s, "painting") for s in styles)]:
            saved = state.store.save_upload(record, _read_upload(path, state.ui_upload_dir,
                                                                   state.config.max_upload_bytes))
            from guided.io.images import load_image

            try:
                load_image(saved, what=what)
            except ImageLoadError as exc:
                raise ImageLoadError(str(exc).replace(f" '{saved}'", "")) from None
        state.queue.submit(record)
    except GuidedError:
        state.store.discard(record)
        raise
    return record.id


def _read_upload(path: str, folder: Path, limit: int) -> bytes:
    """The bytes of a file the UI library received; only files inside its upload folder are read
    (the UI library checks this too; a path from a client is never opened on its word)."""
    from guided.io.files import inside

    if not inside(Path(path), folder):
        raise GuidedError("That file was not uploaded through this page; upload it again")
    data = Path(path).read_bytes()
    if len(data) > limit:
        raise GuidedError(f"The file is {len(data) / 2 ** 20:.1f} MB; at most {limit / 2 ** 20:g} MB are allowed")
    return data


def progress_html(status: str, step: int = 0, total: int | None = None, note: str = "") -> str:
    fraction = min(1.0, step / total) if total else (1.0 if status == "done" else 0.0)
    label = {"idle": "Ready: add a photo, then press the button of a tab", "queued": "Waiting in the queue",
             "running": "Running", "done": "Done", "failed": "Failed", "cancelled": "Cancelled"}.get(status, status)
    steps = f" · step {step} of {total}" if total else ""
    return (f'<div class="g-progress g-{status}"><div class="g-bar" style="width:{fraction * 100:.0f}%"></div></div>'
            f'<div class="g-status">{html.escape(label + steps + (" · " + note if note else ""))}</div>')


#: One colour per loss term (guided terms, then the classic path's), so a curve keeps its colour.
TERM_COLORS = {"clip_text": "#4f46e5", "clip_style": "#db2777", "gram": "#059669", "content": "#d97706",
               "tv": "#64748b", "total": "#0f172a", "style": "#7c3aed"}
#: The loss plot is redrawn at most this often while a job runs (it costs ~50 ms of CPU).
PLOT_EVERY_SECONDS = 1.0


def loss_curves(rows: list[dict]) -> Image.Image:
    """Per-step, per-term loss curves (log scale) as an image: drawn on the server with matplotlib's
    object API (no pyplot state, safe in threads), so the page needs no charting script."""
    import io

    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6, 3.0), dpi=100)
    ax = fig.subplots()
    terms = [t for t in TERM_COLORS if any(t in r for r in rows)]
    terms += sorted({k for r in rows for k in r} - set(terms) - {"step"})
    for term in terms:
        points = [(r["step"], r[term]) for r in rows if term in r and r[term] > 0]
        if points:
            ax.plot(*zip(*points), label=term, color=TERM_COLORS.get(term), linewidth=1.6)
    ax.set_yscale("log" if any(ax.get_lines()) else "linear")
    ax.set_xlabel("step")
    ax.set_title("loss per step (unweighted terms)", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.spines[["top", "right"]].set_visible(False)
    if ax.get_lines():
        ax.legend(fontsize=8, frameon=False, loc="best")
    else:
        ax.text(0.5, 0.5, "no losses yet", ha="center", va="center", transform=ax.transAxes, alpha=0.6)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return Image.open(buffer).convert("RGB")


def follow(state, job_id: str) -> Iterator[Update]:
    """Updates for job `job_id` until it ends (bounded by `FOLLOW_LIMIT_SECONDS`)."""
    deadline = time.monotonic() + FOLLOW_LIMIT_SECONDS
    shown_losses, drawn_at = 0, 0.0
    while time.monotonic() < deadline:
        record = state.store.get(job_id)
        if record is None:
            yield Update(progress_html("failed"), error="This job is gone")
            return
        if record.status in FINAL:
            yield finished(state, record)
            return
        preview = state.queue.preview(job_id)
        losses = None
        if len(record.losses) != shown_losses and time.monotonic() - drawn_at >= PLOT_EVERY_SECONDS:
            losses, shown_losses, drawn_at = loss_curves(record.losses), len(record.losses), time.monotonic()
        yield Update(progress_html(record.status, record.step, record.total),
                     preview=Image.open(_bytes_io(preview)) if preview else None, losses=losses, job_id=job_id)
        time.sleep(POLL_SECONDS)
    yield Update(progress_html("running", note="still running; see the job list"), job_id=job_id)


def _bytes_io(data: bytes):
    import io

    return io.BytesIO(data)


def finished(state, record) -> Update:
    """The final update: result, time, memory, download link; or the error line."""
    status = progress_html(record.status, record.step, record.total)
    if record.status != "done":
        return Update(status, error=one_line(record.error or record.status), job_id=record.id,
                      losses=loss_curves(record.losses))
    path = state.store.result_path(record.id)
    after = Image.open(path).convert("RGB")
    before = Image.open(state.store.input_paths(record)[0]).convert("RGB").resize(after.size, Image.LANCZOS)
    notes = "".join(f"\n- {html.escape(n)}" for n in record.notes[:5])
    tiny = " · **tiny random models: not a real stylization**" if state.config.tiny else ""
    info = (f"**{record.method}** · {record.seconds:.1f} s · peak memory {record.peak_memory_mb:.0f} MB · "
            f"{after.width}×{after.height} px{tiny}{notes}")
    link = (f'<a class="g-download" href="/api/v1/jobs/{record.id}/image" download="guided-{record.id[:8]}.png">'
            f"Download PNG (with its manifest)</a>")
    if record.method == "compare":  # the grid already holds the photo: no before/after
        rows = [[r.get("label") or r.get("name"),
                 ", ".join(f"{k} {_fmt(v)}" for k, v in (r.get("metrics") or {}).items() if v is not None)]
                for r in record.extra.get("rows", [])]
        return Update(status, info=info, download=link, job_id=record.id, rows=rows, report=after)
    return Update(status, result=(before, after), info=info, download=link, job_id=record.id,
                  losses=loss_curves(record.losses))


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def cancel(state, job_id: str | None) -> str:
    """Cancel the job the UI follows; says what happened."""
    record = state.store.get(job_id or "")
    if record is None or record.status in FINAL:
        return "Nothing to cancel"
    state.queue.cancel(record)
    return "Cancelling…"
