"""Context entropy model of the latent grids, shared by fitting and coding.

Coding order: the coarsest level first; within a level five passes (format
version 3; :func:`pass_masks`). The even lattice (``i`` and ``j`` even) of a
level of at least ``SUBLATTICE_MIN`` latents is split as a level is, one
scale up: its multiples of 4 are conditioned on the already-decoded coarser
level ("parent", ``P[i // 2, j // 2]``, and the parent's four neighbours),
the positions 2 mod 4 on their four diagonal neighbours at distance 2 and the
parent, the rest of the lattice on their four direct neighbours at distance 2
and the parent; a smaller level codes its even lattice in one pass, with the
parent's features (its passes 1 and 2 are empty). Then ``i`` and ``j`` odd,
on their four diagonal neighbours and the parent; then the rest (``(i + j)``
odd) on their four direct neighbours and the parent. Every pass decodes in
one vectorised call. Version 2 files have three passes, every level as a
small one of version 3; version 1 files two, a checkerboard: anchors ``(i +
j) % 2 == 0`` conditioned on the parent, then the rest on their four anchor
neighbours and the parent. The anchors of a checkerboard cost 2-4 times the
bits of the rest (kodim23 at quality 10, levels 2-5), version 2's even
lattice still 1.6 times those of its last pass (kodim05 at quality 45, level
0: 0.715 against 0.455 bits per latent).

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
#: passes per level of the files this version writes (format version 3);
#: version 1 files have 2, version 2 files 3 (:func:`passes_of`)
N_PASSES = 5
#: in version 3, levels with fewer latents than this code their even lattice in
#: one pass, as version 2 (passes 1 and 2 are empty): their context parameters
#: would cost more than the sub-lattice passes save
SUBLATTICE_MIN = 128 * 128
DIRECT = ((-1, 0), (1, 0), (0, -1), (0, 1))  # up, down, left, right
DIAGONAL = ((-1, -1), (-1, 1), (1, -1), (1, 1))


def splits_even_lattice(shape: tuple[int, int]) -> bool:
    """Whether version 3 codes a level's even lattice in three passes (a level of
    at least ``SUBLATTICE_MIN`` latents) rather than one."""
    return shape[0] * shape[1] >= SUBLATTICE_MIN


def passes_of(version: int) -> int:
    """Passes per level in files of a format version."""
    return {1: 2, 2: 3}.get(version, 5)


def _shifted_np(g: np.ndarray, offsets) -> list[np.ndarray]:
    """``g[i + di, j + dj]`` for each offset, 0 outside the grid."""
    p = np.pad(g, 2)
    h, w = g.shape
    return [p[2 + di : 2 + di + h, 2 + dj : 2 + dj + w] for di, dj in offsets]


def _neighbours_np(g: np.ndarray) -> list[np.ndarray]:
    return _shifted_np(g, DIRECT)


def _parent_np(parent: np.ndarray | None, shape: tuple[int, int]) -> list[np.ndarray]:
    h, w = shape
    if parent is None:
        z = np.zeros(shape, dtype=np.int64)
        return [z] * 5
    rows = np.arange(h) // 2
    cols = np.arange(w) // 2
    pick = lambda a: a[rows][:, cols]  # noqa: E731
    return [pick(parent)] + [pick(n) for n in _neighbours_np(parent)]


def pass_masks(shape: tuple[int, int], passes: int = N_PASSES) -> list[np.ndarray]:
    """The positions of each pass of a level, in coding order.

    Two passes (format version 1): a checkerboard, anchors ``(i + j) % 2 == 0``
    then the rest. Three (version 2): the anchors split, ``i`` and ``j`` even
    first, then ``i`` and ``j`` odd (whose four diagonal neighbours are the
    first pass's), then the rest. Five (version 3): version 2's first pass
    split the same way one scale up: ``i`` and ``j`` multiples of 4, then both
    2 mod 4 (their diagonal neighbours at distance 2 are the first pass's), then
    the rest of the even lattice (direct neighbours at distance 2), then version
    2's second and third passes."""
    i, j = np.indices(shape)
    if passes == 2:
        anchors = (i + j) % 2 == 0
        return [anchors, ~anchors]
    even = (i % 2 == 0) & (j % 2 == 0)
    rest = [(i % 2 == 1) & (j % 2 == 1), (i + j) % 2 == 1]
    if passes == 3:
        return [even] + rest
    if passes == 5:
        if not splits_even_lattice(shape):
            none = np.zeros(shape, dtype=bool)
            return [even, none, none] + rest
        first = (i % 4 == 0) & (j % 4 == 0)
        second = (i % 4 == 2) & (j % 4 == 2)
        return [first, second, even & ((i // 2 + j // 2) % 2 == 1)] + rest
    raise ValueError(f"no context model with {passes} passes")


def _offsets(phase: int, passes: int):
    """The neighbours read by a pass after the first."""
    if passes == 5:
        if phase < 3:
            return tuple((2 * di, 2 * dj) for di, dj in (DIAGONAL if phase == 1 else DIRECT))
        phase -= 2
    return DIAGONAL if (passes != 2 and phase == 1) else DIRECT


def features_np(grid: np.ndarray, parent: np.ndarray | None, phase: int, passes: int = N_PASSES) -> np.ndarray:
    """Integer features (N_FEATURES, h, w) for pass ``phase`` of ``passes``,
    over the whole grid: the reference definition (``docs/format.md``); coding
    uses the equivalent :func:`features_at`. The first pass sees the parent
    and its four neighbours; the others their four neighbours of the earlier
    passes and the parent. ``grid`` only needs the earlier passes' positions
    filled."""
    par = _parent_np(parent, grid.shape)
    if phase == 0:
        return np.stack(par).astype(np.int64)
    return np.stack(_shifted_np(grid, _offsets(phase, passes)) + [par[0]]).astype(np.int64)


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


def features_at(grid: np.ndarray, parent: np.ndarray | None, phase: int, rows: np.ndarray, cols: np.ndarray,
                passes: int = N_PASSES) -> np.ndarray:
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
        if phase == 0:
            feats[0] = par0
            for k, (di, dj) in enumerate(DIRECT, 1):
                feats[k] = pp.take(at + di * stride + dj)
    if phase == 0:
        return feats
    g = np.pad(grid, 2).ravel()
    stride = grid.shape[1] + 4
    at = (rows + 2) * stride + cols + 2
    for k, (di, dj) in enumerate(_offsets(phase, passes)):
        feats[k] = g.take(at + di * stride + dj)
    if par0 is not None:
        feats[4] = par0
    return feats


def pass_positions(shape: tuple[int, int], passes: int = N_PASSES) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(rows, cols)`` of each pass of :func:`pass_masks`, in raster order:
    ``np.nonzero`` of the masks, made without whole-grid masks (cheaper:
    decoding builds them for every pass of every level)."""
    h, w = shape

    def lattice(r0: int, c0: int, step: int = 2):
        r, c = np.arange(r0, h, step), np.arange(c0, w, step)
        return np.repeat(r, c.size), np.tile(c, r.size)

    def checker(parity: int, hh: int = h, ww: int = w):
        # row i holds the columns of parity (i + parity) % 2
        rows = np.repeat(np.arange(hh), (ww + 1) // 2)
        cols = 2 * np.tile(np.arange((ww + 1) // 2), hh) + (rows + parity) % 2
        keep = cols < ww
        return rows[keep], cols[keep]

    if passes == 2:
        return [checker(0), checker(1)]
    if passes == 3:
        return [lattice(0, 0), lattice(1, 1), checker(1)]
    if passes == 5:
        rest = [lattice(1, 1), checker(1)]
        if not splits_even_lattice(shape):
            none = np.zeros(0, dtype=np.int64)
            return [lattice(0, 0), (none, none), (none, none)] + rest
        # the even lattice's own checkerboard, split as version 2 splits a level
        r2, c2 = checker(1, (h + 1) // 2, (w + 1) // 2)
        return [lattice(0, 0, 4), lattice(2, 2, 4), (2 * r2, 2 * c2)] + rest
    raise ValueError(f"no context model with {passes} passes")


def stored_passes(shapes: list[tuple[int, int]], passes: int) -> np.ndarray:
    """Which context parameter sets a file stores, (levels, passes) bool: from
    version 3 only those of passes with latents (``pass_masks(shape)[k].any()``,
    found without making the masks: a hostile header's sizes cost nothing);
    before, all."""
    used = np.ones((len(shapes), passes), dtype=bool)
    if passes == 5:
        for level, (h, w) in enumerate(shapes):
            sub = splits_even_lattice((h, w))
            used[level] = [True, sub and h > 2 and w > 2, sub and ((h + 1) // 2) * ((w + 1) // 2) > 1,
                           h > 1 and w > 1, h * w > 1]
    return used


def coding_passes(grids: list[np.ndarray], passes: int = N_PASSES):
    """Yield ``(level, phase, (rows, cols), parent)`` in coding order."""
    n = len(grids)
    for level in range(n - 1, -1, -1):
        parent = grids[level + 1] if level + 1 < n else None
        for phase, at in enumerate(pass_positions(grids[level].shape, passes)):
            yield level, phase, at, parent


def pass_models(grids: list[np.ndarray], ctx: np.ndarray, lo: int, hi: int, passes: int = N_PASSES):
    """Yield ``(level, phase, rows, cols, c, s, f)`` for every pass in coding order:
    its positions and the coder's model of each (:func:`model_indices`). The
    features are read when the pass is reached, so a decoder fills each pass's
    positions in ``grids`` before asking for the next."""
    for level, phase, (rows, cols), parent in coding_passes(grids, passes):
        feats = features_at(grids[level], parent, phase, rows, cols, passes)
        yield (level, phase, rows, cols, *model_indices(feats, ctx[level, phase], lo, hi))
