"""Colour preservation: keep the content photo's colours, take the stylized image's luminance.

This is the "luminance-only transfer" of Gatys et al. (2016b, *Preserving Color in Neural
Artistic Style Transfer*): convert both images to YCbCr (ITU-R BT.601), keep Y from the
stylized result and Cb/Cr from the content.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_RGB_TO_YCBCR = torch.tensor([[0.299, 0.587, 0.114],
                              [-0.168736, -0.331264, 0.5],
                              [0.5, -0.418688, -0.081312]])


def rgb_to_ycbcr(image: Tensor) -> Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> YCbCr with Y in [0, 1] and Cb, Cr centred on 0."""
    m = _RGB_TO_YCBCR.to(image.device, image.dtype)
    return torch.einsum("ij,bjhw->bihw", m, image)


def ycbcr_to_rgb(image: Tensor) -> Tensor:
    """Inverse of `rgb_to_ycbcr`."""
    m = torch.linalg.inv(_RGB_TO_YCBCR.double()).to(image.device, image.dtype)
    return torch.einsum("ij,bjhw->bihw", m, image)


def transfer_luminance(stylized: Tensor, content: Tensor) -> Tensor:
    """Luminance of `stylized` with the chroma of `content` (resized to match), clamped to [0, 1]."""
    if content.shape[-2:] != stylized.shape[-2:]:
        content = F.interpolate(content, size=stylized.shape[-2:], mode="bilinear", align_corners=False)
    y = rgb_to_ycbcr(stylized.float())[:, :1]
    cbcr = rgb_to_ycbcr(content.float().expand(stylized.shape[0], -1, -1, -1))[:, 1:]
    return ycbcr_to_rgb(torch.cat([y, cbcr], dim=1)).clamp(0, 1).to(stylized.dtype)
