"""Test images made in code, one maker per kind: the shared source of inputs for every test module.

Each is seeded, so a test sees the same pixels on every run. PIL makers for the file and CLI paths,
tensor makers (1, 3, H, W) in [0, 1] for the loss and objective paths.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import torch


def noise(seed: int, size: tuple[int, int] = (32, 32)) -> PIL.Image.Image:
    """Uniform RGB noise of `size` = (width, height): the cheapest valid image."""
    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def noise_folder(folder: Path, n: int, *, every_third_in: str | None = "sub") -> list[Path]:
    """`n` noise PNGs named img00.png...; every third one in the subfolder `every_third_in`."""
    paths = []
    for i in range(n):
        where = folder / every_third_in if every_third_in and i % 3 == 0 else folder
        where.mkdir(parents=True, exist_ok=True)
        paths.append(where / f"img{i:02d}.png")
        noise(i).save(paths[-1])
    return paths


def waves(seed: int, hw: tuple[int, int] = (48, 64)) -> PIL.Image.Image:
    """A smooth random picture (sine gradients plus light noise), so VGG features are not trivial."""
    g = torch.Generator().manual_seed(seed)
    h, w = hw
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    freq = torch.rand(3, 2, generator=g) * 12
    img = torch.stack([0.5 + 0.5 * torch.sin(f[0] * xx + f[1] * yy + i) for i, f in enumerate(freq)])
    img = img + 0.15 * torch.rand(3, h, w, generator=g)
    return PIL.Image.fromarray((img.clamp(0, 1).permute(1, 2, 0) * 255).byte().numpy())


def photo(h: int = 64, w: int = 96, seed: int = 0) -> PIL.Image.Image:
    """A photo-like layout: horizontal and vertical gradients, stripes and some noise."""
    rs = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 7.0)], -1)
    return PIL.Image.fromarray(((0.8 * base + 0.2 * rs.rand(h, w, 3)) * 255).astype("uint8"))


def painting(seed: int = 1) -> PIL.Image.Image:
    """A 64x64 "painting": 8x8 flat colour patches, strong Gram statistics."""
    rs = np.random.RandomState(seed)
    return PIL.Image.fromarray((np.kron(rs.rand(8, 8, 3), np.ones((8, 8, 1))) * 255).astype("uint8"))


def rand_tensor(seed: int, h: int = 48, w: int = 64) -> torch.Tensor:
    """White noise (1, 3, h, w) in [0, 1]."""
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def smooth_tensor(seed: int, h: int = 48, w: int = 64) -> torch.Tensor:
    """A smooth random image (upsampled noise) (1, 3, h, w): closer to a photo than white noise."""
    small = torch.rand(1, 3, h // 8, w // 8, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
