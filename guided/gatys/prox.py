"""Proximal gradient for the classic objective: gradient steps on the smooth terms, exact steps on TV.

The objective is smooth(x) + w * tv_loss(x), where `tv_loss` is an L1 norm of image differences:
not differentiable where a difference is zero, which is where a smooth image wants to be. Adam
steps through those kinks with a fixed step size and oscillates around them (its loss floor is
set by its learning rate); L-BFGS's line search stalls on them. Forward-backward splitting
(Combettes & Wajs 2005; Beck & Teboulle 2009) takes a gradient step on the smooth part only and
then solves the TV part exactly, `x <- prox_{eta * w * tv}(x - eta * grad smooth(x))`, with
`guided.losses.tv_prox`, and keeps the image in the pixel range its output is clamped to (Adam
lets pixels leave it, and the clamp of the output then undoes part of what it optimised).

The step eta is adapted by backtracking: a step is kept only when the whole objective fell and
the smooth part obeyed the usual sufficient-decrease bound; a kept step lets the next one grow,
a refused one halves it. So each iteration lowers the exact objective.

With a random VGG (the parity tests', the chapter's settings in bench/) the TV term is ~97 % of
the objective and this reaches the chapter's 500-iteration Adam loss in a handful of steps
(bench/README.md, "d2l-fast on pairs it was not tuned on").
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from guided.losses import tv_loss, tv_prox

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProxSettings:
    """How the step size of the proximal gradient moves."""

    # Growth of the step after a kept step: 1.5 lets eta climb three decades in ~17 steps (the TV
    # term wants large steps) while one refusal (halving) undoes at most ~2 growths.
    grow: float = 1.5
    # Halvings tried within one iteration before it is declared a step that found no descent.
    max_halvings: int = 30
    # Inner iterations of the TV prox. Warm-started from the last solution, 50 fast-gradient steps
    # cost ~1 % of a VGG-19 pass at 150x225 (profiled in bench/README.md).
    prox_iterations: int = 50


@dataclass
class _Point:
    x: Tensor
    smooth: Tensor  # the smooth part's value, with its graph until the gradient is taken
    tv: float
    values: dict  # what `evaluate` reported besides the smooth part (for the history)
    grad: Tensor | None = None

    @property
    def total(self) -> float:
        return float(self.smooth.detach()) + self.tv


class ProxGradient:
    """One proximal-gradient iteration per `step()`.

    `evaluate(x)` returns (smooth part as a differentiable scalar, a dict of values to report);
    the objective is that smooth part plus `tv_weight * tv_loss(x)`. `point` is the current iterate."""

    def __init__(self, x: Tensor, evaluate, tv_weight: float, first_move: float, *,
                 bounds: tuple[Tensor, Tensor] | None = None, settings: ProxSettings = ProxSettings()):
        self.evaluate, self.tv_weight, self.settings, self.bounds = evaluate, tv_weight, settings, bounds
        self.point = self._point(self._inside(x))
        if not math.isfinite(self.point.total):
            raise FloatingPointError(f"the objective is not finite at the start ({self.point.total})")
        self._gradient(self.point)
        rms = float(self.point.grad.pow(2).mean().sqrt())
        # The first step moves the smooth part's gradient step by `first_move` RMS (normalised units).
        self.eta = first_move / rms if rms > 0 and math.isfinite(rms) else first_move
        self.dual: tuple[Tensor, Tensor] | None = None
        self.dual_eta = self.eta
        self.evaluations = 1

    def _inside(self, x: Tensor) -> Tensor:
        """`x` projected into `bounds` (the pixel range the output is clamped to anyway)."""
        return x if self.bounds is None else torch.maximum(torch.minimum(x, self.bounds[1]), self.bounds[0])

    def _point(self, x: Tensor) -> _Point:
        x = x.detach().requires_grad_(True)
        smooth, values = self.evaluate(x)
        return _Point(x, smooth, self.tv_weight * float(tv_loss(x.detach())), values)

    @staticmethod
    def _gradient(point: _Point) -> None:
        (point.grad,) = torch.autograd.grad(point.smooth, point.x)
        point.smooth = point.smooth.detach()

    def step(self) -> bool:
        """One iteration; False when no step size in `max_halvings` halvings lowered the objective."""
        here = self.point
        for _ in range(self.settings.max_halvings):
            warm = None if self.dual is None else tuple(d * (self.eta / self.dual_eta) for d in self.dual)
            z, dual = tv_prox(here.x.detach() - self.eta * here.grad, self.eta * self.tv_weight, dual=warm,
                              iterations=self.settings.prox_iterations)
            trial = self._point(self._inside(z))
            self.evaluations += 1
            if self._acceptable(here, trial):
                self._gradient(trial)
                self.point, self.dual, self.dual_eta = trial, dual, self.eta
                self.eta *= self.settings.grow
                return True
            self.eta *= 0.5
        return False

    def _acceptable(self, here: _Point, trial: _Point) -> bool:
        if not math.isfinite(trial.total):
            return False
        move = trial.x.detach() - here.x.detach()
        bound = (float(here.smooth) + float((here.grad * move).sum())
                 + float(move.pow(2).sum()) / (2 * self.eta))
        return trial.total <= here.total and float(trial.smooth.detach()) <= bound


__all__ = ["ProxGradient", "ProxSettings"]
