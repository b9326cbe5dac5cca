"""Differentiable rate of the latent grids under the context model
(:mod:`core.grid.context`), in bits. Used by the fit only."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..entropy import B_MIN, MU_DIV, N_SCALES, RHO
from .context import N_FEATURES

_LN_RHO = math.log(RHO)
_MIN_P = 2.0**-24


def _neighbours(g: torch.Tensor) -> list[torch.Tensor]:
    p = F.pad(g[None, None], (1, 1, 1, 1))[0, 0]
    return [p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]]


def _parent(parent: torch.Tensor | None, shape, like: torch.Tensor) -> list[torch.Tensor]:
    if parent is None:
        return [torch.zeros(shape, device=like.device, dtype=like.dtype)] * 5
    h, w = shape
    rows = torch.arange(h, device=like.device) // 2
    cols = torch.arange(w, device=like.device) // 2
    pick = lambda a: a.index_select(0, rows).index_select(1, cols)  # noqa: E731
    return [pick(parent)] + [pick(n) for n in _neighbours(parent)]


def laplace_bits(y: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """-log2 of the Laplace(mu, b) mass of [y - 1/2, y + 1/2], b = B_MIN RHO**sigma."""
    b = B_MIN * torch.exp(sigma.clamp(0, N_SCALES - 1) * _LN_RHO)
    d = (y - mu).abs()
    upper = torch.exp(-(d + 0.5) / b)
    lower = torch.exp(-(d - 0.5).clamp(min=0) / b)
    tail = 0.5 * (lower - upper)  # |d| >= 1/2
    centre = 1 - 0.5 * (torch.exp(-(0.5 - d).clamp(min=0) / b) + upper)  # |d| < 1/2
    p = torch.where(d >= 0.5, tail, centre)
    return -torch.log2(p.clamp(min=_MIN_P))


def _ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def coded_params(mu: torch.Tensor, sigma: torch.Tensor, lo: int, hi: int):
    """Mean and scale index as the coder sees them (:func:`core.grid.context.model_indices`):
    the mean on a 1/MU_DIV grid clamped to the latent range, the scale index
    an integer in 0..N_SCALES-1; gradients pass straight through."""
    mu = _ste(mu * MU_DIV) / MU_DIV
    mu = torch.where(mu < lo, torch.full_like(mu, lo), torch.where(mu >= hi + 1, torch.full_like(mu, hi), mu))
    return mu, _ste(sigma).clamp(0, N_SCALES - 1)


def latent_bits(
    latents: list[torch.Tensor], ctx: torch.Tensor, masks: list[torch.Tensor], lo: int, hi: int, first: int = 0
) -> torch.Tensor:
    """Total bits of all latent grids; ``ctx`` is (levels, 2, 12) in real units
    (the stored int16 divided by 256); ``masks[l]`` marks level l's anchors;
    ``lo..hi`` is the latent range; levels below ``first`` are left out."""
    total = latents[0].new_zeros(())
    n = len(latents)
    for level in range(first, n):
        y = latents[level]
        parent = latents[level + 1] if level + 1 < n else None
        par = _parent(parent, y.shape, y)
        fa = torch.stack(par)
        fn = torch.stack(_neighbours(y) + [par[0]])
        out = []
        for feats, p in ((fa, ctx[level, 0]), (fn, ctx[level, 1])):
            w, b_mu = p[:N_FEATURES], p[N_FEATURES]
            v, b_sig = p[N_FEATURES + 1 : 2 * N_FEATURES + 1], p[2 * N_FEATURES + 1]
            mu = torch.tensordot(w, feats, dims=1) + b_mu
            sigma = torch.tensordot(v, feats.abs(), dims=1) + b_sig
            out.append((mu, sigma))
        m = masks[level]
        mu = torch.where(m, out[0][0], out[1][0])
        sigma = torch.where(m, out[0][1], out[1][1])
        total = total + laplace_bits(y, *coded_params(mu, sigma, lo, hi)).sum()
    return total
