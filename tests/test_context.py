"""The context features gathered at coded positions equal the whole-grid
reference definition, for every pass of both formats' schemes, with and
without a parent level; the passes partition a level."""
import numpy as np
import pytest

from core.grid.context import DIAGONAL, DIRECT, features_at, features_np, pass_masks, pass_positions

SHAPES = [(1, 1), (1, 5), (6, 1), (5, 7), (33, 17), (64, 96)]
PHASES = [(2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]


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
@pytest.mark.parametrize("passes", [2, 3])
def test_passes_partition_the_level_and_read_only_earlier_passes(shape, passes):
    masks = pass_masks(shape, passes)
    assert np.array_equal(sum(m.astype(int) for m in masks), np.ones(shape, int))
    order = np.zeros(shape, int)
    for k, m in enumerate(masks):
        order[m] = k
    for phase in range(1, passes):
        offsets = DIAGONAL if (passes, phase) == (3, 1) else DIRECT
        for i, j in zip(*np.nonzero(masks[phase])):
            for di, dj in offsets:
                if 0 <= i + di < shape[0] and 0 <= j + dj < shape[1]:
                    assert order[i + di, j + dj] < phase


@pytest.mark.parametrize("shape", SHAPES + [(2, 2), (3, 3), (4, 7), (7, 4)])
@pytest.mark.parametrize("passes", [2, 3])
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


def test_unknown_pass_count_is_refused():
    with pytest.raises(ValueError):
        pass_masks((4, 4), 4)
