"""Inputs for `make demo` that need nothing beside the project: a real photo that ships with a
dependency (matplotlib's sample image of Grace Hopper) and a style image painted procedurally."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from guided.errors import GuidedError
from guided.io.images import load_image

#: Warm autumn palette (RGB): deep reds, rust, orange, ochre, gold, olive, bark brown, cream.
AUTUMN_PALETTE = np.array([
    (122, 28, 22), (168, 52, 28), (201, 92, 36), (226, 135, 48), (238, 181, 72), (214, 196, 128),
    (134, 122, 52), (88, 70, 40), (58, 38, 28), (246, 226, 182),
], dtype=np.float64)


def demo_photo_path() -> Path:
    """Where matplotlib keeps its sample photo `grace_hopper.jpg` (a real 512x600 photograph)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def demo_photo() -> Image.Image:
    """The demo's content photo, as RGB."""
    path = demo_photo_path()
    if not path.is_file():
        raise GuidedError(f"demo photo '{path}' is missing: it ships with matplotlib's sample data; "
                          f"reinstall matplotlib (pip install --force-reinstall matplotlib)")
    return load_image(path, what="demo photo")


def painted_style(size: tuple[int, int] = (384, 512), seed: int = 0) -> Image.Image:
    """A procedurally painted style image of `size` (height, width): layered bristle brush strokes
    in an autumn palette that follow a smooth flow field over a blended ground, on a canvas weave.
    Deterministic for a given `seed`."""
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 16 for s in size)):
        raise ValueError(f"`size` must be (height, width) with both >= 16, got {size!r}")
    height, width = size
    rng = np.random.default_rng(seed)
    ground = _ground(height, width, rng)
    canvas = Image.fromarray(ground, mode="RGB")
    angle = _flow_field(height, width, rng)
    draw = ImageDraw.Draw(canvas, "RGBA")
    area = height * width / (384 * 512)
    # (count per 384x512, width range, length range): broad underpainting, then detail.
    for count, widths, lengths in ((220, (14, 26), (40, 90)), (650, (6, 13), (20, 50)),
                                   (1100, (2, 5), (8, 24))):
        for _ in range(max(1, int(count * area))):
            _stroke(draw, ground, angle, rng, rng.uniform(*widths), rng.uniform(*lengths))
    painted = np.asarray(canvas.filter(ImageFilter.SMOOTH), dtype=np.float64)
    return Image.fromarray(_canvas_texture(painted, rng), mode="RGB")


def _ground(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Large colour masses: light at the top, dark at the bottom, warm in between, blended."""
    rows, cols = 5, 7
    light = np.linspace(0.0, 1.0, rows)[:, None] + rng.normal(0, 0.18, (rows, cols))
    order = np.array([9, 5, 4, 3, 2, 1, 0, 6, 7, 8])  # palette from light to dark
    index = np.clip((light * (len(order) - 1)).round().astype(int), 0, len(order) - 1)
    small = AUTUMN_PALETTE[order[index]].astype(np.uint8)
    ground = Image.fromarray(small, mode="RGB").resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(ground.filter(ImageFilter.GaussianBlur(radius=min(height, width) / 20)))


def _flow_field(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Stroke direction per pixel: a base direction plus a few slow waves, so strokes curve together."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    angle = np.full((height, width), rng.uniform(0, np.pi))
    for _ in range(4):
        fx, fy = rng.uniform(1, 4, size=2)
        angle += rng.uniform(0.3, 0.8) * np.sin(2 * np.pi * (fx * x + fy * y) + rng.uniform(0, 2 * np.pi))
    return angle


def _stroke(draw: ImageDraw.ImageDraw, ground: np.ndarray, angle: np.ndarray,
            rng: np.random.Generator, width: float, length: float) -> None:
    """One brush stroke: several thin bristle lines side by side along a path that follows the
    flow field, coloured from the ground beneath, mixed with a palette colour."""
    height, w = angle.shape
    x, y = rng.uniform(0, w), rng.uniform(0, height)
    path = [(x, y)]
    steps = max(2, int(length / 4))
    for _ in range(steps):
        a = angle[int(y) % height, int(x) % w]
        x, y = x + 4 * np.cos(a), y + 4 * np.sin(a)
        path.append((x, y))
    points = np.array(path)
    base = 0.65 * ground[int(points[0, 1]) % height, int(points[0, 0]) % w] \
        + 0.35 * AUTUMN_PALETTE[rng.integers(len(AUTUMN_PALETTE))]
    direction = np.gradient(points, axis=0)
    normal = np.stack([-direction[:, 1], direction[:, 0]], axis=1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-9
    bristles = max(2, int(width / 2))
    for offset in np.linspace(-width / 2, width / 2, bristles):
        colour = np.clip(base + rng.normal(0, 14, 3), 0, 255).astype(int)
        alpha = int(rng.uniform(140, 230))
        line = points + normal * offset
        draw.line([tuple(p) for p in line], fill=(*colour, alpha), width=max(1, round(width / bristles * 1.6)),
                  joint="curve")


def _canvas_texture(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A faint canvas weave and grain, multiplied in."""
    height, width = image.shape[:2]
    y, x = np.mgrid[0:height, 0:width]
    weave = 1 + 0.025 * np.sin(x * np.pi / 2.0) * np.sin(y * np.pi / 2.0)
    grain = 1 + rng.normal(0, 0.02, (height, width))
    return np.clip(image * (weave * grain)[..., None], 0, 255).round().astype(np.uint8)
