"""No optimiser stalls silently: the L-BFGS guard of the classic path on a non-smooth objective.

The objective below has the shape of the classic one (a smooth data term plus L1 terms, as the
total variation is) in 200 variables, so the stall of torch's L-BFGS with its memory kept across
one-iteration calls shows in milliseconds: after a failed line search it rebuilds the same direction
from the same memory and never moves again.
"""
from __future__ import annotations

import contextlib

import pytest
import torch

from guided.gatys.presets import DEFAULT
from guided.gatys.transfer import OptimizationRun, optimize


class _Bar:
    def update(self, n):
        pass

    def set_postfix(self, **kw):
        pass


class NonSmooth(torch.nn.Module):
    """0.5 |A x - b|^2 + 0.3 |x|_1 + 0.5 TV_1(x): smooth data term, L1 kinks."""

    def __init__(self, n: int = 200, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.A = torch.randn(n, n, generator=g) / n ** 0.5
        self.b = torch.randn(n, generator=g)

    def forward(self, x, autocast):
        v = x.flatten()
        data = 0.5 * ((self.A @ v - self.b) ** 2).sum()
        tv = 0.5 * (v[1:] - v[:-1]).abs().sum()
        l1 = 0.3 * v.abs().sum()
        return {"content": data, "style": l1, "tv": tv, "total": data + l1 + tv}


def _start(seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 1, 1, 200, generator=torch.Generator().manual_seed(seed))


def _plain_lbfgs(objective, x0, steps):
    """torch's L-BFGS as the classic path used it before the guard: one iteration per call."""
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=50, tolerance_grad=0.0, tolerance_change=0.0,
                            line_search_fn="strong_wolfe")
    totals = []

    def closure():
        opt.zero_grad()
        total = objective(x, None)["total"]
        total.backward()
        return total

    for _ in range(steps):
        totals.append(float(opt.step(closure).detach()))
    return totals


def _longest_flat_run(totals):
    longest = run = 1
    for a, b in zip(totals, totals[1:]):
        run = run + 1 if b == a else 1
        longest = max(longest, run)
    return longest


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_guard_keeps_lbfgs_moving_where_plain_lbfgs_stalls(seed):
    objective, steps = NonSmooth(seed=seed), 120
    plain = _plain_lbfgs(objective, _start(seed), steps)
    assert _longest_flat_run(plain) > 20, "this objective no longer stalls plain L-BFGS: the test proves nothing"

    run = OptimizationRun(objective, contextlib.nullcontext)
    optimize(run, _start(seed), DEFAULT, steps, _Bar(), lambda i, x: None)
    guarded = [h["total"] for h in run.history]
    assert len(guarded) == steps
    assert guarded[-1] < min(plain) - 1e-3, (guarded[-1], min(plain))
    assert _longest_flat_run(guarded) <= 3  # a failed step: a reset; a second: the Adam fallback
    assert any("memory reset" in note for note in run.notes)
    assert not run.stalled


def test_a_scale_that_cannot_progress_is_said_so():
    """A constant objective: nothing can lower it; the run says so in its result (and logs it)."""

    class Flat(torch.nn.Module):
        def forward(self, x, autocast):
            zero = (x * 0).sum() + 1.0
            return {"content": zero, "style": zero * 0, "tv": zero * 0, "total": zero}

    run = OptimizationRun(Flat(), contextlib.nullcontext)
    optimize(run, _start(), DEFAULT, 10, _Bar(), lambda i, x: None)
    assert run.stalled and any("did not fall" in note for note in run.notes)
