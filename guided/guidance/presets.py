"""Style presets: JSON files named by their stem (`prompts/ink-wash.json` is the preset `ink-wash`).

A preset file is one JSON object with these fields:

- `description` (str, one line), `prompt` (str, non-empty), `negative_prompt` (str, may be empty);
- `strength` (number, 0 < s <= 1): the img2img strength, how much of the photo is re-imagined;
- `weights` (object): guidance weights by term, any of `clip_text`, `clip_style`, `gram`,
  `content`, `tv` (the field names of `guided.GuidanceConfig`), each a number >= 0 (0 = off);
- optional `guidance_scale` (number > 0, classifier-free guidance) and `num_inference_steps`
  (int >= 1); null or absent means "the pipeline's default".

Weight scale used by the built-in presets: relative multipliers where `clip_text: 1.0` is a
standard-strength pull towards the prompt and every other term is on the same footing (they assume
the pipeline normalises each term's gradient, so a weight says how much of the step that term
gets). Typical values are 0-2. `tv` is the one term that pulls against texture: `GuidanceConfig`
says why its default is 0.5 (below ~0.25 the other terms' noise outweighed it, on tiny test
models); the built-in presets set it to 0-0.1 on purpose, because a style preset asks for texture
(brush strokes, grain, hatching) that smoothing would flatten. Neither value has been calibrated on
the real Stable Diffusion and CLIP weights (none can be downloaded here): see the README.

Where presets come from, later folders overriding earlier ones with the same stem:
the built-in `prompts/` folder, the folders in `GUIDED_PRESETS_DIR` (os.pathsep-separated), then
the folders passed as `dirs=`. A malformed file is an error naming the file and the field.
"""
from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guided import validate
from guided.constants import GUIDANCE_TERMS
from guided.errors import GuidedError

#: The project's own presets: `prompts/` beside the package in a source checkout or editable
#: install, `guided/prompts/` inside an installed wheel (pyproject maps one onto the other).
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_SOURCE_PRESET_DIR = _PACKAGE_DIR.parent / "prompts"
BUILTIN_PRESET_DIR = _SOURCE_PRESET_DIR if _SOURCE_PRESET_DIR.is_dir() else _PACKAGE_DIR / "prompts"
#: Built-in preset folders, lowest priority first. `preset_dirs()` adds the user's folders.
PRESET_DIRS: tuple[Path, ...] = (BUILTIN_PRESET_DIR,)
#: Environment variable with the user's own preset folders (os.pathsep-separated).
ENV_PRESETS_DIR = "GUIDED_PRESETS_DIR"

_REQUIRED = ("description", "prompt", "negative_prompt", "strength", "weights")
_OPTIONAL = ("guidance_scale", "num_inference_steps")


@dataclass
class Preset:
    """One style preset, validated. `weights` holds only the terms the file sets."""

    name: str
    description: str
    prompt: str
    negative_prompt: str
    strength: float
    weights: dict[str, float] = field(default_factory=dict)
    guidance_scale: float | None = None
    num_inference_steps: int | None = None
    path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, for manifests and `guided presets --json`."""
        return {"name": self.name, "description": self.description, "prompt": self.prompt,
                "negative_prompt": self.negative_prompt, "strength": self.strength,
                "weights": dict(self.weights), "guidance_scale": self.guidance_scale,
                "num_inference_steps": self.num_inference_steps,
                "path": str(self.path) if self.path else None}


def preset_dirs(dirs: Iterable[str | Path] | None = None) -> list[Path]:
    """Preset folders, lowest priority first: built-in, `GUIDED_PRESETS_DIR`, then `dirs`.

    A folder the user named that does not exist is an error; a missing built-in folder is not."""
    found = [d for d in PRESET_DIRS if d.is_dir()]
    env = os.environ.get(ENV_PRESETS_DIR, "")
    for entry in (e for e in env.split(os.pathsep) if e.strip()):
        found.append(_user_dir(entry, f"{ENV_PRESETS_DIR} folder"))
    if isinstance(dirs, (str, Path)):
        dirs = [dirs]
    for entry in dirs or ():
        found.append(_user_dir(entry, "preset folder"))
    return found


def _user_dir(entry: str | Path, what: str) -> Path:
    folder = Path(entry).expanduser()
    if not folder.is_dir():
        raise GuidedError(f"{what} '{entry}' does not exist or is not a folder")
    return folder


def _preset_files(dirs: Iterable[str | Path] | None) -> dict[str, Path]:
    """Stem -> file, later folders overriding earlier ones. Hidden files are skipped."""
    files: dict[str, Path] = {}
    for folder in preset_dirs(dirs):
        for path in sorted(folder.glob("*.json")):
            if not path.name.startswith(".") and path.is_file():
                files[path.stem] = path
    return files


def list_presets(dirs: Iterable[str | Path] | None = None) -> list[Preset]:
    """Every preset (parsed and validated), sorted by name."""
    return [parse_preset_file(path) for _, path in sorted(_preset_files(dirs).items())]


def load_preset(name_or_path: str | Path, dirs: Iterable[str | Path] | None = None) -> Preset:
    """The preset called `name_or_path`, or the preset file at that path (a `.json` path or any
    name containing a folder separator). Unknown names list the available ones."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith(".json") or os.sep in text or "/" in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise GuidedError(f"preset file '{text}' does not exist")
        return parse_preset_file(path)
    files = _preset_files(dirs)
    if text not in files:
        names = sorted(files)
        close = difflib.get_close_matches(text, names, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise GuidedError(f"unknown preset '{text}'{hint}; available: {', '.join(names) or 'none'}")
    return parse_preset_file(files[text])


def parse_preset_file(path: str | Path) -> Preset:
    """Read and validate one preset file; every error names the file and the field."""
    path = Path(path)
    where = f"preset file '{path}'"
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GuidedError(f"{where} cannot be read: {' '.join(str(exc).split())}") from None
    data = validate.json_object(raw, where)
    return preset_from_dict(data, name=path.stem, path=path, where=where)


def preset_from_dict(data: dict, *, name: str, path: Path | None = None,
                     where: str | None = None) -> Preset:
    """Validate a preset's fields (as read from JSON) into a `Preset`."""
    where = where or f"preset '{name}'"
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise GuidedError(f"{where}: unknown field `{unknown[0]}` (known fields: "
                          f"{', '.join(_REQUIRED + _OPTIONAL)})")
    for key in _REQUIRED:
        if key not in data:
            raise GuidedError(f"{where}: missing field `{key}`")
    description = _string(data, "description", where, allow_empty=False)
    if "\n" in description or "\r" in description:
        raise GuidedError(f"{where}: field `description` must be one line")
    strength = _number(data["strength"], "strength", where)
    if not 0 < strength <= 1:
        raise GuidedError(f"{where}: field `strength` must be in (0, 1], got {strength}")
    guidance_scale = data.get("guidance_scale")
    if guidance_scale is not None:
        guidance_scale = _number(guidance_scale, "guidance_scale", where)
        if guidance_scale <= 0:
            raise GuidedError(f"{where}: field `guidance_scale` must be > 0, got {guidance_scale}")
    steps = data.get("num_inference_steps")
    if steps is not None:
        try:
            validate.integer(steps, "num_inference_steps", low=1)
        except GuidedError as exc:
            raise GuidedError(f"{where}: field {exc}") from None
    return Preset(name=name, description=description,
                  prompt=_string(data, "prompt", where, allow_empty=False),
                  negative_prompt=_string(data, "negative_prompt", where, allow_empty=True),
                  strength=strength, weights=_weights(data["weights"], where),
                  guidance_scale=guidance_scale, num_inference_steps=steps, path=path)


def _string(data: dict, key: str, where: str, *, allow_empty: bool) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise GuidedError(f"{where}: field `{key}` must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise GuidedError(f"{where}: field `{key}` must not be empty")
    return value


def _number(value: Any, key: str, where: str) -> float:
    try:
        return validate.number(value, key)
    except GuidedError as exc:
        raise GuidedError(f"{where}: field {exc}") from None


def _weights(value: Any, where: str) -> dict[str, float]:
    if not isinstance(value, dict):
        raise GuidedError(f"{where}: field `weights` must be an object, got {type(value).__name__}")
    weights = {}
    for key, weight in value.items():
        if key not in GUIDANCE_TERMS:
            raise GuidedError(f"{where}: unknown weight `weights.{key}` (known: {', '.join(GUIDANCE_TERMS)})")
        weight = _number(weight, f"weights.{key}", where)
        if weight < 0:
            raise GuidedError(f"{where}: field `weights.{key}` must be >= 0, got {weight}")
        weights[key] = weight
    return weights
