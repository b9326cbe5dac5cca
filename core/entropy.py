"""Entropy coding of integer symbols with discretised Laplace models.

Bit-exactness: the probability of every symbol is computed in integer
arithmetic from the constants below and the integers stored in the file, so
the encoder and any decoder on any machine hand *identical* float64 tables to
constriction's ``Categorical(perfect=False)`` and its range coder.

A model is identified by ``(s, f)``: ``s`` in ``0..N_SCALES-1`` picks the
Laplace scale ``b_s = B_MIN * RHO**s`` and ``f`` in ``0..MU_DIV-1`` the
fractional part ``f / MU_DIV`` of the mean. Symbols are residuals
``r = y - c`` in ``[-R, R]``, ``c = floor(mu)`` with mu on the 1/MU_DIV grid; the mass of ``r`` is the Laplace mass of
``[r - 1/2, r + 1/2]`` relative to ``mu``, written with powers of
``q_s = exp(-1 / (MU_DIV * b_s))`` (stored below as 32-bit fixed point,
``Q_FIXED``) and evaluated as ``q_s**t`` by repeated fixed-point
multiplication with rounding: ``Q(t+1) = (Q(t) * q_s + 2**31) >> 32``.

No function here uses torch.
"""
from __future__ import annotations

from functools import lru_cache

import constriction
import numpy as np

from .errors import AniFormatError

N_SCALES = 64
MU_DIV = 4
#: only used by the fitting side to turn a continuous scale index into b
B_MIN = 0.05
RHO = 1.1451893511582514
ONE = 1 << 32

#: round(exp(-1 / (MU_DIV * B_MIN * RHO**s)) * 2**32), s = 0..63. Part of the
#: file format: never change these values within a format version.
Q_FIXED = (
    28939262, 54549526, 94883564, 153855354, 234649678, 339224527,
    468016199, 619888742, 792305209, 981655285, 1183658316, 1393767923,
    1607524526, 1820825949, 2030107258, 2232435995, 2425537654, 2607769478,
    2778060279, 2935831452, 3080910929, 3213448434, 3333837348, 3442646119,
    3540560385, 3628335788, 3706760735, 3776627934, 3838713422, 3893761763,
    3942476209, 3985512736, 4023477056, 4056923833, 4086357480, 4112234071,
    4134963957, 4154914833, 4172415011, 4187756756, 4201199573, 4212973371,
    4223281447, 4232303270, 4240197050, 4247102081, 4253140875, 4258421080,
    4263037212, 4267072194, 4270598737, 4273680561, 4276373484, 4278726381,
    4280782031, 4282577871, 4284146646, 4285516999, 4286713974, 4287759468,
    4288672620, 4289470161, 4290166709, 4290775039,
)


@lru_cache(maxsize=None)
def _powers(max_t: int) -> np.ndarray:
    """``Q[s, t] = q_s**t`` in 32-bit fixed point for ``t = 0..max_t``."""
    q = np.array(Q_FIXED, dtype=np.uint64)
    out = np.empty((N_SCALES, max_t + 1), dtype=np.uint64)
    out[:, 0] = ONE
    half = np.uint64(1 << 31)
    shift = np.uint64(32)
    for t in range(max_t):
        out[:, t + 1] = (out[:, t] * q + half) >> shift
    return out


@lru_cache(maxsize=4096)
def model_table(s: int, f: int, radius: int) -> np.ndarray:
    """Unnormalised probabilities (exact integers as float64) of residuals
    ``-radius..radius`` under model ``(s, f)``."""
    if not (0 <= s < N_SCALES and 0 <= f < MU_DIV):
        raise ValueError(f"model index ({s}, {f}) out of range")
    pw = _powers(MU_DIV * (radius + 1) + MU_DIV)[s].astype(np.int64)
    r = np.arange(-radius, radius + 1, dtype=np.int64)
    t1 = MU_DIV * r - MU_DIV // 2 - f  # interval start relative to mu, in 1/MU_DIV units
    t2 = t1 + MU_DIV
    mass2 = np.empty(r.shape, dtype=np.int64)  # twice the mass, fixed point
    right = t1 >= 0
    left = t2 <= 0
    mid = ~(right | left)
    mass2[right] = pw[t1[right]] - pw[t2[right]]
    mass2[left] = pw[-t2[left]] - pw[-t1[left]]
    mass2[mid] = 2 * ONE - pw[-t1[mid]] - pw[t2[mid]]
    return np.maximum(mass2, 1).astype(np.float64)


@lru_cache(maxsize=4096)
def _categorical(s: int, f: int, radius: int):
    return constriction.stream.model.Categorical(model_table(s, f, radius), perfect=False)


def cost_bits(symbols: np.ndarray, s: int, f: int, radius: int) -> float:
    """Ideal code length in bits of residual ``symbols`` under model ``(s, f)``."""
    p = model_table(s, f, radius)
    p = p / p.sum()
    return float(-np.log2(p[np.asarray(symbols) + radius]).sum())


def best_scale(symbols: np.ndarray, radius: int) -> int:
    """The scale index with the smallest code length for zero-mean ``symbols``."""
    counts = np.bincount(np.asarray(symbols, dtype=np.int64) + radius, minlength=2 * radius + 1)
    best, best_bits = 0, np.inf
    for s in range(N_SCALES):
        p = model_table(s, 0, radius)
        bits = float(-(counts * np.log2(p / p.sum())).sum())
        if bits < best_bits:
            best, best_bits = s, bits
    return best


def _groups(s: np.ndarray, f: np.ndarray):
    """Yield ``(s, f, positions)`` per model, in increasing ``s * MU_DIV + f``;
    positions within a group keep their given order. Encoder and decoder share
    this order, which is part of the format."""
    key = np.asarray(s, dtype=np.int64) * MU_DIV + np.asarray(f, dtype=np.int64)
    order = np.argsort(key, kind="stable")
    keys, starts = np.unique(key[order], return_index=True)
    bounds = list(starts[1:]) + [len(order)]
    for k, a, b in zip(keys.tolist(), starts.tolist(), bounds):
        yield k // MU_DIV, k % MU_DIV, order[a:b]


class GroupedEncoder:
    """Encodes residuals grouped by model, in a deterministic order."""

    def __init__(self) -> None:
        self._enc = constriction.stream.queue.RangeEncoder()

    def encode(self, residuals: np.ndarray, s: np.ndarray, f: np.ndarray, radius: int) -> None:
        """Encode ``residuals`` (int, in ``[-radius, radius]``), each with its model
        ``(s[i], f[i])``, in the order of :func:`_groups`."""
        residuals = np.asarray(residuals, dtype=np.int64)
        if residuals.size and (residuals.min() < -radius or residuals.max() > radius):
            raise ValueError("residual outside the coder's alphabet")
        for si, fi, at in _groups(s, f):
            self._enc.encode((residuals[at] + radius).astype(np.int32), _categorical(si, fi, radius))

    def words(self) -> np.ndarray:
        return self._enc.get_compressed().astype("<u4")


#: Exceptions that are never a verdict on the data: an interrupt, an exit, or
#: memory exhausted elsewhere pass through the decoder unchanged.
_PASS_THROUGH = (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError)


class GroupedDecoder:
    """Mirror of :class:`GroupedEncoder`."""

    def __init__(self, words: np.ndarray) -> None:
        self._dec = constriction.stream.queue.RangeDecoder(np.asarray(words, dtype=np.uint32))

    def decode(self, s: np.ndarray, f: np.ndarray, radius: int) -> np.ndarray:
        out = np.empty(np.shape(s), dtype=np.int64)
        for si, fi, at in _groups(s, f):
            try:
                sym = self._dec.decode(_categorical(si, fi, radius), at.size)
            except _PASS_THROUGH:
                raise
            except BaseException as exc:  # constriction raises, or panics (a BaseException), on invalid data
                raise AniFormatError(f"corrupt .ani payload: entropy decoding failed ({exc})") from None
            out[at] = np.asarray(sym, dtype=np.int64) - radius
        return out
