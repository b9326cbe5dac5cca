"""The output layer's integers re-chosen after the fit (core/grid/polish.py)."""
import numpy as np
import pytest
import torch

from core.grid.arch import GridArch, synthesize_planes
from core.grid.polish import BLOCK, normal_equations, output_features, polish_integers, polish_output
from core.lsq import LSQ, quantized_layers


def _objective(gram, cross, x):
    return x @ gram @ x - 2 * cross @ x


def test_separable_problem_reaches_its_integer_optimum():
    # a diagonal G: each coordinate's best integer is its continuous optimum
    # rounded and clamped, and one pass finds it
    gram = np.diag([2.0, 0.5, 1.0, 3.0])
    cross = np.array([3.1, -0.4, 40.0, -0.2])
    steps = np.array([0.5, 0.25, 1.0, 0.1])
    lo, hi = np.full(4, -8), np.full(4, 7)
    q, change = polish_integers(gram, cross, np.zeros(4, np.int64), steps, lo, hi)
    expect = np.clip(np.rint(cross / np.diag(gram) / steps), lo, hi)
    assert np.array_equal(q, expect)
    assert change == pytest.approx(_objective(gram, cross, steps * q))


@pytest.mark.parametrize("seed", range(4))
def test_descent_lowers_the_quadratic_and_stays_in_range(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(50, 9))
    gram, cross = a.T @ a, a.T @ rng.normal(size=50) * 3
    steps = rng.uniform(0.05, 0.5, size=9)
    lo, hi = np.full(9, -8), np.full(9, 7)
    q0 = rng.integers(-8, 8, size=9)
    q, change = polish_integers(gram, cross, q0, steps, lo, hi)
    before, after = _objective(gram, cross, steps * q0), _objective(gram, cross, steps * q)
    assert change < 0 and after - before == pytest.approx(change)
    assert q.min() >= -8 and q.max() <= 7 and q.dtype == np.int64
    # a local optimum along every coordinate: no single integer move lowers it
    for j in range(9):
        for d in (-1, 1):
            if lo[j] <= q[j] + d <= hi[j]:
                moved = q.copy()
                moved[j] += d
                assert _objective(gram, cross, steps * moved) >= after - 1e-9


def test_normal_equations_sum_over_blocks():
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(5, 2 * BLOCK + 17, generator=gen)
    target = torch.randn(3, feats.shape[1], generator=gen)
    gram, cross = normal_equations(feats, target)
    f, t = feats.double(), target.double()
    assert np.allclose(gram, (f @ f.T).numpy()) and np.allclose(cross, (f @ t.T).numpy())


def _network(seed, arch, size):
    gen = torch.Generator().manual_seed(seed)
    shapes = arch.grid_shapes(*size)
    grids = [torch.randint(-4, 5, s, generator=gen).float() for s in shapes]
    layers, quant = [], []
    for o, i in arch.layer_shapes():
        w, b = torch.randn(o, i, generator=gen) * 0.3, torch.randn(o, generator=gen) * 0.05
        qw, qb = LSQ(4), LSQ(10)
        qw.init_from(w)
        qb.init_from(b)
        layers.append((w, b))
        quant.append((qw, qb))
    return grids, layers, quant


@torch.no_grad()
def _render(grids, layers, quant, size):
    return synthesize_planes(grids, quantized_layers(layers, quant), size)


@pytest.mark.parametrize("widths", [(8, 8), ()])
def test_polish_lowers_the_render_distortion(widths):
    # the target is the network's own render with other output integers: the
    # polish moves toward them, only the output layer changes, and its float
    # weights quantize to integers in range
    size = (23, 31)
    arch = GridArch(3, widths, 3)
    grids, layers, quant = _network(1, arch, size)
    (w, b), (qw, qb) = layers[-1], quant[-1]
    wq, ws = qw.integers(w)
    other = [(lw.clone(), lb.clone()) for lw, lb in layers]
    gen = torch.Generator().manual_seed(2)
    other[-1] = ((wq + torch.randint(-2, 3, wq.shape, generator=gen)).clamp(-8, 7).float() * ws, b.clone())
    target = _render(grids, other, quant, size)
    before = float(torch.mean((_render(grids, layers, quant, size) - target) ** 2))
    hidden = [(lw.clone(), lb.clone()) for lw, lb in layers[:-1]]
    change = polish_output(grids, layers, quant, target, size)
    after = float(torch.mean((_render(grids, layers, quant, size) - target) ** 2))
    assert change < 0 and after == pytest.approx(before + change, rel=1e-4, abs=1e-9)
    assert after < 0.5 * before
    assert all(torch.equal(a, c) and torch.equal(b_, d) for (a, b_), (c, d) in zip(layers[:-1], hidden))
    q, s = qw.integers(layers[-1][0])
    assert torch.allclose(q.float() * s, layers[-1][0]) and q.min() >= -8 and q.max() <= 7


def test_polish_changes_nothing_at_the_optimum():
    size = (16, 20)
    arch = GridArch(3, (8,), 3)
    grids, layers, quant = _network(3, arch, size)
    target = _render(grids, layers, quant, size)
    saved = [(w.clone(), b.clone()) for w, b in layers]
    assert polish_output(grids, layers, quant, target, size) == 0.0
    assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(layers, saved))


def test_output_features_are_what_the_output_layer_sees():
    size = (12, 18)
    arch = GridArch(3, (8, 6), 3)
    grids, layers, quant = _network(4, arch, size)
    qlayers = quantized_layers(layers, quant)
    feats = output_features(grids, qlayers, size)
    w, b = qlayers[-1]
    assert feats.shape == (6 + 3 + 1, 12 * 18)
    out = (torch.cat([w, b[:, None]], dim=1) @ feats + 0.5).reshape(3, *size)
    assert torch.allclose(out, synthesize_planes(grids, qlayers, size), atol=1e-5)
