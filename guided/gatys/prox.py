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
a refused one halves it. So each iteration lowers the exact objective. Each iteration costs one
forward and backward pass (the gradient) and one forward pass per step size tried.
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

    # Growth of the step after a kept step: lets eta climb when the objective allows larger steps
    # (the TV-dominated objective of a random VGG wants ~1e5 x the first step) while one refusal
    # (halving) undoes about four growths.
    grow: float = 1.2
    # Halvings tried within one iteration before it is declared a step that found no descent.
    max_halvings: int = 30
    # Inner iterations of the TV prox, warm-started from the last solution (a few % of a VGG-19
    # pass at 150x225, bench/README.md).
    prox_iterations: int = 50


@dataclass
class _Point:
    x: Tensor
    smooth: float  # the smooth part's value
    tv: float  # the weighted TV term's value
    values: dict  # what `evaluate` reported besides the smooth part (for the history)

    @property
    def total(self) -> float:
        return self.smooth + self.tv


class ProxGradient:
    """Accelerated proximal gradient (FISTA, Beck & Teboulle 2009), one iteration per `step()`.

    `evaluate(x)` returns (the smooth part as a differentiable scalar, a dict of values to report);
    the objective is that smooth part plus `tv_weight * tv_loss(x)`. `point` is the current
    iterate. The momentum is FISTA's, made monotone by adaptive restart (O'Donoghue & Candes 2015):
    a step that would raise the objective drops the momentum and is retried from the current
    iterate; from there a refused step halves eta. On a random VGG (TV-dominated objective) this
    and plain proximal gradient both reach the chapter's loss within ten iterations; on ImageNet VGG
    features (style-dominated) the momentum is what makes it reach it (42-68 iterations on the pairs
    tried, where plain proximal gradient had not after 100; bench/README.md).
    """

    def __init__(self, x: Tensor, evaluate, tv_weight: float, first_move: float, *,
                 bounds: tuple[Tensor, Tensor] | None = None, settings: ProxSettings = ProxSettings()):
        self.evaluate, self.tv_weight, self.settings, self.bounds = evaluate, tv_weight, settings, bounds
        self.evaluations = 0
        start = self._inside(x.detach())
        self.point = _Point(start, 0.0, self.tv_weight * float(tv_loss(start)), {})
        self._previous, self._t = start, 1.0
        # One forward and backward pass gives both the starting point's value and its gradient.
        self.point.values = self._extrapolate()
        self.point.smooth = self._smooth_y
        if not math.isfinite(self.point.total):
            raise FloatingPointError(f"the objective is not finite at the start ({self.point.total})")
        rms = float(self._grad.pow(2).mean().sqrt())
        # The first step moves the smooth part's gradient step by `first_move` RMS (normalised units).
        self.eta = first_move / rms if rms > 0 and math.isfinite(rms) else first_move
        self.dual: tuple[Tensor, Tensor] | None = None
        self.dual_eta = self.eta

    def _inside(self, x: Tensor) -> Tensor:
        """`x` projected into `bounds` (the pixel range the output is clamped to anyway)."""
        return x if self.bounds is None else torch.maximum(torch.minimum(x, self.bounds[1]), self.bounds[0])

    def _point(self, x: Tensor) -> _Point:
        with torch.no_grad():
            smooth, values = self.evaluate(x)
        self.evaluations += 1
        return _Point(x, float(smooth), self.tv_weight * float(tv_loss(x)), values)

    def _extrapolate(self, beta: float = 0.0) -> dict:
        """The point the next gradient step starts from, x + beta (x - x_previous), with its gradient;
        returns what `evaluate` reported there."""
        here = self.point.x
        y = self._inside(here + beta * (here - self._previous)) if beta > 0 else here
        y = y.detach().requires_grad_(True)
        smooth, values = self.evaluate(y)
        self.evaluations += 1
        (grad,) = torch.autograd.grad(smooth, y)
        self._y, self._smooth_y, self._grad, self._momentum = y.detach(), float(smooth.detach()), grad, beta > 0
        return values

    def step(self) -> bool:
        """One iteration; False when no step size in `max_halvings` halvings lowered the objective."""
        for _ in range(self.settings.max_halvings):
            warm = None if self.dual is None else tuple(d * (self.eta / self.dual_eta) for d in self.dual)
            z, dual = tv_prox(self._y - self.eta * self._grad, self.eta * self.tv_weight, dual=warm,
                              iterations=self.settings.prox_iterations)
            trial = self._point(self._inside(z))
            if not self._sufficient_decrease(trial):
                self.eta *= 0.5
                continue
            self.dual, self.dual_eta = dual, self.eta
            if trial.total <= self.point.total:
                t_next = (1 + math.sqrt(1 + 4 * self._t * self._t)) / 2
                beta = (self._t - 1) / t_next
                self._previous, self.point, self._t = self.point.x, trial, t_next
                self._extrapolate(beta)
                self.eta *= self.settings.grow
                return True
            if self._momentum:  # restart: drop the momentum, retry from the current iterate
                self._t = 1.0
                self._extrapolate()
            else:
                self.eta *= 0.5
        return False

    def _sufficient_decrease(self, trial: _Point) -> bool:
        """The smooth part at the trial point is below its quadratic model around the start point."""
        if not math.isfinite(trial.total):
            return False
        move = trial.x - self._y
        bound = self._smooth_y + float((self._grad * move).sum()) + float(move.pow(2).sum()) / (2 * self.eta)
        return trial.smooth <= bound


__all__ = ["ProxGradient", "ProxSettings"]
