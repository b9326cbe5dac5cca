"""The context features gathered at coded positions equal the whole-grid
reference definition, for every pass of the three formats' schemes, with and
without a parent level; the passes partition a level and read only earlier
passes; version 3 splits the even lattice of large levels only."""
import numpy as np
import pytest

from core.grid.context import (
    DIAGONAL, DIRECT, N_FEATURES, SUBLATTICE_MIN, _offsets, features_at, features_np, model_indices, pass_masks,
    pass_positions, stored_passes,
)

#: (130, 127) and (128, 128) are at or above SUBLATTICE_MIN: five non-empty passes in version 3
SHAPES = [(1, 1), (1, 5), (6, 1), (5, 7), (33, 17), (64, 96), (130, 127), (128, 128)]
PHASES = [(2, 0), (2, 1), (3, 0), (3, 1), (3, 2)] + [(5, k) for k in range(5)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("passes,phase", PHASES)
@pytest.mark.parametrize("with_parent", [True, False])
def test_gathered_features_equal_the_reference(shape, passes, phase, with_parent):
    rng = np.random.default_rng(sum(shape))
    grid = rng.integers(-8, 8, shape)
    parent = rng.integers(-8, 8, ((shape[0] + 1) // 2, (shape[1] + 1) // 2)) if with_parent else None
    mask = pass_masks(shape, passes)[phase]
    rows, cols = np.nonzero(mask)
    expected = features_np(grid, parent, phase, passes)[:, mask]
    assert np.array_equal(features_at(grid, parent, phase, rows, cols, passes), expected)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("passes", [2, 3, 5])
def test_passes_partition_the_level_and_read_only_earlier_passes(shape, passes):
    masks = pass_masks(shape, passes)
    assert np.array_equal(sum(m.astype(int) for m in masks), np.ones(shape, int))
    order = np.zeros(shape, int)
    for k, m in enumerate(masks):
        order[m] = k
    for phase in range(1, passes):
        offsets = _offsets(phase, passes)
        for i, j in zip(*np.nonzero(masks[phase])):
            for di, dj in offsets:
                if 0 <= i + di < shape[0] and 0 <= j + dj < shape[1]:
                    assert order[i + di, j + dj] < phase


@pytest.mark.parametrize("shape", SHAPES + [(2, 2), (3, 3), (4, 7), (7, 4), (1, 20000), (2, 9000), (129, 131)])
@pytest.mark.parametrize("passes", [2, 3, 5])
def test_positions_are_the_masks_in_raster_order(shape, passes):
    for mask, (rows, cols) in zip(pass_masks(shape, passes), pass_positions(shape, passes)):
        want_r, want_c = np.nonzero(mask)
        assert np.array_equal(rows, want_r) and np.array_equal(cols, want_c)


def test_second_of_three_passes_sees_its_diagonal_neighbours():
    grid = np.arange(1, 26).reshape(5, 5)
    feats = features_np(grid, None, 1, 3)
    # position (1, 1): up-left (0, 0), up-right (0, 2), down-left (2, 0), down-right (2, 2)
    assert feats[:4, 1, 1].tolist() == [grid[0, 0], grid[0, 2], grid[2, 0], grid[2, 2]]
    assert feats[4, 1, 1] == 0  # no parent


def test_the_offsets_of_each_pass():
    assert [_offsets(k, 3) for k in (1, 2)] == [DIAGONAL, DIRECT]
    assert _offsets(1, 2) == DIRECT
    twice = lambda offsets: tuple((2 * a, 2 * b) for a, b in offsets)  # noqa: E731
    assert [_offsets(k, 5) for k in (1, 2, 3, 4)] == [twice(DIAGONAL), twice(DIRECT), DIAGONAL, DIRECT]


def test_five_passes_split_the_even_lattice_of_large_levels_only():
    big, small = (128, 128), (127, 128)
    assert big[0] * big[1] >= SUBLATTICE_MIN > small[0] * small[1]
    i, j = np.indices(big)
    masks = pass_masks(big, 5)
    assert np.array_equal(masks[0], (i % 4 == 0) & (j % 4 == 0))
    assert np.array_equal(masks[1], (i % 4 == 2) & (j % 4 == 2))
    assert np.array_equal(masks[0] | masks[1] | masks[2], (i % 2 == 0) & (j % 2 == 0))
    # a small level: version 2's three passes, as passes 0, 3 and 4
    three, five = pass_masks(small, 3), pass_masks(small, 5)
    assert not five[1].any() and not five[2].any()
    assert all(np.array_equal(a, b) for a, b in zip(three, [five[0], five[3], five[4]]))
    # pass 1 at (2, 2) reads the multiples of 4 around it, pass 2 at (2, 4) the positions at distance 2 in its row and column
    grid = np.arange(1, 1 + big[0] * big[1]).reshape(big)
    assert features_np(grid, None, 1, 5)[:4, 2, 2].tolist() == [grid[0, 0], grid[0, 4], grid[4, 0], grid[4, 4]]
    assert features_np(grid, None, 2, 5)[:4, 2, 4].tolist() == [grid[0, 4], grid[4, 4], grid[2, 2], grid[2, 6]]


@pytest.mark.parametrize("shape", SHAPES + [(2, 2), (3, 3), (4, 7), (1, 20000), (2, 9000), (3, 6000)])
@pytest.mark.parametrize("passes", [2, 3, 5])
def test_stored_sets_are_the_passes_with_latents_from_version_3(shape, passes):
    """:func:`stored_passes` finds them without making masks (a hostile header's
    sizes must cost nothing); it agrees with the masks."""
    want = [m.any() for m in pass_masks(shape, passes)] if passes == 5 else [True] * passes
    assert stored_passes([shape], passes)[0].tolist() == want


def test_unknown_pass_count_is_refused():
    with pytest.raises(ValueError):
        pass_masks((4, 4), 4)


@pytest.mark.parametrize("seed", range(3))
def test_model_indices_are_the_integer_formula(seed):
    # mean and scale in 1/256 units are sums of int16 parameters times features,
    # rounded half up to the coder's grids (docs/format.md), clamped
    from core.entropy import MU_DIV, N_SCALES

    rng = np.random.default_rng(seed)
    feats = rng.integers(-8, 8, (N_FEATURES, 999))
    params = rng.integers(-32767, 32768, 2 * N_FEATURES + 2).astype(np.int16)
    params[N_FEATURES] = rng.integers(-600, 600)  # means in and out of the latent range
    c, s, f = model_indices(feats, params, -8, 7)
    p = params.astype(np.int64)
    mu = sum(int(p[k]) * feats[k] for k in range(N_FEATURES)) + p[N_FEATURES]
    mu_q = (mu + 32) // 64
    inside = (mu_q // MU_DIV >= -8) & (mu_q // MU_DIV <= 7)
    assert np.array_equal(c, np.clip(mu_q // MU_DIV, -8, 7))
    assert np.array_equal(f, np.where(inside, mu_q % MU_DIV, 0))
    sig = sum(int(p[N_FEATURES + 1 + k]) * np.abs(feats[k]) for k in range(N_FEATURES)) + p[2 * N_FEATURES + 1]
    assert np.array_equal(s, np.clip((sig + 128) // 256, 0, N_SCALES - 1))
