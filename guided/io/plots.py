"""Plots of runs: loss curves as PNG (matplotlib's Agg backend, imported only when plotting)."""
from __future__ import annotations

from pathlib import Path

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
