"""Temporal consistency as Lai et al. measure it ("Learning Blind Video Temporal Consistency", ECCV 2018, eq. 9):

    E_warp(O_t-1, O_t) = 1 / sum_x M_t(x) * sum_x M_t(x) ||O_t(x) - warp(O_t-1)(x)||^2

for consecutive output frames O in [0, 1] RGB, the flow and the non-occlusion mask M computed on the
*input* frames, the squared norm over the three channels; a video's error is the mean over its pairs.
Deviation from the paper: the flow is DIS (OpenCV), not FlowNet2 (no downloaded weights here), and
the mask is Ruder et al.'s forward-backward check, which Lai et al. also use. Numbers are therefore
comparable between our runs, not with the paper's tables.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from guided.video.flow import FramePair


def warping_error(previous: np.ndarray, current: np.ndarray, pair: FramePair) -> float:
    """E_warp of one pair of output frames (uint8 or float in [0, 1], H x W x 3); NaN when all is occluded."""
    prev = _unit(previous)
    cur = _unit(current)
    aligned = pair.align(prev)
    mask = pair.mask
    total = float(mask.sum())
    if total == 0:
        return float("nan")
    return float((np.square(cur - aligned).sum(-1) * mask).sum() / total)


def mean_error(values: Sequence[float | None]) -> float | None:
    """The video's warping error: the mean over the pairs that had a visible pixel (None: no pair)."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def _unit(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)




class StyleMeter:
    """Per-frame style distance: the Gram distance of `guided.compare.metrics.Scorer` between an output
    frame and the style image(s), on the VGG that `backbone` names (see `guided.models.vgg.resolve_backbone`).

    Gram statistics depend on scale, so the style image is resized to the frame's long side (aspect kept);
    the targets of each long side are computed once."""

    def __init__(self, styles: Sequence[str | Path], backbone=None, *, layers: Sequence[str] | None = None,
                 seed: int = 0):
        from guided.gatys.presets import PRESETS
        from guided.io.images import load_image
        from guided.models.vgg import VGGFeatures, resolve_backbone

        net, self.info = resolve_backbone(backbone, seed=seed)
        self.vgg = VGGFeatures(net, self.info.arch).eval()
        self.layers = list(layers or PRESETS["default"].style_layers)
        self.styles = [load_image(s, what="style image") for s in styles]
        self._scorers: dict[int, object] = {}

    def _scorer_for(self, long_side: int):
        if long_side not in self._scorers:
            from PIL import Image

            from guided.compare.metrics import Scorer
            from guided.io.images import pil_to_tensor
            from guided.models.bundle import GuidanceModels

            tensors = []
            for style in self.styles:
                scale = long_side / max(style.size)
                size = (max(8, round(style.width * scale)), max(8, round(style.height * scale)))
                tensors.append(pil_to_tensor(style.resize(size, Image.Resampling.LANCZOS)))
            self._scorers[long_side] = Scorer(GuidanceModels(vgg=self.vgg), paintings01=tensors,
                                              gram_layers=self.layers)
        return self._scorers[long_side]

    def __call__(self, frame: np.ndarray) -> float:
        import torch

        x = torch.from_numpy(_unit(frame)).permute(2, 0, 1)[None]
        return self._scorer_for(max(frame.shape[:2])).score(x)["gram"]


__all__ = ["StyleMeter", "mean_error", "warping_error"]
