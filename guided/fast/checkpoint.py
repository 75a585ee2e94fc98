"""The files of a fast network: the network with its model card, and the training checkpoint.

Both are safetensors files: tensors plus a string-to-string metadata header, no code. A network
file holds the `TransformerNet` weights and, in its metadata, `format` = FORMAT and `card` (JSON):
style images (names and SHA-256), prompt, term weights, VGG used, width, iterations, final losses,
training time, versions. A pickle (`torch.save`) file is refused: loading one can run arbitrary code.

The training checkpoint adds the optimiser state and where the run stands (step, history, RNG),
so that `--resume` ends where an uninterrupted run would.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from guided.errors import GuidedError
from guided.fast.config import check_input_noise
from guided.fast.network import WIDTHS, TransformerNet

logger = logging.getLogger(__name__)

FORMAT = "guided-fast-network"
CHECKPOINT_FORMAT = "guided-fast-checkpoint"
FORMAT_VERSION = "1"
SUFFIX = ".safetensors"
#: First bytes of files we refuse by name: a raw pickle (protocol 2+) and torch.save's zip archive.
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")


def checkpoint_path(output: str | Path) -> Path:
    """Where training keeps its resumable checkpoint for the network `output`: `NET.ckpt.safetensors`."""
    output = Path(output)
    return output.with_name(output.name.removesuffix(SUFFIX) + ".ckpt" + SUFFIX)


def _check_readable(path: Path, what: str) -> None:
    if not path.exists():
        raise GuidedError(f"{what} '{path}' does not exist")
    if path.is_dir():
        raise GuidedError(f"{what} '{path}' is a folder, not a file")
    with open(path, "rb") as fh:
        head = fh.read(9)
    if not head:
        raise GuidedError(f"{what} '{path}' is empty (0 bytes)")
    # A safetensors file starts with its header's length (8 bytes, little-endian) and then '{'; that
    # length's first byte can be 0x80 (pickle's marker), so a file of that shape is never a pickle.
    safetensors_shape = len(head) == 9 and head[8:9] == b"{"
    if head.startswith(_PICKLE_MAGIC) and not safetensors_shape:
        raise GuidedError(f"{what} '{path}' is a pickle (torch.save) file; guided loads networks from .safetensors "
                          "only, because unpickling can run arbitrary code")


def _read(path: Path, what: str, expected_format: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    from safetensors import safe_open

    _check_readable(path, what)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - safe_open is not iterable
    except Exception as exc:
        logger.debug("reading %s failed", path, exc_info=True)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GuidedError(f"{what} '{path}' is not a readable safetensors file (truncated or another "
                          f"format): {first}") from None
    if metadata.get("format") != expected_format:
        raise GuidedError(f"{what} '{path}' is a safetensors file but not a {expected_format} (its metadata "
                          f"format is {metadata.get('format')!r}); train one with `guided train`")
    return tensors, metadata


def _json(metadata: dict[str, str], key: str, path: Path, what: str) -> Any:
    try:
        return json.loads(metadata[key])
    except (KeyError, json.JSONDecodeError):
        raise GuidedError(f"{what} '{path}' has no valid `{key}` in its metadata") from None


def save_network(net: TransformerNet, path: str | Path, card: dict) -> Path:
    """Write the network and its card to `path` atomically."""
    from safetensors.torch import save

    from guided.io.files import atomic_write
    from guided.io.manifest import json_safe

    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in net.state_dict().items()}
    card = {**card, "width": net.width, "input_noise": net.input_noise}
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION,
                "card": json.dumps(json_safe(card), ensure_ascii=False, allow_nan=False)}
    return atomic_write(path, save(state, metadata=metadata), make_parents=True)


def read_card(path: str | Path) -> dict:
    """The model card of a network file (checked to be one)."""
    path = Path(path)
    _, metadata = _read(path, "network file", FORMAT)
    return _json(metadata, "card", path, "network file")


def load_network(path: str | Path) -> tuple[TransformerNet, dict]:
    """The network in `path` (eval mode, CPU, float32) and its card."""
    path = Path(path)
    tensors, metadata = _read(path, "network file", FORMAT)
    card = _json(metadata, "card", path, "network file")
    width = card.get("width")
    if width not in WIDTHS:
        raise GuidedError(f"network file '{path}' names width {width!r}; known: {', '.join(WIDTHS)}")
    # Files written before the option have none.
    try:
        noise = check_input_noise(card.get("input_noise", 0.0))
    except GuidedError as exc:
        raise GuidedError(f"network file '{path}': its card's {exc}") from None
    net = TransformerNet(width, input_noise=noise)
    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        from guided.models.checkpoints import mismatch

        raise GuidedError(f"network file '{path}' does not fit a {width} TransformerNet: {mismatch(exc)}") from None
    return net.eval().requires_grad_(False), card


# --------------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: str | Path, net: TransformerNet, optimizer: torch.optim.Optimizer, state: dict,
                    rng: dict[str, Tensor]) -> Path:
    """The whole training state in one safetensors file, written atomically.

    `state` (JSON): step, history, config, elapsed time...; `rng`: generator states as uint8 tensors."""
    from safetensors.torch import save

    from guided.io.files import atomic_write
    from guided.io.manifest import json_safe

    tensors = {f"model.{k}": v.detach().to("cpu", torch.float32).contiguous() for k, v in net.state_dict().items()}
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, slots in opt["state"].items():
        for name, value in slots.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    tensors.update({f"rng.{k}": v.cpu().contiguous() for k, v in rng.items()})
    metadata = {"format": CHECKPOINT_FORMAT, "format_version": FORMAT_VERSION, "width": net.width,
                "state": json.dumps(json_safe(state), allow_nan=False),
                "optim_groups": json.dumps(json_safe(opt["param_groups"])), "optim_scalars": json.dumps(scalars)}
    return atomic_write(path, save(tensors, metadata=metadata), make_parents=True)


def load_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict, dict, dict[str, Tensor], str]:
    """(model state, optimizer state dict, run state, rng states, width) of a training checkpoint."""
    path = Path(path)
    tensors, metadata = _read(path, "checkpoint", CHECKPOINT_FORMAT)
    state = _json(metadata, "state", path, "checkpoint")
    groups = _json(metadata, "optim_groups", path, "checkpoint")
    scalars = _json(metadata, "optim_scalars", path, "checkpoint")
    model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    rng = {k[len("rng."):]: v for k, v in tensors.items() if k.startswith("rng.")}
    slots: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            slots.setdefault(int(index), {})[name] = value
    for index, values in scalars.items():
        slots.setdefault(int(index), {}).update(values)
    for group in groups:  # JSON turned tuples into lists
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
    return model, {"state": slots, "param_groups": groups}, state, rng, metadata.get("width", "")


__all__ = ["FORMAT", "SUFFIX", "checkpoint_path", "load_checkpoint", "load_network", "read_card", "save_checkpoint",
           "save_network"]
