"""The TV proximal operator and the proximal-gradient optimiser of the classic path."""
from __future__ import annotations

import pytest
import torch
from factories import waves as _image

from guided.gatys import stylize
from guided.gatys.prox import ProxGradient
from guided.losses import tv_loss, tv_prox
from guided.models.vgg import make_vgg_features


def _prox_objective(z: torch.Tensor, v: torch.Tensor, strength: float) -> float:
    return float(0.5 * (z - v).pow(2).sum() + strength * tv_loss(z))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tv_prox_minimises_its_objective(seed):
    g = torch.Generator().manual_seed(seed)
    v = torch.rand(1, 3, 12, 17, generator=g)
    strength = 50.0
    z, _ = tv_prox(v, strength, iterations=300)
    best = _prox_objective(z, v, strength)
    assert best < _prox_objective(v, v, strength)
    for _ in range(20):  # no nearby point is better: z is the minimiser (the objective is strictly convex)
        near = z + 1e-3 * torch.randn(z.shape, generator=g)
        assert _prox_objective(near, v, strength) > best - 1e-7
    rough, _ = tv_prox(v, strength, iterations=3)
    assert _prox_objective(rough, v, strength) >= best - 1e-7


def test_tv_prox_keeps_channel_means_and_flattens_at_high_strength():
    v = torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(4))
    z, _ = tv_prox(v, 1e6, iterations=2000)
    assert torch.allclose(z.mean(dim=(2, 3)), v.mean(dim=(2, 3)), atol=1e-5)  # D^T p sums to zero
    assert float(tv_loss(z)) < 1e-3 * float(tv_loss(v))
    same, _ = tv_prox(v, 0.0)
    assert torch.equal(same, v)


def test_tv_prox_warm_start_gets_there_in_fewer_iterations():
    v = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(5))
    exact, dual = tv_prox(v, 30.0, iterations=2000)
    cold, _ = tv_prox(v, 30.0, iterations=5)
    warm, _ = tv_prox(v + 1e-3, 30.0, dual=dual, iterations=5)
    assert (warm - exact).abs().max() < (cold - exact).abs().max()


def test_prox_gradient_solves_tv_denoising():
    """smooth = 1/2 |x - b|^2 and TV: the minimiser is tv_prox(b) itself; every kept step lowers
    the exact objective."""
    b = torch.rand(1, 3, 10, 14, generator=torch.Generator().manual_seed(6))
    weight = 40.0
    opt = ProxGradient(torch.zeros_like(b), lambda x: (0.5 * (x - b).pow(2).sum(), {}), weight, 0.01)
    totals = [opt.point.total]
    for _ in range(60):
        assert opt.step()
        totals.append(opt.point.total)
    assert all(later <= earlier for earlier, later in zip(totals, totals[1:]))
    target, _ = tv_prox(b, weight, iterations=3000)
    assert (opt.point.x.detach() - target).abs().max() < 1e-3


def test_prox_gradient_stays_inside_bounds():
    b = 3 * torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(7)) - 1  # asks for [-1, 2]
    low, high = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    opt = ProxGradient(b.clone(), lambda x: (0.5 * (x - b).pow(2).sum(), {}), 1.0, 0.01, bounds=(low, high))
    for _ in range(20):
        opt.step()
    x = opt.point.x.detach()
    assert x.min() >= 0 and x.max() <= 1
    assert torch.allclose(x, b.clamp(0, 1), atol=0.05)  # the box-constrained minimiser, TV aside


def test_stylize_with_prox_lowers_the_objective_at_every_iteration():
    torch.manual_seed(0)
    vgg = make_vgg_features("vgg19", width=1 / 16)
    r = stylize(_image(1, (60, 80)), _image(2, (70, 50)), preset="d2l", optimizer="prox", backbone=vgg, size=40,
                iterations=12, progress=False)
    totals = [h["total"] for h in r.history]
    assert all(later <= earlier for earlier, later in zip(totals, totals[1:]))
    assert totals[-1] < 0.5 * totals[0] and not r.stalled
    assert r.history[-1]["evaluations"] >= len(r.history)
