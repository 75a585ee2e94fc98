"""Where Hub-style model folders come from: a local folder, the local Hugging Face cache, or (online
only) a download. `guided.models.status` says what each feature needs and whether it is here.

Checking never touches the network: cache lookups use `local_files_only`. With `HF_HUB_OFFLINE`
(or `GUIDED_OFFLINE`) set, nothing is downloaded; missing weights raise `WeightsNotFoundError`
listing what is missing and how to get it.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from guided.errors import GuidedError, WeightsNotFoundError
from guided.models.checkpoints import offline

logger = logging.getLogger(__name__)

# Files a diffusers Stable Diffusion folder needs; "a|b" means either file. A tokenizer saved by
# transformers 5 is one tokenizer.json instead of vocab.json + merges.txt.
SD_REQUIRED_FILES = [
    "model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json|tokenizer/tokenizer.json",
    "tokenizer/merges.txt|tokenizer/tokenizer.json",
    "text_encoder/config.json", "text_encoder/model.safetensors|text_encoder/pytorch_model.bin",
    "unet/config.json", "unet/diffusion_pytorch_model.safetensors|unet/diffusion_pytorch_model.bin",
    "vae/config.json", "vae/diffusion_pytorch_model.safetensors|vae/diffusion_pytorch_model.bin",
]
# SDXL adds the second text encoder and tokenizer (a refiner has only these; not listed as required).
SDXL_REQUIRED_FILES = SD_REQUIRED_FILES + [
    "tokenizer_2/vocab.json|tokenizer_2/tokenizer.json", "tokenizer_2/merges.txt|tokenizer_2/tokenizer.json",
    "text_encoder_2/config.json",
    "text_encoder_2/model.safetensors|text_encoder_2/pytorch_model.bin",
]
TINY_DECODER_REQUIRED_FILES = ["config.json", "diffusion_pytorch_model.safetensors|diffusion_pytorch_model.bin"]
# Never downloaded: other frameworks' copies, single-file checkpoints, half-precision and EMA variants.
_IGNORE = ["*.ckpt", "*.msgpack", "*.h5", "*.onnx", "*.onnx_data", "*.pb", "*.fp16.*", "*non_ema*", "*.emaonly.*"]


def how_to_get(repo_id: str) -> str:
    return (f"On a machine with internet run `hf download {repo_id}` (or `huggingface-cli download {repo_id}`) "
            f"and copy the Hugging Face cache (~/.cache/huggingface/hub) here, or pass a local folder instead")


def missing_files(folder: Path, required: list[str] | None) -> list[str]:
    """Entries of `required` (with "a|b" alternatives) that `folder` does not hold."""
    return [entry for entry in required or [] if not any((folder / alt).is_file() for alt in entry.split("|"))]


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1


def cached_snapshot(repo_id: str, *, cache_dir: str | Path | None = None) -> Path | None:
    """The cached snapshot folder of `repo_id` (its `main` revision), or None; no network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, HFValidationError, OSError):
        return None


def _cache_root(cache_dir: str | Path | None) -> str:
    if cache_dir is not None:
        return str(cache_dir)
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _download(repo_id: str, cache_dir: str | Path | None, what: str) -> Path:
    """Download the snapshot, skipping .bin files where a .safetensors sits beside them."""
    from huggingface_hub import HfApi, snapshot_download

    try:
        files = HfApi().list_repo_files(repo_id)
        safe_dirs = {os.path.dirname(f) for f in files if f.endswith(".safetensors")}
        ignore = _IGNORE + [f for f in files if f.endswith(".bin") and os.path.dirname(f) in safe_dirs]
        return Path(snapshot_download(repo_id, cache_dir=cache_dir, ignore_patterns=ignore))
    except Exception as exc:
        raise WeightsNotFoundError(f"{what} '{repo_id}' could not be downloaded ({type(exc).__name__}: {exc}). "
                                   f"{how_to_get(repo_id)}") from None


def resolve_model_dir(repo_id_or_path: str | Path, *, what: str, required_files: list[str] | None = None,
                      cache_dir: str | Path | None = None, allow_download: bool = True) -> Path:
    """A local folder holding the model `repo_id_or_path` (`what` names it in errors).

    A local folder is used as is. A Hub id is looked up in the local Hugging Face cache; when it
    is not there (or lacks one of `required_files`), it is downloaded only if downloads are
    allowed and `HF_HUB_OFFLINE`/`GUIDED_OFFLINE` is not set. Otherwise `WeightsNotFoundError`.
    """
    name = str(repo_id_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        missing = missing_files(path, required_files)
        if missing:
            lacks = ", ".join(m.replace("|", " or ") for m in missing)
            raise WeightsNotFoundError(f"{what} folder '{path}' lacks {lacks}")
        return path
    if path.exists():
        raise GuidedError(f"{what} '{path}' is a file; expected a model folder or a Hub repository id")
    if _looks_like_path(name):
        raise WeightsNotFoundError(f"{what} folder '{path}' does not exist")
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except Exception:
        raise GuidedError(f"{what} {name!r} is neither an existing folder nor a Hub repository id") from None
    snapshot = cached_snapshot(name, cache_dir=cache_dir)
    missing = missing_files(snapshot, required_files) if snapshot else ["the whole repository"]
    if not missing:
        return snapshot
    where = f"looked in the Hugging Face cache {_cache_root(cache_dir)}"
    detail = f"{what} '{name}' is not on this machine ({where}; missing: " \
             f"{', '.join(m.replace('|', ' or ') for m in missing)})"
    if offline() or not allow_download:
        reason = "downloads are off (HF_HUB_OFFLINE/GUIDED_OFFLINE)" if offline() else "downloads are not allowed here"
        raise WeightsNotFoundError(f"{detail}; {reason}. {how_to_get(name)}")
    folder = _download(name, cache_dir, what)
    still = missing_files(folder, required_files)
    if still:
        raise WeightsNotFoundError(f"{what} '{name}' was downloaded but lacks {', '.join(still)}")
    return folder


def model_family(folder: str | Path) -> str:
    """"sd" (Stable Diffusion 1.x/2.x) or "sdxl", read from a diffusers folder's `model_index.json`.

    SDXL is a pipeline class named StableDiffusionXL... or an index with `text_encoder_2`
    (diffusers' own and guided's saved pipelines alike). A pipeline without a UNet (SD3, Flux,
    ...) is a `GuidedError` naming its class."""
    path = Path(folder) / "model_index.json"
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsNotFoundError(f"model folder '{folder}' has no model_index.json") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise GuidedError(f"model index '{path}' cannot be read: {exc}") from None
    if not isinstance(index, dict):
        raise GuidedError(f"model index '{path}' is not a JSON object")
    name = str(index.get("_class_name", "")).removeprefix("Guided")
    if "unet" not in index:
        raise GuidedError(f"model '{folder}' is a {name or 'pipeline without a UNet'} (its model_index.json); "
                          "guided stylizes with Stable Diffusion 1.x/2.x and SDXL checkpoints")
    family = "sdxl" if name.startswith("StableDiffusionXL") or "text_encoder_2" in index else "sd"
    logger.debug("model '%s' (%s): family %s", folder, name, family)
    return family
