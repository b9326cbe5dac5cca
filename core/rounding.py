"""Rounding of latents during fitting.

Every method ends, at the end of the fit, in hard integer rounding: what is
entropy-coded is always ``round(latent)``. Methods are registered through the
plugin hooks (:mod:`core.hooks`); each is a callable
``(latents, progress, generator) -> tensor`` with ``progress`` in 0..1.
"""
from __future__ import annotations

import math

import torch

#: fraction of the fit after which ``noise`` switches to straight-through rounding
NOISE_TO_STE = 0.9


def ste(y: torch.Tensor, progress: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Straight-through rounding: ``round(y)`` forward, identity backward."""
    return y + (torch.round(y) - y).detach()


def noise_then_ste(y: torch.Tensor, progress: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Additive uniform noise ``y + U(-1/2, 1/2)`` (the usual differentiable
    proxy of quantisation, Balle et al. 2017) for the first ``NOISE_TO_STE`` of
    the fit, then straight-through rounding."""
    if progress >= NOISE_TO_STE:
        return ste(y, progress)
    u = torch.rand(y.shape, generator=generator, device=y.device, dtype=y.dtype) - 0.5
    return y + u


SOFT_T_START, SOFT_T_END = 0.3, 0.1


def soft_round(y: torch.Tensor, t: float) -> torch.Tensor:
    """Soft rounding (Agustsson & Theis 2020): a differentiable staircase that
    tends to ``round`` as the temperature ``t`` falls."""
    f = torch.floor(y)
    r = y - f - 0.5
    return f + 0.5 + torch.tanh(r / t) / (2 * math.tanh(1 / (2 * t)))


def softround_noise(y: torch.Tensor, progress: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Soft rounding plus uniform noise with the temperature annealed from
    ``SOFT_T_START`` to ``SOFT_T_END`` (as C3 and Cool-chic train), then
    straight-through rounding after ``NOISE_TO_STE`` of the fit."""
    if progress >= NOISE_TO_STE:
        return ste(y, progress)
    t = SOFT_T_START + (SOFT_T_END - SOFT_T_START) * progress / NOISE_TO_STE
    u = torch.rand(y.shape, generator=generator, device=y.device, dtype=y.dtype) - 0.5
    return soft_round(y, t) + u
