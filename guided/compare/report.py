"""The files of a compare report: a Markdown table and one HTML page (the grid and the loss curves
are drawn by guided.io.plots).

Everything here works on plain data (PIL images, lists of dicts): `guided.compare` produces the
data, this module only writes it. The HTML page is self-contained: images are inline
`data:image/png;base64` URIs and the style sheet is inline, so it reads offline from any folder.
"""
from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

#: Metric columns, in table order, with a header and how each value reads.
METRIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("clip_text", "CLIPScore to the prompt: 100·max(cos, 0), higher = closer to the prompt"),
    ("clip_style", "CLIP image cosine to the painting, higher = closer"),
    ("clip_direction", "CLIP directional similarity of the edit (photo → output vs source text → prompt), "
                       "higher = better"),
    ("gram", "VGG Gram distance to the painting, lower = closer style"),
    ("content", "VGG content distance to the photo, lower = layout kept"),
    ("lpips", "LPIPS distance to the photo, lower = more similar (null: weights absent)"),
    ("seconds", "wall time of the stage, seconds"),
    ("peak_memory_mb", "peak resident memory of the process during the stage, MB"),
)
METRIC_KEYS = tuple(key for key, _ in METRIC_COLUMNS)

def _cell(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def metrics_markdown(rows: Sequence[dict], *, title: str, notes: Sequence[str] = ()) -> str:
    """A Markdown table: one row per output (`name`, `label`, `metrics`), one column per metric."""
    lines = [f"# {title}", "", "| output | " + " | ".join(METRIC_KEYS) + " |",
             "|---|" + "---:|" * len(METRIC_KEYS)]
    for row in rows:
        values = " | ".join(_cell(row["metrics"].get(k)) for k in METRIC_KEYS)
        lines.append(f"| {row['label']} | {values} |")
    lines += ["", "Columns:", ""] + [f"- `{k}`: {d}" for k, d in METRIC_COLUMNS]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def data_uri(path_or_image: str | Path | Image.Image) -> str:
    """A PNG as a `data:image/png;base64,...` URI."""
    if isinstance(path_or_image, Image.Image):
        buffer = io.BytesIO()
        path_or_image.save(buffer, format="PNG")
        raw = buffer.getvalue()
    else:
        raw = Path(path_or_image).read_bytes()
    return "data:image/png;base64," + base64.b64encode(raw).decode("ascii")


_CSS = """
.guided-report{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1200px;color:#222;padding:0 1em}.guided-report h1{font-size:1.5em}.guided-report h2{font-size:1.15em;
margin-top:1.6em}.guided-report .smoke{background:#fff3cd;border:2px solid #d39e00;padding:.7em 1em;font-weight:600}
.guided-report table{border-collapse:collapse;font-size:.92em}.guided-report th,.guided-report td{border:1px solid #ccc;
padding:.3em .6em;text-align:right}.guided-report th:first-child,.guided-report td:first-child{text-align:left}
.guided-report thead th{background:#f2f2f2}.guided-report td.null{color:#999}
.guided-report img{max-width:100%;border:1px solid #ddd}.guided-report dt{font-family:monospace;font-weight:600}
.guided-report dd{margin:0 0 .4em 1.2em}.guided-report code{background:#f4f4f4;padding:0 .2em}
.guided-report .small{font-size:.85em;color:#555}
"""


def render_html(*, title: str, smoke: str | None, inputs: dict, grid_png: str | Path, curves_png: str | Path | None,
                rows: Sequence[dict], notes: Sequence[str], command: str | None = None) -> str:
    """The report page; every image inline, nothing fetched. Styles are scoped to `.guided-report`,
    so the page can also be shown inside a notebook without restyling it."""
    e = html.escape
    head = "".join(f"<th>{e(k)}</th>" for k in METRIC_KEYS)
    body = []
    for row in rows:
        values = [row["metrics"].get(k) for k in METRIC_KEYS]
        cells = "".join(f'<td class="{"null" if v is None else ""}">{e(_cell(v))}</td>' for v in values)
        body.append(f"<tr><td>{e(row['label'])}</td>{cells}</tr>")
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
             f'<style>{_CSS}</style></head><body><div class="guided-report"><h1>{e(title)}</h1>']
    if smoke:
        parts.append(f'<p class="smoke" id="smoke-run">{e(smoke)}</p>')
    parts.append("<h2>Inputs</h2><ul>" + "".join(f"<li><b>{e(str(k))}</b>: {e(str(v))}</li>" for k, v in inputs.items())
                 + "</ul>")
    if command:
        parts.append(f'<p class="small">Command: <code>{e(command)}</code></p>')
    parts.append(f'<h2>Results</h2><img id="grid" alt="grid of the photo, the painting and every output" '
                 f'src="{data_uri(grid_png)}">')
    parts.append(f'<h2>Metrics</h2><table id="metrics"><thead><tr><th>output</th>{head}</tr></thead>'
                 f"<tbody>{''.join(body)}</tbody></table>")
    parts.append("<dl>" + "".join(f"<dt>{e(k)}</dt><dd>{e(d)}</dd>" for k, d in METRIC_COLUMNS) + "</dl>")
    if curves_png is not None:
        parts.append(f'<h2>Loss curves</h2><img id="curves" alt="loss curves" src="{data_uri(curves_png)}">')
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    parts.append('<p class="small">Every image written by guided carries its parameters (PNG text chunk and '
                 '<code>.json</code> sidecar) and an AI-generated marker; <code>guided inspect FILE.png</code> '
                 "prints them.</p></div></body></html>")
    return "\n".join(parts)
