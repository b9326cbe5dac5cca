"""Rounding of latents during fitting: the contract every method follows, the
temperature schedule, and the methods without a temperature (straight-through,
uniform noise, soft rounding). The Stochastic Gumbel Annealing family (SGA,
SGA+) is in :mod:`core.sga`.

A rounding method is a callable ``method(latents, step) -> tensor`` taking the
real-valued latents (a tensor of any shape: the grid fit passes several levels
at once, flattened, so methods work elementwise) and a :class:`RoundingStep`,
and returning the tensor, of the same shape, the synthesis and the rate model
see at that step. Methods are registered through
the plugin hook ``ani_rounding_methods`` (:mod:`core.hooks`); the built-in ones
register through it too (:mod:`core.builtin_plugin`). Whatever the method, the
file always stores hard-rounded integers: the fit ends by freezing
``round(latent)`` and entropy-codes those.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

#: fraction of the fit after which ``noise`` and ``softround`` switch to straight-through rounding
NOISE_TO_STE = 0.9


@dataclass(frozen=True)
class RoundingStep:
    """What a rounding method sees at one optimisation step.

    Attributes:
        step: the iteration index ``t`` of the fit, 0-based.
        steps: the number of steps of the fit.
        tau: the temperature for these latents at this step: :func:`temperature`
            of ``step / steps``, or, for latents that join the fit later (the
            grid's finest level after its half-resolution phase), of the
            fraction of their own steps done.
        options: the :class:`core.EncodeOptions` of the encode (``ssl_a`` etc.).
        generator: the fit's seeded random generator (on the latents' device).
    """

    step: int
    steps: int
    tau: float
    options: Any
    generator: torch.Generator | None = None

    @property
    def progress(self) -> float:
        """Fraction 0..1 of the fit done."""
        return self.step / self.steps


def temperature(progress: float, decay: float, tau_max: float) -> float:
    """The annealing schedule of SGA (Yang et al. 2020) and SGA+ (``shared/papers/003``):

        tau(t) = min(exp(-c t), tau_max)

    with ``t`` the fraction of the fit done (``progress``, 0..1) and ``c`` the
    ``decay``. The papers count ``t`` in iterations with ``c = 0.001`` over
    2,000 iterations; in fractions of the fit that is ``c = 2``, which keeps
    the same shape at every ``effort`` (step count). The default depends on
    the quality (:func:`core.options.default_tau_decay`: 1 at low qualities,
    0.5 at high ones): the grid fit freezes its latents before the end, and a
    warmer rounding up to then measured better.
    """
    return min(math.exp(-decay * progress), tau_max)


def ste(y: torch.Tensor, step: RoundingStep) -> torch.Tensor:
    """Straight-through rounding: ``round(y)`` forward, identity backward."""
    return y + (torch.round(y) - y).detach()


def _uniform(y: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(y.shape, generator=generator, device=y.device, dtype=y.dtype) - 0.5


def noise_then_ste(y: torch.Tensor, step: RoundingStep) -> torch.Tensor:
    """Additive uniform noise ``y + U(-1/2, 1/2)`` (the usual differentiable
    proxy of quantisation, Balle et al. 2017) for the first ``NOISE_TO_STE`` of
    the fit, then straight-through rounding."""
    if step.progress >= NOISE_TO_STE:
        return ste(y, step)
    return y + _uniform(y, step.generator)


SOFT_T_START, SOFT_T_END = 0.3, 0.1


def soft_round(y: torch.Tensor, t: float) -> torch.Tensor:
    """Soft rounding (Agustsson & Theis 2020): a differentiable staircase that
    tends to ``round`` as the temperature ``t`` falls."""
    f = torch.floor(y)
    r = y - f - 0.5
    return f + 0.5 + torch.tanh(r / t) / (2 * math.tanh(1 / (2 * t)))


def softround_noise(y: torch.Tensor, step: RoundingStep) -> torch.Tensor:
    """Soft rounding plus uniform noise with the temperature annealed from
    ``SOFT_T_START`` to ``SOFT_T_END`` (as C3 and Cool-chic train), then
    straight-through rounding after ``NOISE_TO_STE`` of the fit. Its own
    schedule; ``tau`` is not used."""
    if step.progress >= NOISE_TO_STE:
        return ste(y, step)
    t = SOFT_T_START + (SOFT_T_END - SOFT_T_START) * step.progress / NOISE_TO_STE
    return soft_round(y, t) + _uniform(y, step.generator)
