"""The fit's rate model reads every latent's context where the coder does: the
flat gathers of :class:`ContextTable` equal the reference features of
:func:`core.grid.context.features_np`, level by level and pass by pass."""
import numpy as np
import pytest
import torch

from core.grid.arch import GridArch, default_levels
from core.grid.context import N_CTX_PARAMS, N_FEATURES, N_PASSES, features_np, pass_masks
from core.grid.rate import ContextTable, GatherPlan, coded_bits, coded_params, flat_bits, laplace_bits, latent_bits


def _grids(height, width, seed=0):
    arch = GridArch(default_levels(height, width), (16, 16), 3)
    gen = np.random.default_rng(seed)
    return [gen.integers(-8, 8, size=s) for s in arch.grid_shapes(height, width)]


@pytest.mark.parametrize("size", [(37, 53), (64, 64), (17, 9), (136, 124)])
@pytest.mark.parametrize("passes", [2, 3, 5])
def test_table_gathers_the_reference_features(size, passes):
    grids = _grids(*size)
    table = ContextTable([g.shape for g in grids], passes=passes)
    ext = np.concatenate([g.ravel() for g in grids] + [[0]])
    feats = ext[table.index.numpy()]
    pos = table.pos.numpy()
    assert np.array_equal(np.sort(pos), np.arange(ext.size - 1))  # every latent once
    start = entry = 0
    for level, g in enumerate(grids):
        parent = grids[level + 1] if level + 1 < len(grids) else None
        for k, mask in enumerate(pass_masks(g.shape, passes)):
            n = table.group_sizes[passes * level + k]
            assert n == mask.sum()
            assert np.array_equal(pos[entry : entry + n], start + np.flatnonzero(mask))
            assert np.array_equal(feats[:, entry : entry + n], features_np(g, parent, k, passes)[:, mask]), (level, k)
            entry += n
        start += g.size
    assert entry == ext.size - 1


def _reference_bits(grids, ctx, lo, hi, first=0):
    """Level by level, pass by pass, from the reference features."""
    total = 0.0
    for level in range(first, len(grids)):
        g = grids[level]
        parent = grids[level + 1] if level + 1 < len(grids) else None
        for phase, mask in enumerate(pass_masks(g.shape, N_PASSES)):
            f = torch.from_numpy(features_np(g, parent, phase)[:, mask]).float()
            p = ctx[level, phase]
            mu = (p[:N_FEATURES, None] * f).sum(0) + p[N_FEATURES]
            sigma = (p[N_FEATURES + 1 : 2 * N_FEATURES + 1, None] * f.abs()).sum(0) + p[-1]
            y = torch.from_numpy(g[mask]).float()
            total += float(laplace_bits(y, *coded_params(mu, sigma, lo, hi), radius=hi - lo + 1).sum())
    return total


@pytest.mark.parametrize("first", [0, 1])
def test_bits_equal_a_level_by_level_evaluation(first):
    grids = _grids(48, 40, seed=3)
    gen = torch.Generator().manual_seed(4)
    ctx = torch.randn((len(grids), N_PASSES, N_CTX_PARAMS), generator=gen) * 0.3
    ctx[..., -1] = 20.0
    got = float(latent_bits([torch.from_numpy(g).float() for g in grids], ctx, -8, 7, first=first))
    assert got == pytest.approx(_reference_bits(grids, ctx, -8, 7, first), rel=1e-5)


def test_gradients_reach_every_level_and_the_context_parameters():
    grids = _grids(48, 40, seed=5)
    table = ContextTable([g.shape for g in grids])
    flat = torch.cat([torch.from_numpy(g).float().ravel() for g in grids]) + 0.3
    flat.requires_grad_()
    ctx = torch.full((len(grids), N_PASSES, N_CTX_PARAMS), 0.1)
    ctx[..., -1] = 20.0
    ctx.requires_grad_()
    flat_bits(flat, ctx, table, -8, 7, first=1).backward()
    per_level = [t.abs().sum() for t in flat.grad.split(table.sizes)]
    assert per_level[0] == 0  # left out with first=1
    assert all(v > 0 for v in per_level[1:])
    assert (ctx.grad[0] == 0).all() and (ctx.grad[1:].abs().sum((1, 2)) > 0).all()


@pytest.mark.parametrize("scale", [0, 20, 40, 63])
def test_bits_match_the_coder_s_normalised_table(scale):
    """With the alphabet's radius the estimate is the coder's own code length
    (:func:`core.entropy.cost_bits`) at every scale, large ones included."""
    from core.entropy import MU_DIV, cost_bits

    lo, hi = -8, 7
    radius = hi - lo + 1
    for f in range(MU_DIV):
        mu = torch.full((2 * radius + 1,), -1 + f / MU_DIV)
        y = torch.arange(-radius, radius + 1, dtype=torch.float32) - 1  # every residual around floor(mu) = -1
        got = laplace_bits(y, mu, torch.full_like(mu, float(scale)), radius=radius)
        want = np.array([cost_bits(np.array([r]), scale, f, radius) for r in range(-radius, radius + 1)])
        # beyond ~20 bits the two floor the probability differently (2**-24 here, the range coder's precision)
        sure = want < 20
        assert sure.any()
        assert np.allclose(got.numpy()[sure], want[sure], atol=2e-3, rtol=1e-3), (f, got.numpy()[sure] - want[sure])


@pytest.mark.parametrize("size", [(40, 48), (136, 124)])  # the second: a level of five passes
def test_estimate_equals_the_coder_s_cost_means_on_ties_included(size):
    """The fit's rate of stored integers under stored int16 parameters is the
    coder's ideal code length (:func:`core.entropy.cost_bits` of the models
    :func:`core.grid.context.model_indices` picks). The means are put on the
    ties of the coder's rounding (``mu * MU_DIV`` ending in 1/2), which it
    rounds up; rounding them to even once cost a bit per latent here."""
    from core.entropy import _groups, cost_bits
    from core.grid.context import CTX_FRAC, coding_passes, model_indices

    lo, hi = -8, 7
    grids = _grids(*size, seed=7)
    gen = np.random.default_rng(8)
    ctx = np.zeros((len(grids), N_PASSES, N_CTX_PARAMS), dtype=np.int64)
    ctx[..., :N_FEATURES] = 64 * gen.integers(-4, 5, size=ctx[..., :N_FEATURES].shape)  # quarter steps
    ctx[..., N_FEATURES] = 32 + 64 * gen.integers(-2, 3, size=ctx[..., N_FEATURES].shape)  # every mean on a tie
    ctx[..., N_FEATURES + 1 : N_CTX_PARAMS - 1] = gen.integers(0, 64, size=(len(grids), N_PASSES, N_FEATURES))
    # scales on ties too, wide enough that no symbol reaches the 2**-24 floor of the estimate
    ctx[..., N_CTX_PARAMS - 1] = 128 + 256 * gen.integers(28, 50, size=(len(grids), N_PASSES))
    coder = 0.0
    for level, phase, (rows, cols), parent in coding_passes(grids):
        c, s, f = model_indices(features_np(grids[level], parent, phase)[:, rows, cols], ctx[level, phase], lo, hi)
        r = grids[level][rows, cols] - c
        coder += sum(cost_bits(r[at], si, fi, hi - lo + 1) for si, fi, at in _groups(s, f))
    est = float(latent_bits([torch.from_numpy(g).float() for g in grids], torch.from_numpy(ctx).float() / CTX_FRAC, lo, hi))
    assert est == pytest.approx(coder, rel=1e-4)


def test_a_mean_on_a_tie_rounds_up_as_the_coder_does():
    """All-zero latents, a mean of -3/8 (a tie on the quarter grid: the coder
    takes -1/4) at the smallest scale: about 0.005 bits each, not the 1 bit
    of a mean at -1/2."""
    from core.entropy import MU_DIV, cost_bits
    from core.grid.context import CTX_FRAC

    lo, hi = -8, 7
    grids = [np.zeros(s, dtype=np.int64) for s in ((16, 16), (8, 8), (4, 4))]
    ctx = np.zeros((len(grids), N_PASSES, N_CTX_PARAMS), dtype=np.int64)
    ctx[..., N_FEATURES] = -3 * CTX_FRAC // 8
    est = float(latent_bits([torch.from_numpy(g).float() for g in grids], torch.from_numpy(ctx).float() / CTX_FRAC, lo, hi))
    per_latent = cost_bits(np.array([1]), 0, MU_DIV - 1, hi - lo + 1)  # residual 1 from floor(-1/4) = -1, f = 3
    assert per_latent < 0.01
    assert est == pytest.approx(per_latent * sum(g.size for g in grids), rel=1e-3)


def test_the_ordered_sums_of_the_cuda_backward_equal_index_add():
    """GatherPlan's backward on CUDA (sorted running sums, no atomics), run on the
    CPU: the same sums as index_add_, with one position read by a third of the
    entries (as the context's zero is) and a position read by none."""
    gen = torch.Generator().manual_seed(9)
    index = torch.randint(0, 40, (3000,), generator=gen)
    index[:1000] = 40
    plan = GatherPlan(index, 42)
    grad = torch.randn(5, 3000, generator=gen)
    want = torch.zeros(5, 42, dtype=torch.float64).index_add_(-1, index, grad.double())
    got = plan.sum_sorted(grad)
    assert got.dtype == grad.dtype and got.shape == (5, 42)
    assert torch.allclose(got.double(), want, atol=1e-5) and (got[:, 41] == 0).all()
    src = torch.randn(5, 42, generator=gen, requires_grad=True)
    plan(src).backward(grad)
    assert torch.allclose(src.grad, got, atol=1e-5)


def _laplace_by_autograd(y, mu, sigma, radius):
    """The rate's formula as plain tensor operations (what autograd
    differentiates without :class:`core.grid.rate._ClosedFormBits`)."""
    from core.entropy import B_MIN, N_SCALES, RHO

    b = B_MIN * torch.exp(sigma.clamp(0, N_SCALES - 1) * np.log(RHO))
    d = (y - mu).abs()
    upper = torch.exp(-(d + 0.5) / b)
    lower = torch.exp(-(d - 0.5).clamp(min=0) / b)
    centre = 1 - 0.5 * (torch.exp(-(0.5 - d).clamp(min=0) / b) + upper)
    p = torch.where(d >= 0.5, 0.5 * (lower - upper), centre)
    bits = -torch.log2(p.clamp(min=2.0**-24))
    frac = mu - torch.floor(mu).detach()
    outside = 0.5 * (torch.exp(-(radius + 0.5 + frac) / b) + torch.exp(-(radius + 0.5 - frac) / b))
    return bits + torch.log2((1 - outside).clamp(min=2.0**-24))


def test_the_closed_form_gradient_of_the_bits_equals_autograd_s():
    """Every case of the formula: inside and outside the central interval, on
    its edge (``|y - mu| = 1/2``) and at ``y = mu``, masses below the floor,
    scale indices outside 0..63 (no gradient), and the alphabet's edge."""
    gen = torch.Generator().manual_seed(3)
    n = 20000
    y = torch.round(torch.randn(n, generator=gen, dtype=torch.float64) * 4)
    mu = torch.randn(n, generator=gen, dtype=torch.float64) * 4
    mu[:100] = y[:100] + 0.5
    mu[100:200] = y[100:200]
    mu[200:300] = y[200:300] + 30  # far outside a small scale: the floor
    sigma = torch.round(torch.rand(n, generator=gen, dtype=torch.float64) * 80 - 8)
    sigma[:50], sigma[50:100] = 0, 63
    radius = 16
    a = [t.clone().requires_grad_() for t in (y, mu, sigma)]
    want_bits = _laplace_by_autograd(*a, radius)
    want = torch.autograd.grad((want_bits * 1.5).sum(), a)
    b = [t.clone().requires_grad_() for t in (y, mu, sigma)]
    bits = laplace_bits(*b, radius=radius)
    got = torch.autograd.grad((bits * 1.5).sum(), b)
    assert torch.allclose(bits, want_bits, rtol=1e-12, atol=1e-12)
    for g, w in zip(got, want):
        assert torch.allclose(g, w, rtol=1e-9, atol=1e-12)
    assert (got[2][sigma < 0] == 0).all() and (got[2][sigma > 63] == 0).all() and (got[2] != 0).any()
    with torch.no_grad():  # without a gradient, the same bits
        assert torch.equal(laplace_bits(y, mu, sigma, radius=radius), bits.detach())


def test_bits_of_latents_far_from_a_narrow_model_stay_at_the_floor():
    """Exponents below float32's range (clamped for speed) change nothing: a
    latent 40 away from a mean at the smallest scale costs the floor's 24 bits."""
    y = torch.tensor([40.0, 3.0])
    mu = torch.tensor([0.0, 3.0])
    bits = laplace_bits(y, mu, torch.zeros(2), radius=64)
    assert torch.isfinite(bits).all()
    assert abs(float(bits[0]) - 24.0) < 1e-4 and float(bits[1]) < 1e-3


def _coded_cases(dtype, n=30000, seed=11):
    """Latents (integers and not), raw means and scale indices over every case
    of :func:`coded_params` and the formula: each fraction of the quarter grid,
    ties of its rounding, means below and above the latent range (and at its
    ends), scales below 0 and above 63, residuals of exactly 1/2 and 0, and
    latents far from a narrow model (the mass floor)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.round(torch.randn(n, generator=gen, dtype=dtype) * 4)
    y[: n // 4] += torch.rand(n // 4, generator=gen, dtype=dtype) - 0.5
    mu = torch.randn(n, generator=gen, dtype=dtype) * 5
    mu[:200] = torch.floor(mu[:200] * 4) / 4 + 1 / 8  # ties of the quarter grid
    mu[200:300] = y[200:300] + 0.5
    mu[300:400] = y[300:400]
    mu[400:500] = -8.7 - torch.rand(100, generator=gen, dtype=dtype) * 3  # below lo
    mu[500:600] = 7.9 + torch.rand(100, generator=gen, dtype=dtype) * 3  # above hi + 1 (and in 7.9..8)
    mu[600:700] = y[600:700] + 30
    sigma = torch.rand(n, generator=gen, dtype=dtype) * 80 - 8
    sigma[600:700] = 0.2
    return y, mu, sigma


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_coded_bits_equal_the_formula_under_the_coded_parameters(dtype):
    """coded_bits (tables, one pass) equals laplace_bits of coded_params, bits
    and gradients (by autograd through both), in float64 to rounding and in
    float32 to float32's; with no gradient wanted, the same bits."""
    lo, hi = -8, 7
    cases = _coded_cases(dtype)
    a = [t.clone().requires_grad_() for t in cases]
    want_bits = laplace_bits(a[0], *coded_params(a[1], a[2], lo, hi), radius=hi - lo + 1)
    want = torch.autograd.grad((want_bits * 1.5).sum(), a)
    b = [t.clone().requires_grad_() for t in cases]
    bits = coded_bits(*b, lo, hi)
    got = torch.autograd.grad((bits * 1.5).sum(), b)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-4)
    assert bits.dtype == dtype
    assert torch.allclose(bits, want_bits, **tol)
    for g, w in zip(got, want):
        assert torch.allclose(g, w, **tol)
    # no gradient where the coder clamps: scales outside 0..63, means outside the range
    mu_q, s_q = coded_params(cases[1], cases[2], lo, hi)
    s_raw = torch.floor(cases[2] + 0.5)
    assert (got[2][(s_raw < 0) | (s_raw > 63)] == 0).all() and (got[2] != 0).any()
    assert (got[1][cases[1] < lo - 0.125] == 0).all() and (got[1][cases[1] >= hi + 1 - 0.125] == 0).all()
    assert (got[1] != 0).any() and (got[0] != 0).any()
    with torch.no_grad():
        assert torch.equal(coded_bits(*cases, lo, hi), bits.detach())
        # coded parameters code as themselves
        assert torch.allclose(coded_bits(cases[0], mu_q, s_q, lo, hi), bits.detach(), **tol)


def test_coded_bits_are_the_rate_of_the_fit(monkeypatch):
    """flat_bits goes through coded_bits: patching it out changes the rate."""
    import core.grid.rate as R

    grids = _grids(48, 40, seed=12)
    ctx = torch.full((len(grids), N_PASSES, N_CTX_PARAMS), 0.1)
    ctx[..., -1] = 20.0
    flat = [torch.from_numpy(g).float() for g in grids]
    want = float(latent_bits(flat, ctx, -8, 7))
    general = lambda y, mu, sigma, lo, hi: laplace_bits(y, *coded_params(mu, sigma, lo, hi), radius=hi - lo + 1)
    monkeypatch.setattr(R, "coded_bits", general)
    assert float(latent_bits(flat, ctx, -8, 7)) == pytest.approx(want, rel=1e-6)
    monkeypatch.setattr(R, "coded_bits", lambda *a: general(*a) * 2)
    assert float(latent_bits(flat, ctx, -8, 7)) == pytest.approx(2 * want, rel=1e-6)
