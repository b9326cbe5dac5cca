"""Rounding of latents during fitting.

Every method ends, at the end of the fit, in hard integer rounding: what is
entropy-coded is always ``round(latent)``. Methods are registered through the
plugin hooks (:mod:`core.hooks`); each is a callable
``(latents, progress, generator) -> tensor`` with ``progress`` in 0..1.
"""
from __future__ import annotations

import torch

#: fraction of the fit after which ``noise`` switches to straight-through rounding
NOISE_TO_STE = 0.75


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
