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
        span = f"{left}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}{right}"
        raise GuidedError(f"`{name}` must be in {span}, got {value!r}")
    return int(value) if integer else float(value)


def integer(value, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """`value` as an int within [low, high]; unlike `number(..., integer=True)` a float such as 3.0 is
    refused, for fields used as counts or sizes as they are given (a dataclass field, a JSON value)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise GuidedError(f"`{name}` must be an integer, got {value!r}")
    return number(value, name, low=low, high=high, integer=True)


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


#: Ranges of the diffusion path's numbers (the CLI, `Stylizer.run`, compare, batch and the REST API).
#: steps: diffusers' schedulers are trained on 1000 timesteps, and SD 1.x/2.x's (steps_offset 1, "leading"
#: spacing) put the 1000th step at timestep 1000, past the table: diffusers' own img2img fails there, so
#: 999; guidance_scale: classifier-free guidance above ~30 saturates every image; size: the loader's
#: input cap, SD works at 512-1024.
DIFFUSION_RANGES = {"strength": (0.0, 1.0), "steps": (1, 999), "guidance_scale": (0.0, 100.0), "size": (32, 4096)}
#: How the CLI spells each of them.
DIFFUSION_FLAGS = {"strength": "--strength", "steps": "--steps", "guidance_scale": "--guidance-scale",
                   "size": "--size"}


def diffusion_options(*, cli: bool = False, **values) -> None:
    """Check the diffusion path's numbers (None = not given): strength in (0, 1], steps and size
    integers in range, guidance_scale finite and in range."""
    for key, value in values.items():
        if value is None:
            continue
        low, high = DIFFUSION_RANGES[key]
        name = DIFFUSION_FLAGS[key] if cli else key
        number(value, name, low=low, high=high, low_open=key == "strength", integer=key in {"steps", "size"})
    steps, strength = values.get("steps"), values.get("strength")
    if steps is not None and strength is not None and int(steps * strength) < 1:
        flag = DIFFUSION_FLAGS if cli else {k: k for k in DIFFUSION_FLAGS}
        least = math.ceil(1 / strength)
        least += int(least * strength) < 1  # float rounding: 3 x 0.3333 is 0.9999
        more_steps = f"`{flag['steps']}` {least} or more, or " if least <= DIFFUSION_RANGES["steps"][1] else ""
        raise GuidedError(f"`{flag['strength']}` {strength:g} of `{flag['steps']}` {steps} is no denoising step "
                          f"(img2img runs int(steps x strength) of them): give {more_steps}"
                          f"`{flag['strength']}` {math.ceil(1e4 / steps) / 1e4:g} or more")


# -- option sets given as data (the REST API's `options` JSON; the same names as the Python API) -----------
def known_keys(options: object, known: Sequence[str], *, name: str = "options") -> dict:
    """`options` as a dict whose keys are all in `known`; an unknown key is named with the known ones."""
    if not isinstance(options, dict):
        raise GuidedError(f"`{name}` must be a JSON object, got {type(options).__name__}")
    for key in options:
        if key not in known:
            close = [k for k in known if k.replace("_", "") == str(key).replace("_", "").replace("-", "")]
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            raise GuidedError(f"`{key}` is not an option here{hint}; known: {', '.join(sorted(known))}")
    return dict(options)


def json_object(text: str, what: str) -> dict:
    """`text` parsed as a JSON object; `what` names it in the error (e.g. "`options`", "metadata in 'a.json'")."""
    import json

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GuidedError(f"{what} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(data, dict):
        raise GuidedError(f"{what} must be a JSON object, got {type(data).__name__}")
    return data


def text(value, name: str, *, max_length: int = 2000, allow_empty: bool = True) -> str:
    """A string of at most `max_length` characters (a prompt, a name)."""
    if not isinstance(value, str):
        raise GuidedError(f"`{name}` must be a string, got {value!r}")
    if len(value) > max_length:
        raise GuidedError(f"`{name}` is {len(value)} characters long; at most {max_length} are allowed")
    if not allow_empty and not value.strip():
        raise GuidedError(f"`{name}` must not be empty")
    return value


def flag(value, name: str) -> bool:
    """A boolean (true/false in JSON; 0 and 1 are not accepted, so a typo is not read as a choice)."""
    if not isinstance(value, bool):
        raise GuidedError(f"`{name}` must be true or false, got {value!r}")
    return value


def choice(value, name: str, choices: Sequence[str]) -> str:
    """One of `choices`, spelled exactly."""
    if not isinstance(value, str) or value not in choices:
        raise GuidedError(f"`{name}` must be one of {', '.join(choices)}, got {value!r}")
    return value


def numbers(value, name: str) -> list[float]:
    """A list of numbers (`style_weights`, `layer_weights` as JSON arrays)."""
    if not isinstance(value, (list, tuple)):
        raise GuidedError(f"`{name}` must be a list of numbers, got {value!r}")
    return [number(v, f"{name}[{i}]") for i, v in enumerate(value)]
