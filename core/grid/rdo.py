"""Rate-distortion optimised rounding of the fitted latents (encoder only).

The fit trains relaxed latents and rounds them once, at its freeze
(:mod:`core.grid.fit`). Rounding to the nearest integer ignores what each
integer costs: a latent at 1 whose pixels barely need it, or one whose
neighbour value the context model codes in fewer bits, is left where it is.
:func:`refine` moves latents by one step where that lowers the fit's own
objective ``MSE + lambda * bits / pixels``, as the rate-distortion optimised
quantization of classical encoders does.

A latent of level ``l`` reaches the pixels of a window ``2 * 2**l`` wide
around it (bilinear upsampling), so the latents of one parity class of a
level (every other row and column; all of level 0, whose latents are the
pixels) have disjoint windows: one synthesis with all of them moved gives
each one's change of distortion exactly. Its change of rate is taken as that
of its own code (the latents whose context it is are left out), so each
level's moves are kept only if the whole objective, measured after them,
fell. Nothing in the file format changes.

The syntheses are the decoder's own floats (:class:`core.grid.arch.LevelMaps`
renders as :func:`core.grid.arch.synthesize` does, upsampling only the level
that changed).
"""
from __future__ import annotations

import torch

from .arch import LevelMaps
from .rate import entry_params, flat_bits, laplace_bits, level_grids


@torch.no_grad()
def refine(ints: torch.Tensor, sizes: list[int], shapes: list[tuple[int, int]], layers, target: torch.Tensor,
           ctx: torch.Tensor, table, lo: int, hi: int, lam: float, levels: int) -> tuple[torch.Tensor, dict]:
    """Latents ``ints`` (flat, integers, as the rate model reads them) moved by
    one step where that lowers ``MSE + lam * bits / pixels``.

    Args:
        sizes, shapes: latents per level and the level grids' shapes.
        layers: the synthesis (weight, bias) pairs, as they would be stored.
        target: (C, H, W) image in 0..1.
        ctx: (levels, passes, 12) context parameters in real units.
        levels: how many levels to refine, the finest first.
        table, lo, hi: as :func:`core.grid.rate.flat_bits`.

    Returns:
        The refined latents (a new tensor) and a dict of the objective
        (``j_before``, ``j_after``, in units of ``MSE + lam bpp``) and the
        number of latents moved.
    """
    channels, height, width = target.shape
    target = target.permute(1, 2, 0)  # as synthesize renders: (H, W, C)
    n_pix = height * width
    radius = hi - lo + 1
    ints = ints.clone()

    def objective(flat, err):
        return float(err.sum()) / (channels * n_pix) + lam * float(flat_bits(flat, ctx, table, lo, hi)) / n_pix

    # each level's upsampled grid and each pixel's squared error summed over the
    # channels, kept up to date
    maps = LevelMaps(level_grids(ints, sizes, shapes), (height, width))
    err = ((maps.render(layers) - target) ** 2).sum(-1)
    j_before = j = objective(ints, err)
    moved = 0
    for level in range(min(levels, len(shapes))):
        start = sum(sizes[:level])
        kept, kept_err = ints.clone(), err
        n_moved = 0
        for parity in ([(0, 0)] if level == 0 else [(0, 0), (0, 1), (1, 0), (1, 1)]):
            n, err = _refine_class(ints, err, maps, level, parity, start, sizes, shapes, layers, target, ctx, table,
                                   lo, hi, lam, radius, channels)
            n_moved += n
        j_new = objective(ints, err)
        if j_new < j:
            j, moved = j_new, moved + n_moved
        else:
            ints, err = kept, kept_err
            maps.set(level, level_grids(ints, sizes, shapes)[level])
    return ints, {"j_before": j_before, "j_after": j, "moved": moved}


def _refine_class(ints, err, maps, level, parity, start, sizes, shapes, layers, target, ctx, table, lo, hi, lam,
                  radius, channels):
    """Move, in place, the latents of one parity class of ``level`` whose own
    rate and the distortion of their pixels say so (``err``: each pixel's
    squared error now); returns how many moved and the pixels' new errors."""
    h, w = shapes[level]
    height, width, _ = target.shape
    grids = level_grids(ints, sizes, shapes)
    # entries of this level and class: their latents, means, scales, flat positions
    y, mu, sigma = (v[: sizes[level]] for v in entry_params(ints, ctx, table, lo, hi, first=level))
    pos = table.pos[start : start + sizes[level]] - start
    rows, cols = pos // w, pos % w
    step = 1 if level == 0 else 2
    sel = ((rows % step) == parity[0] % step) & ((cols % step) == parity[1] % step)
    pos, y, mu, sigma = pos[sel], y[sel], mu[sel], sigma[sel]
    if not len(pos):  # a grid of one row or column has no latents of odd parity there
        return 0, err
    bits0 = laplace_bits(y, mu, sigma, radius)
    # each pixel's owner in the class (the class latent whose window holds it)
    owner = _owners(height, h, parity[0], step)[:, None] * w + _owners(width, w, parity[1], step)[None, :]
    owner = owner.reshape(-1).to(err.device)
    best = torch.zeros_like(y)
    best_dj = torch.zeros_like(y)
    d_errs = []
    for delta in (-1.0, 1.0):
        cand = (y + delta).clamp(lo, hi)
        moved_grid = grids[level].clone().view(-1)
        moved_grid[pos] = cand
        d_err = ((maps.render(layers, level, moved_grid.view(h, w)) - target) ** 2).sum(-1) - err
        d_errs.append(d_err.reshape(-1))
        d_dist = torch.zeros(h * w, dtype=d_err.dtype, device=d_err.device).index_add_(0, owner, d_err.reshape(-1))[pos]
        dj = d_dist / channels + lam * (laplace_bits(cand, mu, sigma, radius) - bits0)
        better = (dj < best_dj) & (cand != y)
        best = torch.where(better, cand - y, best)
        best_dj = torch.where(better, dj, best_dj)
    go = best != 0
    ints[start + pos[go]] += best[go]
    maps.set(level, grids[level])  # a view of ``ints``: the moved grid
    # the pixels' errors after the moves: each pixel's owner moved by -1, +1 or not
    choice = torch.zeros(h * w, dtype=best.dtype, device=best.device)
    choice[pos] = best
    mine = choice[owner]
    new_err = err.reshape(-1) + torch.where(mine < 0, d_errs[0], torch.where(mine > 0, d_errs[1], torch.zeros_like(mine)))
    return int(go.sum()), new_err.view(height, width)


def _owners(n_out: int, n_in: int, parity: int, step: int) -> torch.Tensor:
    """For each output row (or column), the index of the latent of the class
    ``parity`` (every ``step``-th from it) whose upsampling window holds it."""
    if step == 1:
        return torch.arange(n_out)
    u = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp(0, n_in - 1)
    j = parity + step * torch.round((u - parity) / step)
    return j.clamp(0, n_in - 1).long()

