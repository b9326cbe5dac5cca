"""Fitting the context model alone to given integer latents, by their code length.

The grid fit uses it twice (:mod:`core.grid.fit`): every ``CTX_REFIT_EVERY``
steps, for a few steps, on the hard-rounded latents of the moment, so that the
latents train against a rate close to the coder's; and once at ``FREEZE``,
from which on the latents are integers that no longer change, so the
parameters of the context model (:mod:`core.grid.context`) only have to
minimise the code length of those integers and the synthesis steps that follow
need no rate term at all. Fitted alongside everything else, the context model
lags behind the latents it codes: on kodim01 at quality 60 the stored model
spent 700 kbit on latents that 60 steps of this fit code in 546 kbit (-22 %;
three other files of a first check: -0.5 to -3 %).
"""
from __future__ import annotations

import math

import torch

from .context import CTX_FRAC, CTX_LIMIT, N_CTX_PARAMS
from .rate import ContextTable, entry_inputs, group_bits

#: Adam steps of the context fit, and its start learning rate (cosine to 0)
CTX_FIT_STEPS = 60
CTX_FIT_LR = 0.05


def quantize_ctx(ctx: torch.Tensor) -> torch.Tensor:
    """The stored int16 parameters (as floats, units of 1/CTX_FRAC) of real-valued ones."""
    return torch.clamp(torch.round(ctx * CTX_FRAC), -CTX_LIMIT, CTX_LIMIT)


def fit_context(ints: torch.Tensor, ctx_train: torch.Tensor, gain: torch.Tensor, table: ContextTable,
                lo: int, hi: int, steps: int = CTX_FIT_STEPS, lr: float = CTX_FIT_LR):
    """Fit the context parameters to fixed integer latents by their code length.

    Args:
        ints: the flat integer latents (as :class:`ContextTable` reads them).
        ctx_train: (levels, passes, 12) trainable parameters, the real ones divided
            by ``gain`` (the fit's parametrisation); the start point.
        gain: (12,) the gain of each parameter.
        table, lo, hi: as :func:`core.grid.rate.flat_bits`.

    Each step evaluates the bits every group of entries costs with the
    parameters as they would be stored (rounded to 1/CTX_FRAC, gradients
    passing straight through), and keeps, group by group, the best parameters
    seen: the code length never grows, whatever the optimiser does on this
    piecewise objective (Adam at a fixed rate can make it much worse).

    Returns:
        The best trainable parameters (detached, shaped as ``ctx_train``) and
        their total bits, a 0-d tensor (as coded: stored parameters).
    """
    param = ctx_train.detach().clone().requires_grad_()
    best = param.detach().clone().view(-1, N_CTX_PARAMS)
    best_bits = None
    opt = torch.optim.Adam([param], lr=lr, fused=param.is_cuda)  # one kernel per step on a GPU
    with torch.no_grad():
        inputs = entry_inputs(ints, table)  # the latents do not change: gathered once
    for i in range(steps + 1):
        real = param * gain
        stored = real + (quantize_ctx(real) / CTX_FRAC - real).detach()
        bits = group_bits(ints, stored, table, lo, hi, inputs)
        with torch.no_grad():
            if best_bits is None:
                best_bits = bits.detach().clone()
            else:
                better = bits.detach() < best_bits
                best_bits = torch.where(better, bits.detach(), best_bits)
                best = torch.where(better[:, None], param.detach().view(-1, N_CTX_PARAMS), best)
        if i == steps:
            break
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * i / steps))
        opt.zero_grad(set_to_none=True)
        bits.sum().backward()
        opt.step()
    return best.view_as(ctx_train), best_bits.sum()
