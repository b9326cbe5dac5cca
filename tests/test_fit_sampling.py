"""Fitting on a subset of pixels and estimating the rate from a window: the
estimates agree with the exact quantities, and fits that use them still
produce valid, deterministic files."""
import numpy as np
import pytest
import torch

import core
from core.grid import fit as F
from core.grid.arch import GridArch, default_levels, lerp_tables, synthesize, synthesize_at
from core.grid.context import N_CTX_PARAMS, anchor_mask
from core.grid.rate import SAMPLE_MIN_LATENTS, latent_bits


def test_synthesize_at_matches_the_full_render():
    gen = torch.Generator().manual_seed(0)
    height, width = 37, 53
    latents = [torch.randn((-(-height // 2**l), -(-width // 2**l)), generator=gen) for l in range(4)]
    layers = [(torch.randn(8, 4, generator=gen), torch.randn(8, generator=gen)),
              (torch.randn(3, 12, generator=gen), torch.randn(3, generator=gen))]
    full = synthesize(latents, layers, (height, width), row_block=height)
    rows = torch.randint(0, height, (400,), generator=gen)
    cols = torch.randint(0, width, (400,), generator=gen)
    tables = lerp_tables([y.shape for y in latents], (height, width), "cpu")
    at = synthesize_at(latents, layers, tables, rows, cols)
    assert torch.allclose(at, full[rows, cols], atol=1e-4)


def _grids(height, width, seed=0):
    arch = GridArch(default_levels(height, width), (16, 16), 3)
    gen = torch.Generator().manual_seed(seed)
    shapes = arch.grid_shapes(height, width)
    latents = [torch.round(torch.randn(s, generator=gen) * 2) for s in shapes]
    masks = [torch.from_numpy(anchor_mask(s)) for s in shapes]
    ctx = torch.randn((arch.levels, 2, N_CTX_PARAMS), generator=gen) * 0.2
    ctx[:, :, N_CTX_PARAMS - 1] = 24.0
    return latents, masks, ctx


def test_windowed_rate_is_an_unbiased_estimate():
    latents, masks, ctx = _grids(256, 256)
    exact = float(latent_bits(latents, ctx, masks, -8, 7))
    gen = torch.Generator().manual_seed(1)
    draws = [float(latent_bits(latents, ctx, masks, -8, 7, sample=0.25, gen=gen)) for _ in range(60)]
    assert np.mean(draws) == pytest.approx(exact, rel=0.01)
    assert np.std(draws) > 0  # it really samples
    # without a generator, or at sample 1, the exact value
    assert float(latent_bits(latents, ctx, masks, -8, 7, sample=0.25)) == pytest.approx(exact, rel=1e-6)
    assert float(latent_bits(latents, ctx, masks, -8, 7, sample=1.0, gen=gen)) == pytest.approx(exact, rel=1e-6)


def test_small_grids_are_never_sampled():
    side = int(SAMPLE_MIN_LATENTS**0.5) // 2  # every level below the threshold
    latents, masks, ctx = _grids(side, side)
    exact = float(latent_bits(latents, ctx, masks, -8, 7))
    gen = torch.Generator().manual_seed(3)
    assert float(latent_bits(latents, ctx, masks, -8, 7, sample=0.1, gen=gen)) == pytest.approx(exact, rel=1e-6)


def test_a_sampled_fit_writes_a_valid_deterministic_file(monkeypatch, synth):
    monkeypatch.setattr(F, "SUBSAMPLE", 0.5)
    monkeypatch.setattr(F, "RATE_SAMPLE", 0.5)
    image = synth(3, w=128, h=128, seed=2)
    a = core.encode(image, effort=1, seed=5)
    b = core.encode(image, effort=1, seed=5)
    assert a == b
    out = core.decode(a)
    assert out.shape == image.shape
    mse = np.mean((out.astype(float) - image) ** 2)
    assert 10 * np.log10(255**2 / mse) > 15
