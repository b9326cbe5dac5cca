"""Rate-distortion optimised rounding of the latents (core/grid/rdo.py)."""
import math

import numpy as np
import pytest
import torch

from core.codec import decode, encode
from core.grid import fit as F
from core.grid import rdo
from core.grid.arch import GridArch, synthesize, synthesize_planes
from core.grid.context import N_CTX_PARAMS, N_FEATURES, N_PASSES
from core.grid.rate import ContextTable, flat_bits, level_grids
from core.options import EncodeOptions
from plugin_support import kodak_crop


@pytest.mark.parametrize("level", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("parity", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_each_pixel_moves_with_its_owner_only(level, parity):
    # the claim the refinement rests on: moving one latent of a parity class
    # changes only the pixels whose owner it is, so one synthesis with the whole
    # class moved gives each latent's change of distortion (exactly but for float
    # rounding where a window's edge falls on a pixel, whose weight is zero there);
    # level 4 is 3 x 2 latents, as small as the coarsest levels of a Kodak image
    height, width = 37, 29
    arch = GridArch(5, (8,), 3)
    shapes = arch.grid_shapes(height, width)
    gen = torch.Generator().manual_seed(level)
    latents = [torch.randint(-3, 4, s, generator=gen).float() for s in shapes]
    layers = [(torch.randn(o, i, generator=gen), torch.randn(o, generator=gen)) for o, i in arch.layer_shapes()]
    base = synthesize_planes(latents, layers, (height, width))
    h, w = shapes[level]
    step = 1 if level == 0 else 2
    rows = rdo._owners(height, h, parity[0], step)
    cols = rdo._owners(width, w, parity[1], step)
    owner = rows[:, None] * w + cols[None, :]
    for r in range(parity[0] % step, h, step):
        for c in range(parity[1] % step, w, step):
            moved = [y.clone() for y in latents]
            moved[level][r, c] += 1
            change = (synthesize_planes(moved, layers, (height, width)) - base).abs().amax(0)
            assert change[owner == r * w + c].max() > 0.01
            others = owner != r * w + c  # none where the class is one latent
            assert not others.any() or change[others].max() < 1e-5


def _problem(seed=0, height=40, width=56, lam=1e-3):
    image = kodak_crop("kodim05", box=(200, 100, 200 + width, 100 + height))
    target = torch.from_numpy(np.array(image)).float().permute(2, 0, 1) / 255
    arch = GridArch(4, (8, 8), 3)
    shapes = arch.grid_shapes(height, width)
    gen = torch.Generator().manual_seed(seed)
    layers = [(torch.randn(o, i, generator=gen) * 0.3, torch.zeros(o)) for o, i in arch.layer_shapes()]
    table = ContextTable(shapes)
    ctx = torch.zeros(arch.levels, N_PASSES, N_CTX_PARAMS)
    ctx[:, :, :N_FEATURES] = 0.2
    ctx[:, :, N_CTX_PARAMS - 1] = 20.0
    flat = torch.randint(-2, 3, (sum(table.sizes),), generator=gen).float()
    return flat, table, shapes, layers, target, ctx, lam


def _objective(flat, table, shapes, layers, target, ctx, lam):
    grids = level_grids(flat, table.sizes, shapes)
    out = synthesize(grids, layers, tuple(target.shape[1:])).permute(2, 0, 1)
    n_pix = target.shape[1] * target.shape[2]
    return float(torch.mean((out - target) ** 2)) + lam * float(flat_bits(flat, ctx, table, -8, 7)) / n_pix


@pytest.mark.parametrize("seed", [0, 1])
def test_refine_lowers_the_objective_it_reports(seed):
    flat, table, shapes, layers, target, ctx, lam = _problem(seed)
    out, stats = rdo.refine(flat, table.sizes, shapes, layers, target, ctx, table, -8, 7, lam, levels=3)
    assert stats["moved"] > 0
    assert stats["j_after"] < stats["j_before"]
    assert math.isclose(stats["j_before"], _objective(flat, table, shapes, layers, target, ctx, lam), rel_tol=1e-6)
    assert math.isclose(stats["j_after"], _objective(out, table, shapes, layers, target, ctx, lam), rel_tol=1e-6)
    # integers in range, each moved by at most one step per level, levels past ``levels`` untouched
    assert torch.equal(out, out.round()) and out.min() >= -8 and out.max() <= 7
    assert (out - flat).abs().max() <= 1
    assert torch.equal(out[sum(table.sizes[:3]):], flat[sum(table.sizes[:3]):])
    assert int((out != flat).sum()) == stats["moved"]


def test_refine_with_no_levels_is_rounding():
    flat, table, shapes, layers, target, ctx, lam = _problem()
    out, stats = rdo.refine(flat, table.sizes, shapes, layers, target, ctx, table, -8, 7, lam, levels=0)
    assert torch.equal(out, flat) and stats["moved"] == 0


def test_refine_on_every_level_of_a_small_image():
    # the coarsest levels of small grids: classes without latents are skipped
    flat, table, shapes, layers, target, ctx, lam = _problem(seed=2, height=20, width=9)
    out, stats = rdo.refine(flat, table.sizes, shapes, layers, target, ctx, table, -8, 7, lam, levels=len(shapes))
    assert shapes[-1] == (3, 2)
    assert stats["j_after"] <= stats["j_before"]
    assert math.isclose(stats["j_after"], _objective(out, table, shapes, layers, target, ctx, lam), rel_tol=1e-6)
    assert int((out != flat).sum()) == stats["moved"]


def test_fit_with_refinement_writes_a_file_that_decodes(monkeypatch):
    # a real crop through the whole encoder with the refinement at the end of the
    # fit, on every level, in two sweeps
    image = kodak_crop("kodim23", box=(300, 200, 364, 248))
    opts = EncodeOptions(quality=60, effort=1)
    monkeypatch.setattr(F, "RDO_LEVELS", 7)
    monkeypatch.setattr(F, "RDO_SWEEPS", 2)
    fitted = F.fit_grid(image, opts)
    assert fitted.stats["rdo_j_after"] <= fitted.stats["rdo_j_before"]
    assert 1 <= fitted.stats["rdo_sweeps"] <= 2
    data = encode(image, opts)
    out = decode(data)
    assert out.shape == image.shape
    mse = np.mean((out.astype(np.float64) - image) ** 2)
    assert 10 * math.log10(255**2 / mse) > 20


def test_high_qualities_refine_in_more_sweeps():
    assert F.rdo_sweeps(10) == F.rdo_sweeps(F.RDO_HIGH_QUALITY - 1) == F.RDO_SWEEPS
    assert F.rdo_sweeps(F.RDO_HIGH_QUALITY) == F.rdo_sweeps(100) == F.RDO_SWEEPS_HIGH > F.RDO_SWEEPS


def test_a_high_quality_fit_runs_the_high_sweep_count(monkeypatch):
    # a real crop at quality 90: three sweeps (fewer only if one moved nothing);
    # with the threshold above 90, the same fit stops at RDO_SWEEPS
    image = kodak_crop("kodim23", box=(300, 200, 364, 248))
    real = F.refine

    def sweeps_run():
        moved = []

        def spy(*a):
            out = real(*a)
            moved.append(out[1]["moved"])
            return out

        monkeypatch.setattr(F, "refine", spy)
        fitted = F.fit_grid(image, EncodeOptions(quality=90, effort=1))
        assert len(moved) == fitted.stats["rdo_sweeps"]
        return moved

    high = sweeps_run()
    assert len(high) == F.RDO_SWEEPS_HIGH or high[-1] == 0
    assert len(high) > F.RDO_SWEEPS
    monkeypatch.setattr(F, "RDO_HIGH_QUALITY", 101)
    assert len(sweeps_run()) <= F.RDO_SWEEPS
