"""Context entropy model of the latent grids, shared by fitting and coding.

Coding order: the coarsest level first; within a level two passes over a
checkerboard. *Anchors* (``(i + j) % 2 == 0``) are conditioned on the
already-decoded coarser level ("parent", ``P[i // 2, j // 2]``, and the
parent's four neighbours); *non-anchors* on their four anchor neighbours and
the parent. Both passes decode in one vectorised call each.

For every latent the model predicts a Laplace mean and scale index linearly
from five integer context features ``x_k``::

    mu    = sum_k w_k x_k   + b_mu
    sigma = sum_k v_k |x_k| + b_sigma        (scale b = B_MIN * RHO**sigma)

Per level and pass there are 12 parameters, stored as int16 in units of
1/256 (``CTX_FRAC``). Coding evaluates the same formula in int64 and maps it
to a model index ``(s, f)`` of :mod:`core.entropy`; fitting evaluates it in
floating point. The two differ only by that quantisation.
"""
from __future__ import annotations

import numpy as np

from ..entropy import MU_DIV, N_SCALES

N_FEATURES = 5
N_CTX_PARAMS = 2 * N_FEATURES + 2
CTX_FRAC = 256
CTX_LIMIT = 32767  # int16 range of the stored parameters


def _neighbours_np(g: np.ndarray) -> list[np.ndarray]:
    p = np.pad(g, 1)
    return [p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]]  # up, down, left, right


def _parent_np(parent: np.ndarray | None, shape: tuple[int, int]) -> list[np.ndarray]:
    h, w = shape
    if parent is None:
        z = np.zeros(shape, dtype=np.int64)
        return [z] * 5
    rows = np.arange(h) // 2
    cols = np.arange(w) // 2
    pick = lambda a: a[rows][:, cols]  # noqa: E731
    return [pick(parent)] + [pick(n) for n in _neighbours_np(parent)]


def anchor_mask(shape: tuple[int, int]) -> np.ndarray:
    i, j = np.indices(shape)
    return (i + j) % 2 == 0


def features_np(grid: np.ndarray, parent: np.ndarray | None, anchors: bool) -> np.ndarray:
    """Integer features (N_FEATURES, h, w) for one pass, over the whole grid: the
    reference definition (``docs/format.md``); coding uses the equivalent
    :func:`features_at`. ``grid`` only needs its anchor positions filled for
    the non-anchor pass."""
    par = _parent_np(parent, grid.shape)
    if anchors:
        return np.stack(par).astype(np.int64)
    return np.stack(_neighbours_np(grid) + [par[0]]).astype(np.int64)


def model_indices(feats: np.ndarray, params: np.ndarray, lo: int, hi: int):
    """Map integer features (N_FEATURES, n) and int16 params (12,) to
    ``(c, s, f)``: the integer centre, scale index and mean fraction.

    Pure int64 arithmetic: identical on every machine.
    """
    params = params.astype(np.int64)
    w, b_mu = params[:N_FEATURES], params[N_FEATURES]
    v, b_sig = params[N_FEATURES + 1 : 2 * N_FEATURES + 1], params[2 * N_FEATURES + 1]
    mu_fp = np.tensordot(w, feats, axes=(0, 0)) + b_mu  # 1/256 units
    step = CTX_FRAC // MU_DIV
    mu_q = (mu_fp + step // 2) // step  # 1/MU_DIV units, rounded
    c = mu_q // MU_DIV
    f = mu_q % MU_DIV
    out_of_range = (c < lo) | (c > hi)
    c = np.clip(c, lo, hi)
    f = np.where(out_of_range, 0, f)
    sig_fp = np.tensordot(v, np.abs(feats), axes=(0, 0)) + b_sig
    s = np.clip((sig_fp + CTX_FRAC // 2) // CTX_FRAC, 0, N_SCALES - 1)
    return c, s, f


def features_at(grid: np.ndarray, parent: np.ndarray | None, anchors: bool, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """:func:`features_np` gathered at positions ``(rows, cols)`` only: the same
    values, without computing them over the whole grid (flat gathers on the
    zero-padded grids)."""
    feats = np.zeros((N_FEATURES, rows.size), dtype=np.int64)
    par0 = None
    if parent is not None:
        pp = np.pad(parent, 1).ravel()
        stride = parent.shape[1] + 2
        at = (rows // 2 + 1) * stride + cols // 2 + 1
        par0 = pp.take(at)
        if anchors:
            feats[0] = par0
            for k, off in enumerate((-stride, stride, -1, 1), 1):
                feats[k] = pp.take(at + off)
    if anchors:
        return feats
    g = np.pad(grid, 1).ravel()
    stride = grid.shape[1] + 2
    at = (rows + 1) * stride + cols + 1
    for k, off in enumerate((-stride, stride, -1, 1)):
        feats[k] = g.take(at + off)
    if par0 is not None:
        feats[4] = par0
    return feats


def coding_passes(grids: list[np.ndarray]):
    """Yield ``(level, anchors, mask, parent)`` in coding order."""
    n = len(grids)
    for level in range(n - 1, -1, -1):
        parent = grids[level + 1] if level + 1 < n else None
        mask = anchor_mask(grids[level].shape)
        yield level, True, mask, parent
        yield level, False, ~mask, parent
