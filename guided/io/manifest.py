"""Reproducibility manifests: what produced an image, as plain JSON.

Every image the platform writes carries one (PNG text chunk and sidecar, see `guided.io.images`):
parameters, seed, models (ids and revisions, or local paths with their hashes), library versions,
device and precision, per-term loss traces, wall time and the AI-generated marker.
Nothing here imports torch or diffusers; versions come from the installed package metadata.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import math
import os
import platform
import sys
from importlib import metadata as _metadata
from pathlib import Path, PurePath
from typing import Any

from guided import __version__
from guided.errors import GuidedError
from guided.io.files import sha256_file
from guided.io.images import DIGITAL_SOURCE_TYPE, DIGITAL_SOURCE_TYPE_URI

#: Bumped when the layout of the manifest changes, so readers (`--from`) can tell.
MANIFEST_VERSION = 1

#: Distributions whose versions matter for reproducing a result; absent ones are left out.
TRACKED_PACKAGES = ("torch", "torchvision", "diffusers", "transformers", "open_clip_torch",
                    "accelerate", "safetensors", "pillow", "numpy")

#: Keys `build_manifest` owns; `extra` may not overwrite them.
RESERVED_KEYS = frozenset({
    "manifest_version", "kind", "created", "ai_generated", "digital_source_type",
    "digital_source_type_uri", "parameters", "seed", "models", "device", "precision", "losses",
    "seconds", "versions", "platform",
})


def build_manifest(*, kind: str, parameters: dict, seed: int | None, models: dict, device: str,
                   precision: str, losses: dict | list | None = None, seconds: float | None = None,
                   extra: dict | None = None) -> dict:
    """A JSON-ready manifest for one result of `kind` ("gatys", "stylize", "compare", ...).

    `extra` adds top-level keys (notices such as random weights, truncated prompts); it may not
    replace a key this function sets."""
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"`kind` must be a non-empty string, got {kind!r}")
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "kind": kind,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "ai_generated": True,
        "digital_source_type": DIGITAL_SOURCE_TYPE,
        "digital_source_type_uri": DIGITAL_SOURCE_TYPE_URI,
        "parameters": json_safe(parameters),
        "seed": json_safe(seed),
        "models": json_safe(models),
        "device": str(device),
        "precision": str(precision),
        "losses": json_safe(losses),
        "seconds": json_safe(seconds),
        "versions": library_versions(),
        "platform": platform_info(),
    }
    for key, value in (extra or {}).items():
        if key in RESERVED_KEYS:
            raise ValueError(f"`extra` key {key!r} would replace a manifest field; rename it")
        manifest[str(key)] = json_safe(value)
    return manifest


def library_versions() -> dict[str, str]:
    """Python, guided and every tracked distribution that is installed (metadata only, no import)."""
    versions = {"python": platform.python_version(), "guided": __version__}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = _metadata.version(name)
        except _metadata.PackageNotFoundError:
            continue
    return versions


def platform_info() -> dict[str, str]:
    return {"system": platform.system(), "release": platform.release(),
            "machine": platform.machine(), "python_implementation": platform.python_implementation()}


def json_safe(obj: Any) -> Any:
    """`obj` as plain JSON types: Paths -> str, tuples/sets -> lists, dataclasses -> dicts,
    tensors and numpy values -> numbers or lists (0-d -> a number), NaN/inf -> "nan"/"inf"/"-inf",
    enums -> their value, datetimes -> ISO strings; anything else -> its repr()."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return _safe_float(obj)
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return json_safe(obj.value)
    if isinstance(obj, dict):
        return {_key(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        items = [json_safe(v) for v in obj]
        return sorted(items, key=repr)  # sets have no order; sort so manifests are stable
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: json_safe(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    converted = _array_like(obj)
    if converted is not _MISSING:
        return converted
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return repr(obj)


_MISSING = object()


def _array_like(obj: Any) -> Any:
    """Tensors, numpy arrays and scalars, torch dtypes/devices; `_MISSING` for anything else.
    Only looks at libraries that are already imported, so it never imports torch itself."""
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(obj, torch.Tensor):
            value = obj.detach().cpu()
            return json_safe(value.item() if value.dim() == 0 else value.tolist())
        if isinstance(obj, (torch.dtype, torch.device)):
            return str(obj)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if isinstance(obj, numpy.ndarray):
            return json_safe(obj.tolist())
        if isinstance(obj, numpy.generic):
            return json_safe(obj.item())
    return _MISSING


def _safe_float(value: float) -> float | str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(value)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    safe = json_safe(key)
    return safe if isinstance(safe, str) else str(safe)


# ---------------------------------------------------------------------------------------- files
def describe_file(path: str | Path) -> dict:
    """`{"path", "size", "sha256"}` of a local model file, so a manifest names exactly what ran.

    Hashes are cached per (path, size, mtime): a batch hashes each weights file once."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise GuidedError(f"model file '{path}' does not exist or is not a file")
    resolved = path.resolve()
    stat = resolved.stat()
    return {"path": str(resolved), "size": stat.st_size, "sha256": sha256_file(resolved)}
