"""Shared helpers of the fast-network tests: generated photos, a tiny objective, a saved network."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def write_photos(folder: Path, n: int = 4, size: tuple[int, int] = (40, 52), seed: int = 0) -> Path:
    """`n` smooth random photos (gradients plus blobs, so content features are not noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    _yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    for i in range(n):
        base = np.stack([np.sin(6 * xx * rng.uniform(0.5, 2) + c) * 0.5 + 0.5 for c in range(3)], -1)
        base = base * rng.uniform(0.4, 1.0, 3) + rng.normal(0, 0.05, (h, w, 3))
        Image.fromarray((base.clip(0, 1) * 255).astype(np.uint8)).save(folder / f"photo{i}.png")
    return folder


def write_style(path: Path, seed: int = 1) -> Path:
    """A stripy 'painting' whose Gram matrices differ clearly from the photos'."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:48]
    stripes = ((xx + yy) // 4 % 2).astype(np.float32)
    image = np.stack([stripes, 1 - stripes, 0.5 * stripes], -1) * 0.8 + rng.uniform(0, 0.2, (48, 48, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((image.clip(0, 1) * 255).astype(np.uint8)).save(path)
    return path


def tiny_models():
    from guided.models.bundle import GuidanceModels
    from guided.testing import tiny_vgg

    return GuidanceModels(vgg=tiny_vgg(0))


def saved_network(path: Path, width: str = "half", seed: int = 0, input_noise: float = 0.0) -> Path:
    """An untrained network file with a small card (for apply, export and CLI tests)."""
    from guided.fast.checkpoint import save_network
    from guided.fast.network import TransformerNet

    torch.manual_seed(seed)
    net = TransformerNet(width, input_noise=input_noise)
    return save_network(net, path, {"kind": "fast-network", "styles": [{"name": "test.png", "sha256": "0" * 64}],
                                    "iterations": 0, "note": "untrained test network"})
