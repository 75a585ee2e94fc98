"""Finding and reading model weights: local files, caches, environment variables.

Nothing here ever substitutes random weights for missing ones. Missing weights raise
`WeightsNotFoundError` with the file that is missing and how to get it.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from guided.errors import GuidedError, WeightsNotFoundError, one_line

_TRUE = {"1", "true", "yes", "on"}


def offline() -> bool:
    """True when the user asked for no downloads (`HF_HUB_OFFLINE` or `GUIDED_OFFLINE`)."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "GUIDED_OFFLINE"))


def mismatch(exc: RuntimeError) -> str:
    """The line of a `load_state_dict(strict=True)` error that says which keys or shapes differ."""
    text = str(exc)
    return text.splitlines()[1].strip() if "\n" in text else text


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from `.safetensors` (preferred) or `.pth`/`.pt`/`.bin` (weights only)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file '{path}' does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        if path.suffix in {".pth", ".pt", ".bin", ".ckpt"}:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        else:
            raise GuidedError(
                f"weights file '{path}' has suffix '{path.suffix}'; expected .safetensors, .pth, .pt or .bin")
    except GuidedError:
        raise
    except pickle.UnpicklingError:  # a pickle holding more than tensors: never run, never advised to
        raise GuidedError(f"weights file '{path}' is a pickle file that holds more than tensors: refused, it "
                          "could run code; use a .safetensors file or a plain torchvision checkpoint") from None
    except Exception as exc:  # corrupt, truncated, or not a weights file at all
        raise GuidedError(f"weights file '{path}' cannot be read ({type(exc).__name__}: "
                          f"{one_line(str(exc))}); is it a complete .safetensors or .pth file?") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise GuidedError(f"weights file '{path}' does not hold a state dict of tensors")
    return state


def torch_hub_checkpoint(url: str) -> Path:
    """Where torch.hub (and so torchvision) caches the file downloaded from `url`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def fetch_torch_hub_checkpoint(url: str, what: str, how: str) -> Path:
    """The cached checkpoint for `url`, downloaded when missing and the network allows it."""
    path = torch_hub_checkpoint(url)
    if path.is_file():
        return path
    hint = f"{what} not found: expected '{path}' (torch hub cache). {how}"
    if offline():
        raise WeightsNotFoundError(hint + " (downloads are off: HF_HUB_OFFLINE/GUIDED_OFFLINE is set)")
    try:
        torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True)
    except Exception as exc:
        raise WeightsNotFoundError(f"{hint} (download failed: {type(exc).__name__})") from None
    return path
