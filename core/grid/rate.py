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
#: levels with fewer latents are always counted exactly
SAMPLE_MIN_LATENTS = 16384


def _neighbours(g: torch.Tensor) -> list[torch.Tensor]:
    p = F.pad(g[None, None], (1, 1, 1, 1))[0, 0]
    return [p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]]


def _parent(parent: torch.Tensor | None, rows: torch.Tensor, cols: torch.Tensor, like: torch.Tensor) -> list[torch.Tensor]:
    """The parent and its four neighbours at child positions ``rows x cols``."""
    if parent is None:
        return [torch.zeros((len(rows), len(cols)), device=like.device, dtype=like.dtype)] * 5
    rows, cols = rows // 2, cols // 2
    pick = lambda a: a.index_select(0, rows).index_select(1, cols)  # noqa: E731
    return [pick(parent)] + [pick(n) for n in _neighbours(parent)]


def _window(shape, fraction: float, gen: torch.Generator | None, device):
    """Rows and columns of a random window of about ``fraction`` of a grid,
    starting on even positions (so the checkerboard and the parents line up)."""
    h, w = shape
    if fraction >= 1 or gen is None:
        return 0, h, 0, w
    hh = min(h, 2 * math.ceil(h * math.sqrt(fraction) / 2))
    ww = min(w, 2 * math.ceil(w * math.sqrt(fraction) / 2))
    r0 = 2 * int(torch.randint(0, (h - hh) // 2 + 1, (1,), generator=gen, device=gen.device).item()) if hh < h else 0
    c0 = 2 * int(torch.randint(0, (w - ww) // 2 + 1, (1,), generator=gen, device=gen.device).item()) if ww < w else 0
    return r0, r0 + hh, c0, c0 + ww


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
    latents: list[torch.Tensor], ctx: torch.Tensor, masks: list[torch.Tensor], lo: int, hi: int, first: int = 0,
    sample: float = 1.0, gen: torch.Generator | None = None,
) -> torch.Tensor:
    """Total bits of all latent grids; ``ctx`` is (levels, 2, 12) in real units
    (the stored int16 divided by 256); ``masks[l]`` marks level l's anchors;
    ``lo..hi`` is the latent range; levels below ``first`` are left out.

    With ``sample < 1`` (and a generator), levels of at least
    ``SAMPLE_MIN_LATENTS`` latents are estimated from a random window of about
    that fraction of their area, scaled up: an unbiased estimate that costs
    about ``sample`` of the exact one (used by the fit to make steps cheaper)."""
    total = latents[0].new_zeros(())
    n = len(latents)
    for level in range(first, n):
        y = latents[level]
        h, w = y.shape
        frac = sample if h * w >= SAMPLE_MIN_LATENTS else 1.0
        r0, r1, c0, c1 = _window((h, w), frac, gen, y.device)
        rows = torch.arange(r0, r1, device=y.device)
        cols = torch.arange(c0, c1, device=y.device)
        parent = latents[level + 1] if level + 1 < n else None
        par = _parent(parent, rows, cols, y)
        fa = torch.stack(par)
        yp = F.pad(y[None, None], (1, 1, 1, 1))[0, 0]
        nb = [yp[r0:r1, c0 + 1 : c1 + 1], yp[r0 + 2 : r1 + 2, c0 + 1 : c1 + 1], yp[r0 + 1 : r1 + 1, c0:c1], yp[r0 + 1 : r1 + 1, c0 + 2 : c1 + 2]]
        fn = torch.stack(nb + [par[0]])
        out = []
        for feats, p in ((fa, ctx[level, 0]), (fn, ctx[level, 1])):
            wgt, b_mu = p[:N_FEATURES], p[N_FEATURES]
            v, b_sig = p[N_FEATURES + 1 : 2 * N_FEATURES + 1], p[2 * N_FEATURES + 1]
            mu = torch.tensordot(wgt, feats, dims=1) + b_mu
            sigma = torch.tensordot(v, feats.abs(), dims=1) + b_sig
            out.append((mu, sigma))
        m = masks[level][r0:r1, c0:c1]
        mu = torch.where(m, out[0][0], out[1][0])
        sigma = torch.where(m, out[0][1], out[1][1])
        bits = laplace_bits(y[r0:r1, c0:c1], *coded_params(mu, sigma, lo, hi)).sum()
        total = total + (bits * (h * w / ((r1 - r0) * (c1 - c0))) if (r1 - r0) * (c1 - c0) < h * w else bits)
    return total
