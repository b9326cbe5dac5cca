"""The context features gathered at coded positions equal the whole-grid
reference definition, for every pass, with and without a parent level."""
import numpy as np
import pytest

from core.grid.context import anchor_mask, features_at, features_np


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (6, 1), (5, 7), (33, 17), (64, 96)])
@pytest.mark.parametrize("anchors", [True, False])
@pytest.mark.parametrize("with_parent", [True, False])
def test_gathered_features_equal_the_reference(shape, anchors, with_parent):
    rng = np.random.default_rng(sum(shape))
    grid = rng.integers(-8, 8, shape)
    parent = rng.integers(-8, 8, ((shape[0] + 1) // 2, (shape[1] + 1) // 2)) if with_parent else None
    mask = anchor_mask(shape) if anchors else ~anchor_mask(shape)
    rows, cols = np.nonzero(mask)
    expected = features_np(grid, parent, anchors)[:, mask]
    assert np.array_equal(features_at(grid, parent, anchors, rows, cols), expected)
