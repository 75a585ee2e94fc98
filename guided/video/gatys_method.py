"""Classic style transfer for video (Ruder, Dosovitskiy and Brox, "Artistic style transfer for videos", 2016).

The first frame is a normal Gatys run. Every later frame starts from the previous result warped
onto it and adds a temporal loss that keeps the reliable pixels where the previous result put them:

    L_temporal = w * sum_x M(x) ||x(x) - warp(prev)(x)||^2 / sum_x M(x) ||warp(prev)(x)||^2

Started that close to a solution, a frame needs far fewer iterations than a cold start (Ruder et al.
use a fifth or less). Deviations from the paper: the loss is relative (divided by the warped image's
mean square, as the `relative_losses` presets divide every term), so one `w` suits every preset; the
frames run at one scale (the preset's coarse-to-fine pyramid would rebuild the texture each frame);
the optimiser, its guard against L-BFGS stalls and the objective are guided.gatys's own.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from guided.video.methods import Guide

logger = logging.getLogger(__name__)

#: w at --temporal 1. Ruder et al. weigh their temporal term ~40x their content term; ours is relative
#: (O(1) for a frame that ignores the previous result), so 50 puts it above the relative content and style
#: terms. Not yet calibrated on a real clip with real VGG weights (the tests use tiny random VGGs).
TEMPORAL_SCALE = 50.0
#: Later frames run this fraction of the first frame's iterations (Ruder et al.: a fifth or less).
FRAME_FRACTION = 0.2


class TemporalObjective(nn.Module):
    """The Gatys objective plus the masked temporal term; returns the same dict with "temporal" added."""

    def __init__(self, objective: nn.Module):
        super().__init__()
        self.objective = objective
        self.target: Tensor | None = None  # the warped previous result, normalised space
        self.mask: Tensor | None = None  # (1, 1, H, W)
        self.weight = 0.0

    def forward(self, x: Tensor, autocast) -> dict[str, Tensor]:
        losses = self.objective(x, autocast)
        if self.target is None or self.weight == 0:
            losses["temporal"] = losses["total"].new_zeros(())
            return losses
        diff = (self.mask * (x.float() - self.target).square()).sum()
        energy = (self.mask * self.target.square()).sum().clamp_min(1e-8)
        losses["temporal"] = self.weight * diff / energy
        losses["total"] = losses["total"] + losses["temporal"]
        return losses


class _Quiet:
    """The progress bar `optimize` expects; the video run has its own per-frame bar."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args, **kwargs) -> None:
        pass


class GatysMethod:
    """Gatys per frame, warped initialisation + temporal loss (see the module doc)."""

    name = "gatys"

    def __init__(self, styles, *, temporal: float, preset: str = "default", backbone: str | Path | None = None,
                 iterations: int | None = None, frame_iterations: int | None = None, seed: int = 0,
                 device: str | None = None, mixed_precision: str | None = None):
        from guided import validate
        from guided.gatys.presets import get_preset, override

        self.styles = [styles] if isinstance(styles, (str, Path)) else list(styles)
        self.temporal, self.seed, self.device, self.backbone = temporal, seed, device, backbone
        self.preset = replace(override(get_preset(preset), iterations=iterations, mixed_precision=mixed_precision),
                              multiscale=1)
        if frame_iterations is not None:
            validate.number(frame_iterations, "frame_iterations", low=1, high=1_000_000, integer=True)
        self.frame_iterations = frame_iterations or max(1, round(self.preset.iterations * FRAME_FRACTION))
        self.mixed_precision = self.preset.mixed_precision
        self.objective: TemporalObjective | None = None

    def params(self) -> dict:
        from dataclasses import asdict

        return {"styles": [str(s) for s in self.styles], "temporal": self.temporal, "seed": self.seed,
                "preset": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.preset).items()},
                "frame_iterations": self.frame_iterations, "backbone": str(self.backbone)}

    def load(self) -> None:
        from guided.accel import make_accelerator
        from guided.gatys.transfer import GatysObjective
        from guided.io.images import load_image
        from guided.models.vgg import VGGFeatures, resolve_backbone

        p = self.preset
        self.accelerator = make_accelerator(self.device, p.mixed_precision)
        self.style_images = [load_image(s, what="style image") for s in self.styles]
        net, self.info = resolve_backbone(self.backbone, seed=self.seed)
        features = VGGFeatures(net, self.info.arch, pool=p.pool).to(self.accelerator.device)
        self.objective = TemporalObjective(GatysObjective(features, p))
        self.autocast = self.accelerator.autocast if p.mixed_precision != "no" else contextlib.nullcontext
        self.generator = torch.Generator().manual_seed(self.seed)
        self.notes: list[str] = []
        self.steps: list[int] = []  # iterations run per frame, in order

    def describe(self) -> dict:
        if self.objective is None:
            return {"backbone": str(self.backbone)}
        return {"backbone": {"description": self.info.describe(), "random": self.info.random}}

    def __call__(self, frame: np.ndarray, guide: Guide | None) -> np.ndarray:
        from PIL import Image

        from guided import validate
        from guided.gatys.images import initial_image, preprocess, style_size
        from guided.gatys.transfer import OptimizationRun, optimize  # guided.gatys's optimiser, with its stall guard
        from guided.models.vgg import imagenet_denormalize, imagenet_normalize

        p, device = self.preset, self.accelerator.device
        hw = frame.shape[:2]
        content = preprocess(Image.fromarray(frame), hw).to(device)
        styles = [preprocess(s, style_size(s, hw, p.style_scale)).to(device) for s in self.style_images]
        blend = validate.style_weights(None, len(styles))
        self.objective.objective.set_targets(content, styles, blend, self.autocast)
        if guide is None or self.temporal <= 0:  # a cold start: the first frame, or plain per-frame
            x = initial_image(p.init, content.cpu(), [s.cpu() for s in styles], blend, self.generator).to(device)
            self.objective.target, steps = None, p.iterations
        else:
            aligned = torch.from_numpy(guide.aligned).permute(2, 0, 1)[None].to(device)
            x = imagenet_normalize(aligned)
            self.objective.target = x.clone()
            self.objective.mask = torch.from_numpy(guide.mask)[None, None].to(device)
            self.objective.weight = self.temporal * TEMPORAL_SCALE
            steps = self.frame_iterations
        self.steps.append(steps)
        run = OptimizationRun(self.objective, self.autocast)
        x = optimize(run, x, p, steps, _Quiet(), lambda i, x: None)
        self.notes.extend(run.notes)
        if run.stop_reason:
            logger.warning("gatys: %s", run.stop_reason)
        return imagenet_denormalize(x.detach().float().cpu())[0].permute(1, 2, 0).clamp(0, 1).numpy()


__all__ = ["GatysMethod", "TemporalObjective", "TEMPORAL_SCALE"]
