"""Demo inputs: a real photo from matplotlib's sample data and a deterministic painted style image."""
from __future__ import annotations

import numpy as np
import pytest

from guided.demo.assets import demo_photo, demo_photo_path, painted_style


def test_demo_photo_is_the_real_sample_photo():
    assert demo_photo_path().name == "grace_hopper.jpg" and demo_photo_path().is_file()
    photo = demo_photo()
    assert photo.mode == "RGB" and photo.size == (512, 600)
    assert np.asarray(photo).std() > 30  # a photograph, not a flat placeholder


def test_painted_style_is_deterministic_and_sized():
    first = painted_style(seed=0)
    assert first.mode == "RGB" and first.size == (512, 384)  # size=(height, width) by default (384, 512)
    assert np.array_equal(np.asarray(first), np.asarray(painted_style(seed=0)))
    assert not np.array_equal(np.asarray(first), np.asarray(painted_style(seed=1)))
    assert painted_style(size=(100, 64), seed=3).size == (64, 100)


def test_painted_style_looks_like_paint_not_noise():
    image = np.asarray(painted_style(seed=0)).astype(np.float64)
    neighbours = np.abs(np.diff(image, axis=1)).mean()
    rng = np.random.default_rng(0)
    flat = image.reshape(-1, 3)
    random_pairs = np.abs(flat[rng.integers(len(flat), size=20000)]
                          - flat[rng.integers(len(flat), size=20000)]).mean()
    assert neighbours < 0.4 * random_pairs  # strokes: coherent local colour, unlike noise
    assert random_pairs > 20  # and varied across the canvas, unlike a flat fill
    mean = image.reshape(-1, 3).mean(axis=0)
    assert mean[0] > mean[2] + 40  # a warm autumn palette: far more red than blue


@pytest.mark.parametrize("size", [(8, 8), (100,), "big", (100.0, 50)])
def test_painted_style_rejects_bad_sizes(size):
    with pytest.raises(ValueError, match="size"):
        painted_style(size=size)
