"""One place that checks user-given values: the CLI, the Python API and the REST API all call these.

Each check raises `GuidedError` with one line that names the option (as the caller spells it:
`--style-weights` on the CLI, `style_weights` in Python) and the value it got, before any model
loads. Nothing is corrected silently.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from guided.errors import GuidedError


def number(value, name: str, *, low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False, integer: bool = False) -> float | int:
    """`value` as a finite number (an int with `integer`) within [low, high]; `*_open` excludes the bound."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        raise GuidedError(f"`{name}` must be {kind}, got {value!r}")
    if not math.isfinite(value):
        raise GuidedError(f"`{name}` must be a finite number, got {value!r}")
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        span = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise GuidedError(f"`{name}` must be in {span}, got {value!r}")
    return int(value) if integer else float(value)


def parse_floats(text: str, name: str) -> list[float]:
    """Comma-separated numbers, as the CLI takes lists (`--style-weights 0.7,0.3`)."""
    try:
        return [float(v) for v in str(text).split(",")]
    except ValueError:
        raise GuidedError(f"`{name}` must be comma-separated numbers, got {text!r}") from None


def style_weights(weights: Sequence[float] | None, count: int, *, name: str = "style_weights") -> list[float]:
    """Blend weights of `count` style images: one each, finite, >= 0, with a positive sum.

    None means equal weights. Weights are relative (the blend divides by their sum)."""
    if weights is None:
        return [1.0] * count
    values = [number(w, name) for w in weights]
    if len(values) != count:
        raise GuidedError(f"`{name}` has {len(values)} values for {count} style image(s): {values}")
    if any(w < 0 for w in values) or sum(values) <= 0:
        raise GuidedError(f"`{name}` must be >= 0 with a positive sum, got {values}")
    return values
