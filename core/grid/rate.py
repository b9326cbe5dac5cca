"""Differentiable rate of the latent grids under the context model
(:mod:`core.grid.context`), in bits. Used by the fit only.

All levels are evaluated together from one flat vector, the latents of every
level concatenated (level 0 first, each level row-major): the latents and
their five context features are gathered from it, grouped by the context
parameters that code them (:class:`ContextTable`, made once per image). A
step then costs a small number of operations whatever the number of levels;
on a GPU that count, not the arithmetic, sets the speed of the fit
(``benchmarks/cuda_fit.py``).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ..entropy import B_MIN, MU_DIV, N_SCALES, RHO
from .context import N_CTX_PARAMS, N_FEATURES, N_PASSES, features_np, pass_masks

_LN_RHO = math.log(RHO)
_MIN_P = 2.0**-24
#: exponents are clamped here: below about -87 float32's exp underflows, and torch's
#: CPU exp takes a slow path for such inputs (4.9 ms against 0.32 ms for 524k values
#: in -200..0; in a default fit of kodim01 at quality 10 the exp calls averaged 0.82
#: ms, 0.33 ms once clamped: one-off profiles). exp(-87) = 1.6e-38 changes no bit
#: count: it is either added to 1 or its mass lies far below ``_MIN_P``
_EXP_MIN = -87.0


class ContextTable:
    """Where every latent's context features are, over all levels at once.

    The rate is evaluated over *entries*: the latents grouped by the
    parameters that code them, group ``passes * level + pass`` (the passes of
    :func:`core.grid.context.pass_masks`; the row of ``ctx.reshape(-1, 12)``),
    level 0 first, each group in row-major order.

    Attributes:
        sizes: latents per level (level 0 first).
        group_sizes: entries per group.
        pos: (n,) int64 flat position of each entry's latent.
        index: (N_FEATURES, n) int64 flat positions of each entry's features
            in the flat latents followed by one zero (position ``n``): the
            definition of :func:`core.grid.context.features_np` (features
            outside a grid, and all parent features of the coarsest level,
            read that zero).
    """

    def __init__(self, shapes: list[tuple[int, int]], device=None, passes: int = N_PASSES) -> None:
        self.passes = passes
        self.sizes = [h * w for h, w in shapes]
        offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        zero = int(offsets[-1])
        # the reference features of grids holding their own flat positions, 1-based
        # so that the reference's zero padding (outside a grid, no parent) reads 0
        ids = [offsets[level] + 1 + np.arange(h * w).reshape(h, w) for level, (h, w) in enumerate(shapes)]
        pos, index, self.group_sizes = [], [], []
        for level, grid in enumerate(ids):
            parent = ids[level + 1] if level + 1 < len(ids) else None
            for phase, mask in enumerate(pass_masks(grid.shape, passes)):
                feats = features_np(grid, parent, phase, passes)[:, mask] - 1
                index.append(np.where(feats < 0, zero, feats))
                pos.append(grid[mask] - 1)
                self.group_sizes.append(int(mask.sum()))
        self.pos = torch.from_numpy(np.concatenate(pos)).to(device)
        self.index = torch.from_numpy(np.concatenate(index, axis=1)).to(device)
        self._plans: dict = {}

    def start(self, first: int) -> int:
        """Entries (and flat latents) before level ``first``'s."""
        return sum(self.sizes[:first])

    def plans(self, first: int) -> tuple["GatherPlan", "GatherPlan"]:
        """The gathers of the latents and of their features, for the entries
        from level ``first`` on (made once per ``first``)."""
        if first not in self._plans:
            s = self.start(first)
            n = sum(self.sizes)
            self._plans[first] = (GatherPlan(self.pos[s:], n + 1), GatherPlan(self.index[:, s:].reshape(-1), n + 1))
        return self._plans[first]


class GatherPlan:
    """``src[..., index]`` for a fixed ``index`` into ``size`` positions, with a
    backward that sums each position's gradient in a fixed order (a float64
    running sum over the entries sorted by position, differenced at the ends of
    each position's run) on CUDA instead of atomic adds: deterministic, and fast
    where many entries read one position (the context's zero), where a GPU's
    atomic adds serialise. On the CPU, whose ``index_add_`` is sequential, that
    (the same sums, fewer temporaries)."""

    def __init__(self, index: torch.Tensor, size: int) -> None:
        self.index = index
        self.size = size
        self._runs = None

    def __call__(self, src: torch.Tensor) -> torch.Tensor:
        return _Gather.apply(src, self)

    def sum_sorted(self, grad: torch.Tensor) -> torch.Tensor:
        """The gradient of the source: ``grad``'s entries summed per position
        over the last axis, in the fixed order (the order and each position's
        run are found once, on first use)."""
        if self._runs is None:
            counts = torch.bincount(self.index, minlength=self.size)
            ends = torch.cumsum(counts, 0)
            self._runs = torch.argsort(self.index, stable=True), ends - counts, ends
        order, starts, ends = self._runs
        run = torch.nn.functional.pad(torch.cumsum(grad.index_select(-1, order).double(), -1), (1, 0))
        return (run.index_select(-1, ends) - run.index_select(-1, starts)).to(grad.dtype)


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, src, plan):
        ctx.plan = plan
        return src.index_select(-1, plan.index)

    @staticmethod
    def backward(ctx, grad):
        plan = ctx.plan
        if grad.is_cuda:
            return plan.sum_sorted(grad), None
        return grad.new_zeros((*grad.shape[:-1], plan.size)).index_add_(-1, plan.index, grad), None


def laplace_bits(y: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """-log2 of the Laplace(mu, b) mass of [y - 1/2, y + 1/2], b = B_MIN RHO**sigma,
    for any mean and scale (the fit's rate, whose are coded, is :func:`coded_bits`).

    The mass is taken relative to that of the coder's alphabet, the residuals
    ``-radius..radius`` around ``floor(mu)`` (:func:`core.entropy.model_table`,
    normalised): at large scales the coder
    spends about ``log2(2 radius + 1)`` bits per symbol, where the untruncated
    density would count up to twice that.

    Where a gradient is wanted its three partial derivatives are computed with
    the bits, in closed form (:class:`_ClosedFormBits`): the same floats forward,
    and a backward of three products instead of autograd's walk back through
    some thirty element-wise operations: the rate of a 768x512 fit's latents,
    forward and backward, 46.2 -> 37.0 ms with one thread
    (``benchmarks/step_parts.py``)."""
    if torch.is_grad_enabled() and (y.requires_grad or mu.requires_grad or sigma.requires_grad):
        return _ClosedFormBits.apply(_laplace, y, mu, sigma, radius)
    return _laplace(y, mu, sigma, radius, False)[0]


def _laplace(y, mu, sigma, radius: int, grads: bool):
    """The bits of :func:`laplace_bits` and, if ``grads``, their derivatives by
    ``y``, ``mu`` and ``sigma`` (those of autograd through the same formula:
    ``abs`` and ``clamp`` pass a gradient at their kinks, ``floor`` none)."""
    s = sigma.clamp(0, N_SCALES - 1)
    b = B_MIN * torch.exp(s * _LN_RHO)
    diff = y - mu
    d = diff.abs()
    upper = _exp(-(d + 0.5) / b)
    lower = _exp(-(d - 0.5).clamp(min=0) / b)
    tail = 0.5 * (lower - upper)  # |d| >= 1/2
    cexp = _exp(-(0.5 - d).clamp(min=0) / b)
    centre = 1 - 0.5 * (cexp + upper)  # |d| < 1/2
    is_tail = d >= 0.5
    p = torch.where(is_tail, tail, centre)
    bits = -torch.log2(p.clamp(min=_MIN_P))
    frac = mu - torch.floor(mu)  # mu's offset from the alphabet's centre, 0..1
    o1 = _exp(-(radius + 0.5 + frac) / b)
    o2 = _exp(-(radius + 0.5 - frac) / b)
    inside = 1 - 0.5 * (o1 + o2)
    bits = bits + torch.log2(inside.clamp(min=_MIN_P))
    if not grads:
        return bits, None
    # d bits / d p and d bits / d inside (zero where the clamp holds them)
    g_p = torch.where(p >= _MIN_P, p, torch.inf).reciprocal_().mul_(-1 / math.log(2))
    g_in = torch.where(inside >= _MIN_P, inside, torch.inf).reciprocal_().mul_(1 / math.log(2))
    inv_b = b.reciprocal()
    # d p / d d and d p / d b on each branch
    dp_dd = torch.where(is_tail, lower - upper, cexp - upper).mul_(-0.5).mul_(inv_b)
    dp_db = torch.where(is_tail, lower * (d - 0.5) - upper * (d + 0.5), -(cexp * (0.5 - d) + upper * (d + 0.5)))
    dp_db.mul_(0.5).mul_(inv_b * inv_b)
    d_dist = g_p * dp_dd * torch.sign(diff)
    # d inside / d frac and d inside / d b
    d_frac = g_in * (o1 - o2).mul_(0.5).mul_(inv_b)
    d_b = g_p * dp_db - g_in * (o1 * (radius + 0.5 + frac) + o2 * (radius + 0.5 - frac)).mul_(0.5).mul_(inv_b * inv_b)
    d_sigma = d_b * b * _LN_RHO * ((sigma >= 0) & (sigma <= N_SCALES - 1))
    return bits, (d_dist, d_frac - d_dist, d_sigma)


def _exp(x: torch.Tensor) -> torch.Tensor:
    """exp of a temporary, its arguments clamped at ``_EXP_MIN`` (in place)."""
    return torch.exp(x.clamp_(min=_EXP_MIN))


class _ClosedFormBits(torch.autograd.Function):
    """Bits whose partial derivatives in ``y``, ``mu`` and ``sigma`` come with
    them: ``formula(y, mu, sigma, *constants, True)`` returns the bits and the
    three derivatives (:func:`_laplace`, :func:`_coded_bits`), and the backward
    is three products with the incoming gradient."""

    @staticmethod
    def forward(ctx, formula, y, mu, sigma, *constants):
        bits, grads = formula(y, mu, sigma, *constants, True)
        ctx.save_for_backward(*grads)
        ctx.n_constants = len(constants)
        return bits

    @staticmethod
    def backward(ctx, grad):
        return (None, *(grad * g for g in ctx.saved_tensors), *[None] * ctx.n_constants)


def _ste(x: torch.Tensor) -> torch.Tensor:
    """``floor(x + 1/2)`` forward, identity backward. Half up, as the coder's
    integer ``(x + step // 2) // step``: ``torch.round`` rounds ties to even,
    and the context's integer means and scales often sit on a tie (a mean a
    quarter off at the smallest scale costs a bit instead of a hundredth)."""
    return x + (torch.floor(x + 0.5) - x).detach()


def coded_params(mu: torch.Tensor, sigma: torch.Tensor, lo: int, hi: int):
    """Mean and scale index as the coder sees them (:func:`core.grid.context.model_indices`):
    the mean on a 1/MU_DIV grid clamped to the latent range, the scale index
    an integer in 0..N_SCALES-1; gradients pass straight through."""
    mu = _ste(mu * MU_DIV) / MU_DIV
    mu = torch.where(mu < lo, torch.full_like(mu, lo), torch.where(mu >= hi + 1, torch.full_like(mu, hi), mu))
    return mu, _ste(sigma).clamp(0, N_SCALES - 1)


def coded_bits(y: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """:func:`laplace_bits` of ``y`` under :func:`coded_params` ``(mu, sigma)``,
    in one pass: the bits of the fit, with the gradients of that composition
    (autograd's through ``coded_params``, and :func:`laplace_bits`'s closed form).

    The coded scale index is an integer and the mean's fraction one of
    ``MU_DIV`` values, so everything that depends on them alone, the scale
    and the alphabet's mass with its derivatives, is read from a table of
    ``N_SCALES * MU_DIV`` rows (:func:`_model_tables`) instead of evaluated per
    entry; the residual's terms share their exponentials and need no branch
    but one; masks are float tensors (:func:`_is`). Rate of a 768x512 fit's
    latents, all levels, forward and backward, on a 2-core Xeon without AMX
    with one thread: 79.9 -> 51.3 ms (``benchmarks/step_parts.py``; issue 8,
    round 23)."""
    grads = torch.is_grad_enabled() and (y.requires_grad or mu.requires_grad or sigma.requires_grad)
    if grads:
        return _ClosedFormBits.apply(_coded_bits, y, mu, sigma, lo, hi)
    return _coded_bits(y, mu, sigma, lo, hi, False)[0]


@functools.lru_cache(maxsize=32)
def _model_tables(radius: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Per model ``k = MU_DIV * s + f``: ``1 / b_s``, the log2 of the alphabet's
    mass (as :func:`_laplace` clamps it) and that log2's derivatives by the
    mean's fraction and by the scale index (in bits; float64, then ``dtype``)."""
    s = torch.arange(N_SCALES, dtype=torch.float64).repeat_interleave(MU_DIV)
    frac = torch.arange(MU_DIV, dtype=torch.float64).repeat(N_SCALES) / MU_DIV
    inv_b = 1 / (B_MIN * torch.exp(s * _LN_RHO))
    a1, a2 = radius + 0.5 + frac, radius + 0.5 - frac
    o1, o2 = torch.exp(-a1 * inv_b), torch.exp(-a2 * inv_b)
    inside = 1 - 0.5 * (o1 + o2)
    g_in = torch.where(inside >= _MIN_P, 1 / (inside * math.log(2)), 0)
    d_frac = g_in * 0.5 * (o1 - o2) * inv_b
    d_sigma = -g_in * 0.5 * (o1 * a1 + o2 * a2) * inv_b * _LN_RHO
    tables = (inv_b, torch.log2(inside.clamp(min=_MIN_P)), d_frac, d_sigma)
    return tuple(t.to(dtype=dtype, device=device) for t in tables)


def _coded_bits(y, mu, sigma, lo: int, hi: int, grads: bool):
    """The bits of :func:`coded_bits` and, if ``grads``, their derivatives by
    ``y``, ``mu`` and ``sigma``.

    With ``d = |y - mu|`` (mu coded) and ``b`` the scale: the mass is
    ``(q - u) / 2`` for ``d >= 1/2`` and ``1 - (q + u) / 2`` below, where
    ``q = exp(-|d - 1/2| / b)`` and ``u = exp(-(d + 1/2) / b)`` (on each side
    ``q`` is :func:`_laplace`'s ``lower`` or ``cexp``); its derivative by ``d``
    is ``-(q - u) / 2b`` on both sides, and by ``b``
    ``(q (d - 1/2) - u (d + 1/2)) / 2b^2``."""
    inv_b_t, inside_t, d_frac_t, d_sigma_t = _model_tables(hi - lo + 1, y.dtype, y.device)
    # coded_params, as integers: mean in 1/MU_DIV units, centre, fraction, scale.
    # Masks are made as floats: on some CPUs torch.where over an irregular mask,
    # or a multiply by a boolean tensor, costs many times an add (2.5 and 0.62 ms
    # against 0.16-0.26 ms for an add or a float multiply, 524k values, one thread
    # on a Xeon without AMX; one-off timings), and index_select reads a table
    # faster than indexing (0.34 ms against 1.14)
    m = torch.floor(mu * MU_DIV + 0.5)
    c = torch.floor(m * (1 / MU_DIV))
    in_range = _is(torch.eq, c, c.clamp(lo, hi))  # outside, the coder uses the range's end, fraction 0
    f = (m - c * MU_DIV).mul_(in_range)
    s = torch.floor(sigma + 0.5)
    s_coded = s.clamp(0, N_SCALES - 1)
    k = (s_coded * MU_DIV).add_(f).long()
    inv_b = inv_b_t.index_select(0, k)
    diff = y - f.mul_(1 / MU_DIV).add_(c.clamp_(lo, hi))
    d = diff.abs()
    below, above = d - 0.5, d + 0.5
    q = (below * inv_b).abs_().neg_().clamp_(min=_EXP_MIN).exp_()
    u = (above * inv_b).neg_().clamp_(min=_EXP_MIN).exp_()
    q_u = q - u
    # (q - u) / 2, plus 1 - q in the centre
    p = torch.addcmul(q_u * 0.5, 1 - q, _is(torch.lt, below, 0))
    p_floor = p.clamp(min=_MIN_P)
    bits = inside_t.index_select(0, k).sub_(torch.log2(p_floor))
    if not grads:
        return bits, None
    # -(d bits / d p) ln 2 / b, zero where the floor holds the mass
    w = p_floor.reciprocal_().mul_(_is(torch.ge, p, _MIN_P)).mul_(inv_b)
    d_y = (w * q_u).mul_(torch.sign(diff)).mul_(0.5 / math.log(2))
    d_sigma = (q * below).sub_(u * above).mul_(w).mul_(-0.5 * _LN_RHO / math.log(2))
    d_sigma.add_(d_sigma_t.index_select(0, k)).mul_(_is(torch.eq, s, s_coded))
    return bits, (d_y, d_frac_t.index_select(0, k).sub_(d_y).mul_(in_range), d_sigma)


def _is(compare, a: torch.Tensor, b) -> torch.Tensor:
    """``compare(a, b)`` as 1.0 / 0.0 in ``a``'s dtype."""
    return compare(a, b, out=torch.empty_like(a))


def flat_bits(flat: torch.Tensor, ctx: torch.Tensor, table: ContextTable, lo: int, hi: int, first: int = 0) -> torch.Tensor:
    """Total bits of the flat latents of every level (see :class:`ContextTable`);
    ``ctx`` is (levels, passes, 12) in real units (the stored int16 divided by
    256); ``lo..hi`` is the latent range; levels below ``first`` are left out."""
    return entry_bits(flat, ctx, table, lo, hi, first).sum()


def group_bits(flat: torch.Tensor, ctx: torch.Tensor, table: ContextTable, lo: int, hi: int,
               inputs: tuple | None = None) -> torch.Tensor:
    """:func:`flat_bits` per group of entries (``passes * level + pass``, all
    levels): a (levels * passes,) tensor, each group's bits depending on that
    group's parameters only. ``inputs``: :func:`entry_inputs` of ``flat``, for
    callers that evaluate fixed latents under many parameters."""
    bits = entry_bits(flat, ctx, table, lo, hi, inputs=inputs)
    return torch.stack([b.sum() for b in bits.split(table.group_sizes)])


def entry_bits(flat: torch.Tensor, ctx: torch.Tensor, table: ContextTable, lo: int, hi: int, first: int = 0,
               inputs: tuple | None = None) -> torch.Tensor:
    """The bits of every entry from level ``first`` on (:func:`flat_bits` unsummed;
    ``inputs`` as :func:`entry_params`)."""
    y, features = entry_inputs(flat, table, first) if inputs is None else inputs
    return coded_bits(y, *_linear_model(features, ctx, table, first), lo, hi)


def entry_params(flat: torch.Tensor, ctx: torch.Tensor, table: ContextTable, lo: int, hi: int, first: int = 0,
                 inputs: tuple | None = None):
    """Every entry's latent and the mean and scale index that code it (as the
    coder sees them, :func:`coded_params`), from level ``first`` on. ``inputs``:
    :func:`entry_inputs` of ``flat`` from that level, if the caller has them."""
    y, features = entry_inputs(flat, table, first) if inputs is None else inputs
    return (y, *entry_model(features, ctx, table, lo, hi, first))


def entry_inputs(flat: torch.Tensor, table: ContextTable, first: int = 0):
    """Every entry's latent and its context features (and their magnitudes),
    from level ``first`` on: ``(y, (features, |features|))``, the features
    (N_FEATURES, entries)."""
    latent_plan, feature_plan = table.plans(first)
    ext = torch.cat([flat, flat.new_zeros(1)])
    feats = feature_plan(ext).view(N_FEATURES, -1)
    return latent_plan(ext), (feats, feats.abs())


def entry_model(features, ctx: torch.Tensor, table: ContextTable, lo: int, hi: int, first: int = 0):
    """The mean and scale index that code each entry (:func:`coded_params`),
    from its features and their magnitudes (:func:`entry_inputs`) and the
    context parameters."""
    return coded_params(*_linear_model(features, ctx, table, first), lo, hi)


def _linear_model(features, ctx: torch.Tensor, table: ContextTable, first: int):
    """Each entry's mean and scale index before the coder's rounding and
    clamps (:func:`entry_model`): linear in its features and their magnitudes."""
    feats, mags = features
    sizes = table.group_sizes[table.passes * first :]
    # one small product per group: the parameters are shared within a group, and
    # split's and unbind's backward are one concatenation or stack each (indexing
    # a row per group would write a zero tensor and copy into it per group: on a
    # GPU ~100 kernel launches per step)
    p = ctx.reshape(-1, N_CTX_PARAMS)[table.passes * first :]
    w_mu, b_mu = p[:, None, :N_FEATURES].unbind(0), p[:, N_FEATURES : N_FEATURES + 1].unbind(0)
    w_sig, b_sig = p[:, None, N_FEATURES + 1 : N_CTX_PARAMS - 1].unbind(0), p[:, N_CTX_PARAMS - 1 :].unbind(0)
    mu = torch.cat([torch.addmm(b_mu[g], w_mu[g], f) for g, f in enumerate(feats.split(sizes, 1))], 1)[0]
    sigma = torch.cat([torch.addmm(b_sig[g], w_sig[g], f) for g, f in enumerate(mags.split(sizes, 1))], 1)[0]
    return mu, sigma


def latent_bits(latents: list[torch.Tensor], ctx: torch.Tensor, lo: int, hi: int, first: int = 0) -> torch.Tensor:
    """:func:`flat_bits` of a list of grids (level 0 first)."""
    table = ContextTable([tuple(y.shape) for y in latents], latents[0].device)
    return flat_bits(torch.cat([y.reshape(-1) for y in latents]), ctx, table, lo, hi, first)


def level_grids(flat: torch.Tensor, sizes: list[int], shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """The level grids of flat latents (views; ``sizes`` latents per level, level 0 first)."""
    return [t.view(s) for t, s in zip(flat.split(sizes), shapes)]
