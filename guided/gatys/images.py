"""Image preparation of the classic path: sizes, ImageNet normalisation, initial images.

The optimised tensor lives in ImageNet-normalised space, as in Dive into Deep Learning §14.12:
the chapter optimises the normalised image and measures total variation there.
"""
from __future__ import annotations

import torch
from PIL import Image
from torch import Tensor

from guided.models.vgg import imagenet_normalize as normalize


def output_size(image: Image.Image, size: int | tuple[int, int]) -> tuple[int, int]:
    """(h, w) of the result: an (h, w) pair as given, or the long side scaled to `size`, aspect kept."""
    if isinstance(size, tuple):
        return size
    w, h = image.size
    scale = size / max(w, h)
    return max(1, round(h * scale)), max(1, round(w * scale))


def scaled(hw: tuple[int, int], factor: float) -> tuple[int, int]:
    """`hw` multiplied by `factor`, at least 16 pixels a side (VGG pools four times before conv5_1)."""
    return max(16, round(hw[0] * factor)), max(16, round(hw[1] * factor))


def style_size(style: Image.Image, content_hw: tuple[int, int], style_scale: float | None) -> tuple[int, int]:
    """(h, w) of a style image: the content's exact (h, w) (None) or style_scale x its long side."""
    if style_scale is None:
        return content_hw
    return tuple(max(16, v) for v in output_size(style, max(16, round(max(content_hw) * style_scale))))


def preprocess(image: Image.Image, hw: tuple[int, int]) -> Tensor:
    """torchvision's `Resize(hw)` on the PIL image, to [0, 1], then ImageNet normalisation (the chapter's
    `preprocess`)."""
    from torchvision.transforms import functional as TF

    from guided.io.images import pil_to_tensor

    resized = TF.resize(image, list(hw), interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    return normalize(pil_to_tensor(resized).float())


def initial_image(kind: str, content: Tensor, styles: list[Tensor], blend: list[float],
                  generator: torch.Generator) -> Tensor:
    """The starting point in normalised space: the content, uniform noise, or noise with the style's
    per-channel mean and standard deviation (blend-weighted over style images)."""
    if kind == "content":
        return content.detach().clone()
    shape = content.shape
    if kind == "noise":
        return normalize(torch.rand(shape, generator=generator))
    total = sum(blend)
    mean = sum(w / total * s.mean(dim=(2, 3), keepdim=True) for w, s in zip(blend, styles))
    std = sum(w / total * s.std(dim=(2, 3), keepdim=True) for w, s in zip(blend, styles))
    return mean + std * torch.randn(shape, generator=generator)
