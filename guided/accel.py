"""Device placement and mixed precision through Hugging Face Accelerate.

Accelerate keeps one process-wide state; a run that asks for another precision than the last
one resets that state (never the distributed part), so a notebook or test can switch between
fp32 and bf16 runs.
"""
from __future__ import annotations

import contextlib

import torch

from guided.constants import MIXED_PRECISION
from guided.errors import GuidedError


def check_mixed_precision(mixed_precision: str | None, device: str | torch.device | None) -> str:
    """Validate `mixed_precision` for `device`: 'no', 'bf16' anywhere, 'fp16' only on an accelerator."""
    mp = "no" if mixed_precision in (None, "", "fp32") else str(mixed_precision)
    if mp not in MIXED_PRECISION:
        raise GuidedError(f"`mixed_precision` must be one of {', '.join(MIXED_PRECISION)}, got {mixed_precision!r}")
    kind = torch.device(device).type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if mp == "fp16" and kind == "cpu":
        raise GuidedError("`mixed_precision`='fp16' needs a GPU; on the CPU use 'bf16' or 'no'")
    return mp


def make_accelerator(device: str | torch.device | None = None, mixed_precision: str | None = None):
    """An `accelerate.Accelerator` on `device` (None: the best available) with `mixed_precision`."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    if device is not None:
        kind = torch.device(device).type
        if kind == "cuda" and not torch.cuda.is_available():
            raise GuidedError(f"`device`={str(device)!r} but no CUDA device is available here")
        if kind not in {"cpu", "cuda", "mps", "xpu"}:
            raise GuidedError(f"`device` must be cpu, cuda, cuda:N, mps or xpu, got {str(device)!r}")
    mp = check_mixed_precision(mixed_precision, device)
    cpu = device is not None and torch.device(device).type == "cpu"
    state = AcceleratorState._shared_state
    if state and (state.get("_mixed_precision", mp) != mp or (cpu and str(state.get("device", "cpu")) != "cpu")):
        AcceleratorState._reset_state()  # keep the distributed (PartialState) part
    return Accelerator(cpu=cpu, mixed_precision=mp)


def autocast_dtype(mixed_precision: str) -> torch.dtype:
    """The compute dtype of a mixed-precision setting."""
    return {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[mixed_precision]


def native_bf16(device: str | torch.device) -> bool:
    """Whether `device` computes bf16 in hardware (a CPU with AVX-512 BF16 or AMX; a CUDA GPU that
    supports it): there bf16 convolutions are fast, elsewhere they take slow emulated paths."""
    kind = torch.device(device).type
    if kind == "cpu":
        cpu = torch.cpu
        return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                    or getattr(cpu, "_is_amx_tile_supported", lambda: False)())
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return False


def resolve_mixed_precision(setting: str, device: str | torch.device) -> str:
    """'auto' -> 'bf16' where `device` has native bf16, else 'no'; other settings validated as they are."""
    if setting == "auto":
        return "bf16" if native_bf16(device) else "no"
    return check_mixed_precision(setting, device)


def autocast_for(module: torch.nn.Module | None, mixed_precision: str, device: str | torch.device):
    """Autocast at `mixed_precision` ('no', 'bf16', 'fp16': already resolved) for a float32 `module`;
    a module already held in a lower precision runs as it is."""
    if module is None or mixed_precision == "no":
        return contextlib.nullcontext()
    param = next(module.parameters(), None)
    if param is not None and param.dtype != torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=autocast_dtype(mixed_precision))
