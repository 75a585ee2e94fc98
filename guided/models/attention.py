"""A layout fix for `nn.MultiheadAttention` under bf16 autocast on a CPU.

A batch-first `nn.MultiheadAttention` (open_clip's transformers) transposes its input to
(tokens, batch, width) and hands that non-contiguous view to its in-projection. Under bf16 autocast
on a CPU, PyTorch's matmul then takes a broadcast path that expands the projection weight once per
token and copies it (measured on CLIP ViT-B-32 with 2 cutouts: 2.8 s of a 3.5 s forward + input
gradient went to those copies, against 0.5 s for the whole pass in float32; bench/README.md,
"Guidance cost"). Given its input already laid out so that the transpose is contiguous, the same
module computes the same values through plain matrix products. Nothing changes in float32 but one
copy of the activations per layer.
"""
from __future__ import annotations

import logging

from torch import Tensor, nn

logger = logging.getLogger(__name__)


def _contiguous_after_transpose(x: Tensor) -> Tensor:
    """`x` (batch, tokens, width) re-laid so that `x.transpose(0, 1)` is contiguous (same values)."""
    return x.transpose(0, 1).contiguous().transpose(0, 1)


def pack_attention_inputs(model: nn.Module) -> int:
    """Make every batch-first self-attention module of `model` lay out its input for its in-projection
    (see the module docstring); returns how many modules were changed. Idempotent; the state dict and
    the results are unchanged."""
    changed = 0
    for module in model.modules():
        if not isinstance(module, nn.MultiheadAttention) or not module.batch_first:
            continue
        if getattr(module, "_guided_packed_inputs", False):
            continue
        original = module.forward

        def forward(query, key, value, *args, _original=original, **kwargs):
            if query is key and key is value and query.dim() == 3:  # self-attention: one packed projection
                query = key = value = _contiguous_after_transpose(query)
            return _original(query, key, value, *args, **kwargs)

        module.forward = forward
        module._guided_packed_inputs = True
        changed += 1
    logger.debug("packed the inputs of %d attention modules", changed)
    return changed
