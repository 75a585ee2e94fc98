"""The `options` of a job, checked before it is queued: the option names of the Python API (read
from the signatures of `Stylizer.run`, `guided.gatys.stylize` and the fast stylizer), checked by
the functions the CLI and the Python API use (`guided.validate`, `GuidanceConfig`, the classic
presets' `override`). A bad option is one `GuidedError` line naming the option: a 422 in the API.
"""
from __future__ import annotations

import inspect
import re
from collections.abc import Callable

from guided import validate
from guided.constants import SCHEDULER_NAMES
from guided.errors import GuidedError

#: What a job can run: guided img2img, classic Gatys, a fast network, the compare report.
METHODS = ("stylize", "gatys", "fast", "compare")
#: Arguments of the Python API that a job sets itself (its uploads, device, progress) or that name
#: files on the server, which a client may never do.
_SET_BY_SERVER = {"self", "content", "style", "styles", "backbone", "device", "mixed_precision", "save_every",
                  "save_dir", "progress", "callback", "callback_on_step_end", "preserve_color"}
#: The options of `fast` (the fast stylizer's call: `size`, `preserve_color`) and of `compare`.
FAST_OPTIONS = ("net", "size", "preserve_color")
COMPARE_OPTIONS = ("prompt", "negative_prompt", "preset", "style_weights", "strength", "steps", "guidance_scale",
                   "seed", "size", "gatys_preset")
_FIELD = re.compile(r"`([^`]+)`")


def error_field(message: str) -> str | None:
    """The option a validation message names (its first `name` in backticks), for the JSON error."""
    match = _FIELD.search(message)
    return match.group(1).split("[")[0].split(".")[0] if match else None


def stylize_option_names() -> tuple[str, ...]:
    from guided.stylize import Stylizer

    return tuple(n for n in inspect.signature(Stylizer.run).parameters if n not in _SET_BY_SERVER)


def gatys_option_names() -> tuple[str, ...]:
    from guided.gatys.transfer import stylize

    return tuple(n for n in inspect.signature(stylize).parameters if n not in _SET_BY_SERVER)


def check_options(method: str, options: object, *, styles: int, nets: Callable[[], list[str]] | None = None) -> dict:
    """The job's options, validated for `method` with `styles` style images; raises `GuidedError`."""
    validate.choice(method, "method", METHODS)
    check = {"stylize": _stylize, "gatys": _gatys, "fast": _fast, "compare": _compare}[method]
    return check(options if options is not None else {}, styles, nets)


def _preset_name(value) -> str:
    """A style preset by name only: a path (which `load_preset` would open) is refused."""
    from guided.guidance.presets import list_presets

    names = [p.name for p in list_presets()]
    return validate.choice(value, "preset", names)


def _seed(value) -> int:
    return validate.number(value, "seed", low=0, high=2 ** 63 - 1, integer=True)


def _common_diffusion(opts: dict, styles: int) -> None:
    for key in ("prompt", "negative_prompt"):
        if opts.get(key) is not None:
            validate.text(opts[key], key)
    if opts.get("preset") is not None:
        _preset_name(opts["preset"])
    if opts.get("style_weights") is not None:
        validate.style_weights(validate.numbers(opts["style_weights"], "style_weights"), styles)
    validate.diffusion_options(**{k: opts.get(k) for k in ("strength", "steps", "guidance_scale", "size")})
    from guided.stylize import check_denoising_steps

    check_denoising_steps(opts.get("preset"), strength=opts.get("strength"), steps=opts.get("steps"))
    if opts.get("seed") is not None:
        _seed(opts["seed"])
    if not opts.get("preset") and not (opts.get("prompt") or "").strip() and not styles:
        raise GuidedError("`prompt` is empty, and there is no preset and no style image: nothing to stylize toward")


def _stylize(options, styles: int, nets) -> dict:
    from guided.stylize import guidance_from

    opts = validate.known_keys(options, stylize_option_names())
    _common_diffusion(opts, styles)
    if opts.get("guidance") is not None:
        if not isinstance(opts["guidance"], dict):
            raise GuidedError(f"`guidance` must be a JSON object of term weights and mode, got {opts['guidance']!r}")
        guidance_from({k: v for k, v in opts["guidance"].items() if k not in ("windows",)})
        if "windows" in opts["guidance"]:
            raise GuidedError("`guidance.windows` cannot be set through the API; use the Python API")
    if opts.get("preserve_color") is not None:
        validate.flag(opts["preserve_color"], "preserve_color")
    if opts.get("scheduler") is not None:
        validate.choice(opts["scheduler"], "scheduler", SCHEDULER_NAMES)
    return opts


def _gatys(options, styles: int, nets) -> dict:
    from guided.gatys.presets import PRESETS, get_preset, override

    opts = validate.known_keys(options, gatys_option_names())
    if styles < 1:
        raise GuidedError("`style` is missing: the classic method needs at least one style image")
    preset = validate.choice(opts.get("preset", "default"), "preset", list(PRESETS))
    if opts.get("style_weights") is not None:
        validate.style_weights(validate.numbers(opts["style_weights"], "style_weights"), styles)
    if opts.get("preserve_color") is not None:
        validate.flag(opts["preserve_color"], "preserve_color")
    if opts.get("seed") is not None:
        _seed(opts["seed"])
    preset_fields = {k: v for k, v in opts.items() if k not in ("preset", "style_weights", "seed")}
    override(get_preset(preset), **preset_fields)
    return opts


def _fast(options, styles: int, nets) -> dict:
    opts = validate.known_keys(options, FAST_OPTIONS)
    available = nets() if nets is not None else []
    if "net" not in opts:
        raise GuidedError(f"`net` is required: one of {', '.join(available) or '(no networks in --nets)'}")
    validate.choice(opts["net"], "net", available)
    if opts.get("size") is not None:
        validate.number(opts["size"], "size", low=16, high=4096, integer=True)
    if opts.get("preserve_color") is not None:
        validate.flag(opts["preserve_color"], "preserve_color")
    return opts


def _compare(options, styles: int, nets) -> dict:
    from guided.gatys.presets import PRESETS

    opts = validate.known_keys(options, COMPARE_OPTIONS)
    _common_diffusion(opts, styles)
    validate.choice(opts.get("gatys_preset", "default"), "gatys_preset", list(PRESETS))
    if styles < 1:
        raise GuidedError("`style` is missing: the compare report's classic stage needs a style image")
    return opts
