"""`GuidanceModels`: the networks guidance runs on (CLIP, VGG, a tiny decoder), carried together with
the cache of the targets computed with them (guided.models.targets)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from guided.models.targets import TargetCache

if TYPE_CHECKING:
    from guided.models.clip import ClipGuide
    from guided.models.vgg import VGGFeatures


@dataclass
class GuidanceModels:
    """The networks guidance needs; any may be None when no active term uses it.

    `tiny_decoder` is a diffusers `AutoencoderTiny`-like module (`.decode(latents).sample`) that
    the pipeline's fast mode decodes through; the objective only carries it. `targets` keeps the
    objectives' targets across calls with the same models (guided.models.targets).
    """

    clip: ClipGuide | None = None
    vgg: VGGFeatures | None = None
    tiny_decoder: nn.Module | None = None
    info: dict = field(default_factory=dict)
    targets: TargetCache = field(default_factory=TargetCache, repr=False, compare=False)

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> GuidanceModels:
        """Move every model (in place) to `device` (and `dtype`); returns self."""
        for module in (self.clip, self.vgg, self.tiny_decoder):
            if module is not None:
                module.to(device=device, dtype=dtype) if dtype is not None else module.to(device)
        return self

    def describe(self) -> dict:
        """What each model is (name, source, random flag), for output metadata."""
        out = dict(self.info)
        if self.clip is not None:
            out.setdefault("clip", dict(self.clip.info))
        if self.vgg is not None:
            out.setdefault("vgg", {"arch": self.vgg.arch})
        return out


__all__ = ["GuidanceModels"]
