"""A temporal loss for training feed-forward networks without video (the idea of ReReVST: Wang et al.,
"Consistent Video Style Transfer via Relaxation and Regularization", TIP 2020).

A training crop is moved by a random smooth flow field, as the next frame of a video would be; the
network's output of the moved crop should be its output of the crop, moved the same way:

    L = sum_x V(x) ||net(warp(I))(x) - warp(net(I))(x)||^2 / (3 sum_x V(x))

with V the pixels whose source lies inside the crop. Deviations from the paper: the flow is a random
global shift plus a bicubically upsampled 4x4 grid of random displacements (their flows are also
smooth random fields; we do not add their extra noise/lighting augmentations), and both branches
carry gradients.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: Largest displacement in pixels: a few pixels per frame, what a slow pan or a hand-held camera makes.
MAX_SHIFT = 6.0


def smooth_flow(batch: int, height: int, width: int, *, generator: torch.Generator, magnitude: float = MAX_SHIFT,
                device: torch.device | str = "cpu") -> Tensor:
    """(B, H, W, 2) displacements in pixels: a random global shift plus smooth local motion."""
    shift = (torch.rand(batch, 2, 1, 1, generator=generator) * 2 - 1) * magnitude * 0.5
    local = (torch.rand(batch, 2, 4, 4, generator=generator) * 2 - 1) * magnitude * 0.5
    local = F.interpolate(local, size=(height, width), mode="bicubic", align_corners=True)
    return (shift + local).permute(0, 2, 3, 1).to(device)


def warp_batch(images: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    """`images` (B, C, H, W) sampled at x + flow(x) (bilinear), and (B, 1, H, W) 1 where that is inside."""
    b, _, h, w = images.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=images.device, dtype=flow.dtype),
                            torch.arange(w, device=images.device, dtype=flow.dtype), indexing="ij")
    x = xs + flow[..., 0]
    y = ys + flow[..., 1]
    grid = torch.stack([2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1], dim=-1)
    warped = F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="border", align_corners=True)
    valid = ((x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)).to(images.dtype)[:, None]
    return warped, valid


def temporal_loss(net, photos: Tensor, styled: Tensor, *, generator: torch.Generator,
                  magnitude: float = MAX_SHIFT) -> Tensor:
    """ReReVST's temporal term for one batch: `styled` is `net(photos)`; one more network pass."""
    b, _, h, w = photos.shape
    flow = smooth_flow(b, h, w, generator=generator, magnitude=magnitude, device=photos.device)
    moved, valid = warp_batch(photos, flow)
    expected, _ = warp_batch(styled.float(), flow)
    diff = (net(moved).float() - expected).square() * valid
    return diff.sum() / (3 * valid.sum()).clamp_min(1.0)


__all__ = ["MAX_SHIFT", "smooth_flow", "temporal_loss", "warp_batch"]
