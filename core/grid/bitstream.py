"""Serialisation of a fitted grid model into the ``MODL`` and ``LATS``
sections, and back. numpy + constriction only; no torch.

``MODL``: architecture, per-layer float32 steps and scale indices, the int16
context parameters, then a range-coded stream of the network integers.
``LATS``: one range-coded stream of all latent integers, in the order of
:func:`core.grid.context.coding_passes`. See ``docs/format.md``.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from ..entropy import N_SCALES, GroupedDecoder, GroupedEncoder, best_scale
from ..errors import AniFormatError
from .arch import GridArch
from .context import N_CTX_PARAMS, coding_passes, features_at, model_indices

BIAS_BITS = 10
MAX_BIAS_BITS = 12  # what a reader accepts; bounds the size of the coding tables
TAG_MODEL = b"MODL"
TAG_LATENTS = b"LATS"
_LAYER = struct.Struct("<ffBB")


@dataclass
class GridModel:
    """The integers and steps that define a fitted grid image."""

    arch: GridArch
    bits: int
    weights: list[tuple[np.ndarray, float, np.ndarray, float]]  # (w ints, w step, b ints, b step)
    ctx: np.ndarray  # int16 (levels, 2, N_CTX_PARAMS)
    latents: list[np.ndarray]  # int64 grids, level 0 finest

    def latent_range(self) -> tuple[int, int]:
        return latent_range(self.bits)


def latent_range(bits: int) -> tuple[int, int]:
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _words(data: np.ndarray) -> bytes:
    return struct.pack("<I", len(data)) + np.asarray(data, dtype="<u4").tobytes()


def _read_words(buf: bytes, offset: int) -> tuple[np.ndarray, int]:
    if offset + 4 > len(buf):
        raise AniFormatError("corrupt .ani section: word count truncated")
    (n,) = struct.unpack_from("<I", buf, offset)
    end = offset + 4 + 4 * n
    if end > len(buf):
        raise AniFormatError(f"corrupt .ani section: {n} words declared, {len(buf) - offset - 4} bytes present")
    return np.frombuffer(buf, dtype="<u4", count=n, offset=offset + 4).astype(np.uint32), end


def write_model(model: GridModel) -> bytes:
    enc = GroupedEncoder()
    head = [model.arch.pack(), struct.pack("<B", BIAS_BITS)]
    w_radius, b_radius = 2 ** (model.bits - 1), 2 ** (BIAS_BITS - 1)
    for wq, ws, bq, bs in model.weights:
        sw, sb = best_scale(wq.ravel(), w_radius), best_scale(bq.ravel(), b_radius)
        head.append(_LAYER.pack(ws, bs, sw, sb))
        enc.encode(wq.ravel(), np.full(wq.size, sw), np.zeros(wq.size, np.int64), w_radius)
        enc.encode(bq.ravel(), np.full(bq.size, sb), np.zeros(bq.size, np.int64), b_radius)
    head.append(np.asarray(model.ctx, dtype="<i2").tobytes())
    head.append(_words(enc.words()))
    return b"".join(head)


def read_model(buf: bytes, bits: int, channels: int, n_params: int):
    """Parse ``MODL``; returns (arch, weights, ctx)."""
    arch, pos = GridArch.unpack(buf)
    if arch.channels != channels:
        raise AniFormatError(f"corrupt .ani file: model outputs {arch.channels} channels, header says {channels}")
    if arch.n_weights() != n_params:
        raise AniFormatError(f"corrupt .ani file: header declares {n_params} parameters, model has {arch.n_weights()}")
    try:
        (bias_bits,) = struct.unpack_from("<B", buf, pos)
        pos += 1
        if not 2 <= bias_bits <= MAX_BIAS_BITS:
            raise AniFormatError(f"corrupt .ani model section: bias bits {bias_bits}")
        layers = []
        for _ in arch.layer_shapes():
            layers.append(_LAYER.unpack_from(buf, pos))
            pos += _LAYER.size
        n_ctx = arch.levels * 2 * N_CTX_PARAMS
        if pos + 2 * n_ctx > len(buf):
            raise AniFormatError("corrupt .ani model section: context parameters truncated")
        ctx = np.frombuffer(buf, dtype="<i2", count=n_ctx, offset=pos).reshape(arch.levels, 2, N_CTX_PARAMS)
        pos += 2 * n_ctx
    except struct.error:
        raise AniFormatError("corrupt .ani model section: truncated") from None
    words, pos = _read_words(buf, pos)
    if pos != len(buf):
        raise AniFormatError("corrupt .ani model section: trailing bytes")
    dec = GroupedDecoder(words)
    w_radius, b_radius = 2 ** (bits - 1), 2 ** (bias_bits - 1)
    weights = []
    for (o, i), (ws, bs, sw, sb) in zip(arch.layer_shapes(), layers):
        if sw >= N_SCALES or sb >= N_SCALES or not (np.isfinite(ws) and np.isfinite(bs)):
            raise AniFormatError("corrupt .ani model section: invalid layer step or scale")
        wq = dec.decode(np.full(o * i, sw), np.zeros(o * i, np.int64), w_radius).reshape(o, i)
        bq = dec.decode(np.full(o, sb), np.zeros(o, np.int64), b_radius)
        weights.append((wq, ws, bq, bs))
    return arch, weights, ctx.astype(np.int64)


def write_latents(model: GridModel) -> bytes:
    lo, hi = model.latent_range()
    radius = hi - lo + 1
    enc = GroupedEncoder()
    for level, anchors, mask, parent in coding_passes(model.latents):
        grid = model.latents[level]
        rows, cols = np.nonzero(mask)
        feats = features_at(grid, parent, anchors, rows, cols)
        c, s, f = model_indices(feats, model.ctx[level, 0 if anchors else 1], lo, hi)
        enc.encode(grid[rows, cols] - c, s, f, radius)
    return _words(enc.words())


def read_latents(buf: bytes, arch: GridArch, ctx: np.ndarray, bits: int, height: int, width: int) -> list[np.ndarray]:
    words, pos = _read_words(buf, 0)
    if pos != len(buf):
        raise AniFormatError("corrupt .ani latent section: trailing bytes")
    lo, hi = latent_range(bits)
    radius = hi - lo + 1
    grids = [np.zeros(shape, dtype=np.int64) for shape in arch.grid_shapes(height, width)]
    dec = GroupedDecoder(words)
    for level, anchors, mask, parent in coding_passes(grids):
        grid = grids[level]
        rows, cols = np.nonzero(mask)
        feats = features_at(grid, parent, anchors, rows, cols)
        c, s, f = model_indices(feats, ctx[level, 0 if anchors else 1], lo, hi)
        values = dec.decode(s, f, radius) + c
        if values.size and (values.min() < lo or values.max() > hi):
            raise AniFormatError("corrupt .ani latent section: decoded value outside the latent range")
        grid[rows, cols] = values
    return grids
