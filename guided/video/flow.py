"""Optical flow without downloaded weights: OpenCV's DIS flow (Kroeger et al. 2016), forward and
backward, with occlusion masks from a forward-backward check (Ruder et al. 2016, eq. 2-3).

Convention: `flow(a, b)` is, for every pixel x of `a`, the displacement to where it is in `b`:
a(x) ~ b(x + flow(x)). `warp(image, flow)` samples `image` at x + flow(x). So the previous output
seen from the current frame is `warp(previous, flow(current, previous))`.

    estimator = FlowEstimator()
    pair = estimator.pair(previous_rgb, current_rgb)   # .backward (H, W, 2), .mask (H, W) in {0, 1}
    aligned = warp(previous_output, pair.backward)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlowConfig:
    """DIS settings and the thresholds of the forward-backward check."""

    #: DIS preset: "ultrafast", "fast" or "medium". Medium is the most accurate of the three and still
    #: a few tens of ms at 640x360; "fast" halves that and loses fine motion.
    preset: str = "medium"
    #: Ruder et al.'s consistency check: occluded where |w_f(x + w_b) + w_b|^2 > a (|w_f|^2 + |w_b|^2) + b,
    #: with their a = 0.01 and b = 0.5 (px^2): a flow that does not come back to where it started.
    consistency: tuple[float, float] = (0.01, 0.5)
    #: Their motion-boundary check: |grad u|^2 + |grad v|^2 > a |w_b|^2 + b, with a = 0.01, b = 0.002.
    #: DIS's flow is smooth inside patches, so this marks only real motion edges.
    boundary: tuple[float, float] = (0.01, 0.002)


def _dis(preset: str):
    import cv2

    presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
    if preset not in presets:
        raise ValueError(f"`preset` must be one of {', '.join(presets)}, got {preset!r}")
    return cv2.DISOpticalFlow_create(presets[preset])


def gray(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """`image` (H, W[, C]) sampled at x + flow(x), bilinear; outside the frame: the nearest border pixel."""
    import cv2

    h, w = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, grid_x + flow[..., 0], grid_y + flow[..., 1], interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def occlusion_mask(backward: np.ndarray, forward: np.ndarray, config: FlowConfig = FlowConfig()) -> np.ndarray:
    """1 where the current frame's pixel is seen in the previous frame, 0 where it is not (float32, H x W).

    `backward` is the flow current -> previous, `forward` previous -> current. A pixel is unreliable
    when its flow leaves the frame, fails the round trip or sits on a motion boundary."""
    h, w = backward.shape[:2]
    back_forward = warp(forward, backward)  # w_f at x + w_b(x)
    a, b = config.consistency
    round_trip = np.square(back_forward + backward).sum(-1)
    ok = round_trip <= a * (np.square(back_forward).sum(-1) + np.square(backward).sum(-1)) + b
    du = np.gradient(backward[..., 0])
    dv = np.gradient(backward[..., 1])
    gradient = du[0] ** 2 + du[1] ** 2 + dv[0] ** 2 + dv[1] ** 2
    a, b = config.boundary
    ok &= gradient <= a * np.square(backward).sum(-1) + b
    xs = np.arange(w, dtype=np.float32)[None, :] + backward[..., 0]
    ys = np.arange(h, dtype=np.float32)[:, None] + backward[..., 1]
    ok &= (xs >= 0) & (xs <= w - 1) & (ys >= 0) & (ys <= h - 1)
    return ok.astype(np.float32)


@dataclass
class FramePair:
    """The flow between the previous and the current input frame, seen from the current one."""

    backward: np.ndarray  # (H, W, 2) current -> previous
    mask: np.ndarray  # (H, W) float32, 1 = reliable (not occluded)

    def align(self, previous: np.ndarray) -> np.ndarray:
        """`previous` (an output frame, H x W x C) moved onto the current frame."""
        return warp(previous, self.backward)


class FlowEstimator:
    """DIS flow both ways between consecutive frames and the occlusion mask of the pair."""

    def __init__(self, config: FlowConfig = FlowConfig()):
        self.config = config
        self._dis = _dis(config.preset)

    def flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(H, W, 2) float32 flow from RGB or gray frame `a` to `b`."""
        a = gray(a) if a.ndim == 3 else a
        b = gray(b) if b.ndim == 3 else b
        return self._dis.calc(a, b, None)

    def pair(self, previous: np.ndarray, current: np.ndarray) -> FramePair:
        prev_gray, cur_gray = gray(previous), gray(current)
        backward = self.flow(cur_gray, prev_gray)
        forward = self.flow(prev_gray, cur_gray)
        return FramePair(backward, occlusion_mask(backward, forward, self.config))


__all__ = ["FlowConfig", "FlowEstimator", "FramePair", "occlusion_mask", "warp"]
