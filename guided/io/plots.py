"""Pictures of runs: labelled image grids (PIL) and loss curves as PNG (matplotlib's Agg backend,
imported only when plotting). Used by compare reports, training previews and the classic path."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from guided.constants import GATYS_TERMS
from guided.io.files import atomic_write


def plot_history(history: list[dict], path: str | Path, *, title: str | None = None) -> Path:
    """Per-term loss curves of a run's `history` on a log scale, written to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    if not history:
        raise ValueError("`history` is empty: nothing to plot")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    try:
        steps = [h.get("iteration", i) for i, h in enumerate(history)]
        for term in GATYS_TERMS:  # drawn in this order, when present
            values = [h[term] for h in history if term in h]
            if values and any(v > 0 for v in values):
                ax.plot(steps[: len(values)], [max(v, 1e-12) for v in values], label=term)
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("weighted loss")
        ax.set_title(title or "loss per iteration")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        atomic_write(path, lambda fh: fig.savefig(fh, format="png"))
    finally:
        plt.close(fig)
    return path


CELL = 192  # grid cell height in pixels: tiny 64 px outputs are scaled up to stay visible
LABEL_HEIGHT = 34


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has a single bitmap size
        return ImageFont.load_default()


def make_grid(cells: Sequence[tuple[str, Image.Image]], *, height: int = CELL, title: str | None = None) -> Image.Image:
    """Images side by side at one height (aspect kept), each labelled underneath."""
    if not cells:
        raise ValueError("`cells` is empty: nothing to put in the grid")
    scaled = []
    for label, image in cells:
        w, h = image.size
        width = max(1, round(w * height / h))
        resample = Image.NEAREST if h < height / 2 else Image.LANCZOS  # tiny outputs: show real pixels
        scaled.append((label, image.convert("RGB").resize((width, height), resample)))
    pad = 6
    top = 28 if title else 0
    total_w = sum(im.width for _, im in scaled) + pad * (len(scaled) + 1)
    grid = Image.new("RGB", (total_w, top + height + LABEL_HEIGHT + pad), "white")
    draw = ImageDraw.Draw(grid)
    font, small = _font(14), _font(12)
    if title:
        draw.text((pad, 6), title, fill=(150, 0, 0), font=font)
    x = pad
    for label, image in scaled:
        grid.paste(image, (x, top))
        for i, line in enumerate(_wrap(draw, label, small, image.width)):
            draw.text((x, top + height + 4 + 14 * i), line, fill="black", font=small)
        x += image.width + pad
    return grid


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    """`text` in at most two lines of `width` pixels (the second shortened when needed)."""
    words, lines = text.split(), [""]
    for word in words:
        candidate = f"{lines[-1]} {word}".strip()
        if draw.textlength(candidate, font=font) <= width or not lines[-1]:
            lines[-1] = candidate
        elif len(lines) < 2:
            lines.append(word)
        else:
            lines[-1] = candidate
    return [_fit(draw, line, font, width) for line in lines]


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """`text` shortened with an ellipsis until it fits `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while len(text) > 1 and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def curve_points(history: Sequence[dict], key: str, x_key: str | None = None) -> list[tuple[float, float]]:
    """(x, value) of each record holding a finite number under `key`; x is the record's `x_key` value,
    or its position in `history` when `x_key` is None."""
    return [(h[x_key] if x_key is not None else i, h[key]) for i, h in enumerate(history)
            if isinstance(h.get(key), (int, float)) and math.isfinite(h[key])]


def plot_curves(panels: Sequence[tuple[str, list[dict], str]], path: str | Path, x_key: str | None = None) -> Path:
    """One panel per run: (title, history, x-axis label); each numeric key except bookkeeping a line.

    Each record's x is its `x_key` value where given (a subsampled history keeps its true step numbers),
    else its position in the history.

    Values are drawn on a log scale when none is negative (losses spanning decades; exact zeros, such
    as the content loss of a content-initialised first iteration, are left out), else linear."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = [p for p in panels if p[1]]
    if not panels:
        raise ValueError("`panels` hold no history: nothing to plot")
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), dpi=100, squeeze=False)
    skip = {"iteration", "step", "timestep", "guided", "size"}
    try:
        for ax, (title, history, xlabel) in zip(axes.flat, panels):
            keys = [k for k in dict.fromkeys(k for h in history for k in h) if k not in skip]
            series = {key: curve_points(history, key, x_key) for key in keys}
            log = all(v >= 0 for points in series.values() for _, v in points)
            for key, points in series.items():
                points = [(i, v) for i, v in points if v > 0] if log else points
                if points:
                    ax.plot([p[0] for p in points], [p[1] for p in points], label=key,
                            marker="." if len(points) < 30 else None)
            if log and any(series.values()):
                ax.set_yscale("log")
            ax.set_title(title, fontsize=10)
            ax.set_xlabel(xlabel)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(True, alpha=0.3)
            if keys:
                ax.legend(fontsize=8)
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path
