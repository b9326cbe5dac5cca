"""Serialisation of a fitted grid model into the ``MODL`` and ``LATS``
sections, and back. numpy + constriction only; no torch.

``MODL``: architecture, per-layer float32 steps and scale indices, the
context parameters, then a range-coded stream of the network integers (and,
from format version 2, of the context parameters' high parts).
``LATS``: one range-coded stream of all latent integers, in the order of
:func:`core.grid.context.coding_passes`. See ``docs/format.md``. Writers
write version 3 (``FORMAT_VERSION``); readers take the version of the file.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from ..container import FORMAT_VERSION
from ..entropy import N_SCALES, GroupedDecoder, GroupedEncoder, best_scale, cost_bits
from ..errors import AniFormatError
from .arch import GridArch
from .context import CTX_LIMIT, N_CTX_PARAMS, N_FEATURES, N_PASSES, pass_models, passes_of, stored_passes

BIAS_BITS = 10
MAX_BIAS_BITS = 12  # what a reader accepts; bounds the size of the coding tables
TAG_MODEL = b"MODL"
TAG_LATENTS = b"LATS"
_LAYER = struct.Struct("<ffBB")
#: version 2 codes the context parameters in four classes (mean weights, mean
#: bias, scale weights, scale bias): each value ``v`` as its high part ``v >>
#: shift`` (range coded, a zero-mean model of the class's scale, alphabet
#: ``-CTX_RADIUS..CTX_RADIUS``) and its ``shift`` low bits (packed)
CTX_CLASSES = (tuple(range(N_FEATURES)), (N_FEATURES,), tuple(range(N_FEATURES + 1, 2 * N_FEATURES + 1)), (2 * N_FEATURES + 1,))
CTX_RADIUS = 1024
CTX_MAX_SHIFT = 15


@dataclass
class GridModel:
    """The integers and steps that define a fitted grid image."""

    arch: GridArch
    bits: int
    weights: list[tuple[np.ndarray, float, np.ndarray, float]]  # (w ints, w step, b ints, b step)
    ctx: np.ndarray  # int16 (levels, passes, N_CTX_PARAMS): N_PASSES as written
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


def _ctx_split(values: np.ndarray) -> tuple[int, int]:
    """The ``(shift, scale)`` coding one class of context parameters in the
    fewest bits: high parts at their best scale plus ``shift`` raw bits each."""
    best = None
    for shift in range(CTX_MAX_SHIFT + 1):
        high = values >> shift
        if high.min() < -CTX_RADIUS or high.max() > CTX_RADIUS:
            continue
        scale = best_scale(high, CTX_RADIUS)
        bits = cost_bits(high, scale, 0, CTX_RADIUS) + shift * values.size
        if best is None or bits < best[0]:
            best = (bits, shift, scale)
    return best[1], best[2]


def _low_bits(values: np.ndarray, shift: int) -> np.ndarray:
    """The ``shift`` low bits of each value, most significant first: a (n * shift,) 0/1 array."""
    low = (values & ((1 << shift) - 1)).astype(np.int64)
    return ((low[:, None] >> np.arange(shift - 1, -1, -1)) & 1).reshape(-1)


def write_model(model: GridModel) -> bytes:
    """``MODL`` of format version 3 (version 2's, without the context
    parameters of passes that have no latents)."""
    enc = GroupedEncoder()
    head = [model.arch.pack(), struct.pack("<B", BIAS_BITS)]
    w_radius, b_radius = 2 ** (model.bits - 1), 2 ** (BIAS_BITS - 1)
    for wq, ws, bq, bs in model.weights:
        sw, sb = best_scale(wq.ravel(), w_radius), best_scale(bq.ravel(), b_radius)
        head.append(_LAYER.pack(ws, bs, sw, sb))
        enc.encode(wq.ravel(), np.full(wq.size, sw), np.zeros(wq.size, np.int64), w_radius)
        enc.encode(bq.ravel(), np.full(bq.size, sb), np.zeros(bq.size, np.int64), b_radius)
    ctx = np.asarray(model.ctx, dtype=np.int64).reshape(-1, N_CTX_PARAMS)
    if ctx.shape[0] != model.arch.levels * N_PASSES:
        raise ValueError(f"context parameters for {ctx.shape[0]} passes, the format has {model.arch.levels * N_PASSES}")
    stored = stored_passes([g.shape for g in model.latents], N_PASSES).reshape(-1)
    if ctx[~stored].any():
        raise ValueError("context parameters of a pass without latents must be zero (they are not stored)")
    ctx = ctx[stored]
    low = []
    for cls in CTX_CLASSES:
        values = ctx[:, cls].reshape(-1)
        shift, scale = _ctx_split(values)
        head.append(struct.pack("<BB", shift, scale))
        high = values >> shift
        enc.encode(high, np.full(high.size, scale), np.zeros(high.size, np.int64), CTX_RADIUS)
        low.append(_low_bits(values, shift))
    head.append(np.packbits(np.concatenate(low).astype(np.uint8)).tobytes())
    head.append(_words(enc.words()))
    return b"".join(head)


def read_model(buf: bytes, bits: int, channels: int, n_params: int, size: tuple[int, int],
               version: int = FORMAT_VERSION):
    """Parse ``MODL`` of a file of format ``version`` and image ``size =
    (height, width)``; returns (arch, weights, ctx), ctx (levels, passes, 12)
    int64 (zero for the passes a file does not store them for)."""
    arch, pos = GridArch.unpack(buf)
    if arch.channels != channels:
        raise AniFormatError(f"corrupt .ani file: model outputs {arch.channels} channels, header says {channels}")
    if arch.n_weights() != n_params:
        raise AniFormatError(f"corrupt .ani file: header declares {n_params} parameters, model has {arch.n_weights()}")
    passes = passes_of(version)
    n_ctx = arch.levels * passes * N_CTX_PARAMS
    stored = stored_passes(arch.grid_shapes(*size), passes).reshape(-1)
    try:
        (bias_bits,) = struct.unpack_from("<B", buf, pos)
        pos += 1
        if not 2 <= bias_bits <= MAX_BIAS_BITS:
            raise AniFormatError(f"corrupt .ani model section: bias bits {bias_bits}")
        layers = []
        for _ in arch.layer_shapes():
            layers.append(_LAYER.unpack_from(buf, pos))
            pos += _LAYER.size
        if version == 1:
            if pos + 2 * n_ctx > len(buf):
                raise AniFormatError("corrupt .ani model section: context parameters truncated")
            ctx = np.frombuffer(buf, dtype="<i2", count=n_ctx, offset=pos).astype(np.int64)
            pos += 2 * n_ctx
        else:
            splits, low_bits, pos = _read_ctx_head(buf, pos, int(stored.sum()))
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
    if version != 1:
        ctx = np.zeros((stored.size, N_CTX_PARAMS), dtype=np.int64)
        ctx[stored] = _decode_ctx(dec, splits, low_bits, int(stored.sum()))
    return arch, weights, ctx.reshape(arch.levels, passes, N_CTX_PARAMS)


def _read_ctx_head(buf: bytes, pos: int, groups: int):
    """Versions 2 and 3: the classes' ``(shift, scale)`` and the low bits of ``groups``
    sets of context parameters, checked; and the offset after them."""
    splits = [struct.unpack_from("<BB", buf, pos + 2 * k) for k in range(len(CTX_CLASSES))]
    pos += 2 * len(CTX_CLASSES)
    if any(shift > CTX_MAX_SHIFT or scale >= N_SCALES for shift, scale in splits):
        raise AniFormatError(f"corrupt .ani model section: context parameter coding {splits}")
    n_low = sum(groups * len(cls) * shift for cls, (shift, _) in zip(CTX_CLASSES, splits))
    low_bytes = (n_low + 7) // 8
    if pos + low_bytes > len(buf):
        raise AniFormatError("corrupt .ani model section: context parameters truncated")
    low_bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8, count=low_bytes, offset=pos))[:n_low]
    return splits, low_bits, pos + low_bytes


def _decode_ctx(dec: GroupedDecoder, splits, low_bits: np.ndarray, groups: int) -> np.ndarray:
    """Versions 2 and 3: the (groups, 12) context parameters, their high parts read
    from ``dec`` (after the network's integers) and joined with their low bits."""
    ctx = np.zeros((groups, N_CTX_PARAMS), dtype=np.int64)
    at = 0
    for cls, (shift, scale) in zip(CTX_CLASSES, splits):
        n = groups * len(cls)
        high = dec.decode(np.full(n, scale), np.zeros(n, np.int64), CTX_RADIUS)
        low = low_bits[at : at + n * shift].reshape(n, shift).astype(np.int64)
        at += n * shift
        values = (high << shift) + (low << np.arange(shift - 1, -1, -1)).sum(axis=1)
        if values.min() < -(CTX_LIMIT + 1) or values.max() > CTX_LIMIT:
            raise AniFormatError("corrupt .ani model section: context parameter outside the int16 range")
        ctx[:, list(cls)] = values.reshape(-1, len(cls))
    return ctx


def write_latents(model: GridModel) -> bytes:
    """``LATS`` of format version 3."""
    lo, hi = model.latent_range()
    radius = hi - lo + 1
    enc = GroupedEncoder()
    for level, _, rows, cols, c, s, f in pass_models(model.latents, model.ctx, lo, hi, N_PASSES):
        enc.encode(model.latents[level][rows, cols] - c, s, f, radius)
    return _words(enc.words())


def read_latents(buf: bytes, arch: GridArch, ctx: np.ndarray, bits: int, height: int, width: int,
                 version: int = FORMAT_VERSION) -> list[np.ndarray]:
    words, pos = _read_words(buf, 0)
    if pos != len(buf):
        raise AniFormatError("corrupt .ani latent section: trailing bytes")
    lo, hi = latent_range(bits)
    radius = hi - lo + 1
    grids = [np.zeros(shape, dtype=np.int64) for shape in arch.grid_shapes(height, width)]
    dec = GroupedDecoder(words)
    for level, _, rows, cols, c, s, f in pass_models(grids, ctx, lo, hi, passes_of(version)):
        values = dec.decode(s, f, radius) + c
        if values.size and (values.min() < lo or values.max() > hi):
            raise AniFormatError("corrupt .ani latent section: decoded value outside the latent range")
        grids[level][rows, cols] = values
    return grids
