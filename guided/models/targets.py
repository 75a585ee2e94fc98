"""Guidance targets kept across calls: the prompt's CLIP embedding, the paintings' CLIP and Gram
targets and the photo's content features, computed once per set of models and inputs.

A pipeline builds a new objective on every call; a user who varies the seed, strength or weights
with the same prompt, painting and photo (or a batch that stylizes many photos with one painting)
would otherwise recompute the same targets each time (~0.45 s for the prompt and painting and
~0.25 s for the photo per call with ViT-B-32 and VGG-19 at 224 px on a 2-core CPU; bench/README.md,
"Guidance cost"). Entries are keyed by the inputs' bytes and by the state of the models that made
them (device, dtype and every parameter's in-place version counter), so loading other weights into
the same modules, or moving them, computes afresh.
"""
from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

#: Entries kept (least recently used dropped first). A painting's targets at 224 px are ~2 MB
#: (VGG-19 Gram matrices) and a photo's content features ~1.6 MB, so 32 entries stay under ~70 MB.
MAX_ENTRIES = 32


def digest(tensors: Iterable[Tensor]) -> str:
    """A hash of the shapes, dtypes and values of `tensors` (a key for inputs given as tensors)."""
    h = hashlib.sha1()
    for t in tensors:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{tuple(t.shape)}{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_state(module: nn.Module | None) -> Hashable:
    """What a target made by `module` depends on besides its inputs: identity, placement, dtype and
    the in-place version of every parameter and buffer (bumped by `load_state_dict`, `copy_`, ...)."""
    if module is None:
        return None
    tensors = list(module.parameters()) + list(module.buffers())
    first = tensors[0] if tensors else None
    return (id(module), str(first.device) if first is not None else None,
            str(first.dtype) if first is not None else None, sum(t._version for t in tensors), len(tensors))


def _copy(value: Any) -> Any:
    """A copy of `value`'s tensors (in dicts, tuples and lists): an objective may change its own
    targets in place without changing what the next one is given."""
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_copy(v) for v in value)
    return value


class TargetCache:
    """A small LRU map from (kind, inputs, model state) to target tensors, handed out as copies."""

    def __init__(self, max_entries: int = MAX_ENTRIES):
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The entry for `key`, computed by `compute()` (under no_grad) when absent."""
        if key in self._entries:
            self._entries.move_to_end(key)
            self.hits += 1
            return _copy(self._entries[key])
        self.misses += 1
        with torch.no_grad():
            value = compute()
        if self.max_entries > 0:
            self._entries[key] = _copy(value)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        logger.debug("target %s computed (%d kept)", key[0] if isinstance(key, tuple) else key, len(self._entries))
        return value
