"""How each paradigm stylizes one frame given the previous output moved onto it (`Guide`).

A method is called once per frame, in order: `method(frame, guide)` with the RGB uint8 frame and,
from the second frame on, the flow-warped previous output and its non-occlusion mask. `temporal`
(0..1) is the strength of the consistency; 0 is plain per-frame stylization.

- `FastMethod`: one network pass, then the warped previous output blended into the reliable pixels
  (`(1 - t M) net(frame) + t M warp(prev)`): an average along the motion that keeps what is seen
  moving and lets what is new (M = 0) come from the network alone. With `blend="features"` the same
  average is taken of the network's features after its residual blocks (the previous frame's, warped
  by the flow at 1/4 scale), before the decoder (Chen et al. 2017, "Coherent online video style
  transfer"): the decoder's instance norms then restore the contrast an average of two textures loses.
- `StylizeMethod`: guided img2img with the same seed for every frame (the same noise, so the same
  texture choices), starting from the current frame with the warped previous result blended into
  it. Diffusion takes seconds per frame on a GPU and minutes on a CPU: meant for GPUs.
- `GatysMethod` (guided.video.gatys_method): Ruder et al.'s warped initialisation and temporal loss.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from guided.errors import GuidedError

logger = logging.getLogger(__name__)


@dataclass
class Guide:
    """The previous output seen from the current frame."""

    aligned: np.ndarray  # (H, W, 3) float32 in [0, 1]: the previous output, flow-warped
    mask: np.ndarray  # (H, W) float32 in {0, 1}: 1 where the pixel was visible in the previous frame
    backward: np.ndarray | None = None  # (H, W, 2) flow current -> previous, to warp anything else (features)
    previous_frame: np.ndarray | None = None  # the previous input frame, RGB uint8


class FrameMethod(Protocol):
    """The per-frame work of `guided video`."""

    name: str
    temporal: float

    def params(self) -> dict:
        """Everything that changes the output frames, JSON-serialisable (a resumed run must match it)."""

    def load(self) -> None:
        """Load the models; called once, before the first frame that still has to be done."""

    def describe(self) -> dict:
        """The models, as the manifest names them."""

    def __call__(self, frame: np.ndarray, guide: Guide | None) -> np.ndarray:
        """The stylized frame, (H, W, 3) float32 in [0, 1], the frame's size."""


def blend(image: np.ndarray, guide: Guide | None, strength: float) -> np.ndarray:
    """`image` with the warped previous output mixed into its reliable pixels by `strength`."""
    if guide is None or strength <= 0:
        return image
    weight = (strength * guide.mask)[..., None]
    return (1.0 - weight) * image + weight * guide.aligned


def to_unit(frame: np.ndarray) -> np.ndarray:
    return frame.astype(np.float32) / 255.0


#: Where `FastMethod` applies the consistency: to the output pixels, or to the network's features.
BLENDS = ("output", "features")


def downsample_guide(guide: Guide, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The guide's flow (in pixels of the smaller grid) and its mask (the reliable share of each cell),
    resized to a `height` x `width` grid such as the network's 1/4-scale features."""
    import cv2

    h, w = guide.mask.shape
    flow = cv2.resize(guide.backward, (width, height), interpolation=cv2.INTER_AREA)
    flow = flow * np.array([width / w, height / h], dtype=np.float32)
    mask = cv2.resize(guide.mask, (width, height), interpolation=cv2.INTER_AREA)
    return flow, mask


class FastMethod:
    """A feed-forward network per frame (guided.fast), blended with the warped previous frame's output
    (`blend="output"`) or features (`blend="features"`, PyTorch networks only)."""

    name = "fast"

    def __init__(self, network: str | Path, *, temporal: float, blend: str = "output", device: str | None = None,
                 mixed_precision: str | None = None):
        if blend not in BLENDS:
            raise GuidedError(f"`blend` must be one of {', '.join(BLENDS)}, got {blend!r}")
        self.network, self.temporal, self.blend = Path(network), temporal, blend
        self.device, self.mixed_precision = device, mixed_precision
        self.stylizer = None
        self._features = None  # the previous frame's (blended) features, for blend="features"

    def params(self) -> dict:
        from guided.io.files import sha256_file

        params = {"network_sha256": sha256_file(self.network), "temporal": self.temporal,
                  "mixed_precision": self.mixed_precision}
        if self.blend != "output":  # output blending's params stay as before: its earlier work folders still match
            params["blend"] = self.blend
        return params

    def load(self) -> None:
        from guided.fast.apply import FastStylizer

        self.stylizer = FastStylizer.load(self.network, device=self.device, mixed_precision=self.mixed_precision)
        if self.blend == "features" and self.stylizer.backend != "pytorch":
            raise GuidedError(f"`--blend features` needs a PyTorch network (.safetensors), not '{self.network}'")

    def describe(self) -> dict:
        return {"network": self.stylizer.describe()} if self.stylizer else {"network": str(self.network)}

    def __call__(self, frame: np.ndarray, guide: Guide | None) -> np.ndarray:
        import torch

        x = torch.from_numpy(to_unit(frame)).permute(2, 0, 1)[None]
        if self.blend == "features":
            return self._feature_blended(x, guide)
        y = self.stylizer.run_tensor(x)[0].permute(1, 2, 0).clamp(0, 1).numpy()
        return blend(y, guide, self.temporal)

    def _feature_blended(self, x, guide: Guide | None) -> np.ndarray:
        import torch

        from guided.fast.temporal import warp_batch

        net = self.stylizer.network
        with torch.no_grad(), self.stylizer.autocast():
            features = net.encode(x.to(self.stylizer.device)).float()
            if guide is not None and self.temporal > 0:
                if self._features is None and guide.previous_frame is not None:  # after a resume: recomputed
                    prev = torch.from_numpy(to_unit(guide.previous_frame)).permute(2, 0, 1)[None]
                    self._features = net.encode(prev.to(self.stylizer.device)).float()
                if self._features is not None and guide.backward is not None:
                    flow, mask = downsample_guide(guide, features.shape[-2], features.shape[-1])
                    flow_t = torch.from_numpy(flow)[None].to(features.device)
                    aligned, _ = warp_batch(self._features, flow_t)
                    weight = self.temporal * torch.from_numpy(mask).to(features.device)[None, None]
                    features = (1 - weight) * features + weight * aligned
            self._features = features
            y = net.decode(features, x.shape[-2], x.shape[-1])
        return y.float().cpu()[0].permute(1, 2, 0).clamp(0, 1).numpy()


class StylizeMethod:
    """Guided img2img (guided.stylize.Stylizer) per frame: one seed, init from the warped previous result.

    Slow: a diffusion run per frame. On a CPU only tiny models (`tiny=True`) are practical."""

    name = "stylize"

    def __init__(self, *, temporal: float, seed: int = 0, tiny: bool = False, load_options: dict | None = None,
                 run_options: dict | None = None):
        self.temporal, self.seed, self.tiny = temporal, seed, tiny
        self.load_options = dict(load_options or {})
        self.run_options = dict(run_options or {})
        self.stylizer = None

    def params(self) -> dict:
        return {"temporal": self.temporal, "seed": self.seed, "tiny": self.tiny, "load": self.load_options,
                "run": {k: str(v) if isinstance(v, Path) else v for k, v in self.run_options.items()}}

    def load(self) -> None:
        from guided.stylize import Stylizer

        self.stylizer = Stylizer.load(tiny=self.tiny, **self.load_options)

    def describe(self) -> dict:
        return dict(self.stylizer.model_info) if self.stylizer else {"tiny": self.tiny}

    def __call__(self, frame: np.ndarray, guide: Guide | None) -> np.ndarray:
        from PIL import Image

        init = blend(to_unit(frame), guide, self.temporal)
        photo = Image.fromarray((init * 255.0 + 0.5).clip(0, 255).astype(np.uint8))
        size = max(photo.size)
        result = self.stylizer.run(photo, seed=self.seed, size=size, **self.run_options)
        image = result.image
        if image.size != photo.size:  # the pipeline works in multiples of 8
            image = image.resize(photo.size, Image.Resampling.BICUBIC)
        return to_unit(np.asarray(image.convert("RGB")))


__all__ = ["BLENDS", "FastMethod", "downsample_guide", "FrameMethod", "Guide", "StylizeMethod", "blend"]
