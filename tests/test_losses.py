"""Each loss of guided.losses against its formula, written out element by element."""
from __future__ import annotations

import math

import pytest
import torch

from guided.losses import blended_gram_targets, content_loss, gram_loss, gram_matrix, spherical_distance, tv_loss


def test_gram_matrix_is_feature_inner_products_over_chw():
    torch.manual_seed(0)
    f = torch.randn(2, 3, 4, 5)
    g = gram_matrix(f)
    assert g.shape == (2, 3, 3)
    for b in range(2):
        for i in range(3):
            for j in range(3):
                expected = (f[b, i] * f[b, j]).sum() / (3 * 4 * 5)
                assert g[b, i, j].item() == pytest.approx(expected.item(), rel=1e-5)


def test_gram_matrix_is_float32_for_half_inputs_and_does_not_overflow():
    f = torch.full((1, 2, 64, 64), 200.0, dtype=torch.float16)  # f16 products overflow at 65504
    g = gram_matrix(f)
    assert g.dtype == torch.float32
    assert torch.isfinite(g).all()
    assert g[0, 0, 0].item() == pytest.approx(200.0 ** 2 * 64 * 64 / (2 * 64 * 64))


def test_content_loss_is_mean_squared_error():
    torch.manual_seed(1)
    a, b = torch.randn(1, 4, 3, 3), torch.randn(1, 4, 3, 3)
    expected = sum((x - y) ** 2 for x, y in zip(a.flatten().tolist(), b.flatten().tolist())) / a.numel()
    assert content_loss(a, b).item() == pytest.approx(expected, rel=1e-5)
    assert content_loss(a, a).item() == 0.0


def test_gram_loss_is_mse_between_gram_matrices():
    torch.manual_seed(2)
    f, target = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 3)
    g = gram_matrix(f)
    expected = ((g - target) ** 2).sum().item() / 9
    assert gram_loss(f, target).item() == pytest.approx(expected, rel=1e-5)
    assert gram_loss(f, gram_matrix(f)).item() == pytest.approx(0.0, abs=1e-12)


def test_tv_loss_is_half_mean_absolute_neighbour_differences():
    x = torch.tensor([[[[0.0, 1.0, 3.0],
                        [2.0, 2.0, 2.0]]]])
    # dh: |2-0|, |2-1|, |2-3| -> mean 4/3; dw: |1-0|, |3-1|, |2-2|, |2-2| -> mean 3/4
    assert tv_loss(x).item() == pytest.approx(0.5 * (4 / 3 + 3 / 4))
    assert tv_loss(torch.ones(1, 3, 5, 5)).item() == 0.0


def test_spherical_distance_matches_great_circle_formula():
    a = torch.tensor([[1.0, 0.0]])
    for angle in (0.0, 0.3, math.pi / 2, math.pi):
        b = torch.tensor([[math.cos(angle), math.sin(angle)]]) * 3.0  # length must not matter
        # chord c = 2 sin(angle/2); 2 * arcsin(c / 2)^2 = 2 * (angle / 2)^2 = angle^2 / 2
        assert spherical_distance(a, b).item() == pytest.approx(angle ** 2 / 2, abs=1e-5)


def test_blended_gram_targets_are_weighted_means_of_grams():
    torch.manual_seed(3)
    f1 = {"a": torch.randn(1, 2, 3, 3)}
    f2 = {"a": torch.randn(1, 2, 3, 3)}
    out = blended_gram_targets([f1, f2], [1.0, 3.0], ["a"])
    expected = 0.25 * gram_matrix(f1["a"]) + 0.75 * gram_matrix(f2["a"])
    assert torch.allclose(out["a"], expected, atol=1e-7)
    with pytest.raises(ValueError, match="`weights` has 1 values for 2"):
        blended_gram_targets([f1, f2], [1.0], ["a"])
