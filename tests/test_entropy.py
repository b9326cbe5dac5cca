"""Entropy coding (:mod:`core.entropy`): round trips, the integer model
tables against the continuous Laplace distribution, and garbage input.

Pure numpy and constriction: no torch here.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from core import entropy
from core.entropy import MU_DIV, N_SCALES, GroupedDecoder, GroupedEncoder, model_table
from core.errors import AniFormatError


def laplace_mass(r: int, s: int, f: int) -> float:
    """Continuous Laplace(mu = f / MU_DIV, b_s) mass of [r - 1/2, r + 1/2], with math.exp."""
    b = entropy.B_MIN * entropy.RHO**s
    mu = f / MU_DIV

    def cdf(x: float) -> float:
        d = x - mu
        return 0.5 * math.exp(d / b) if d < 0 else 1 - 0.5 * math.exp(-d / b)

    return cdf(r + 0.5) - cdf(r - 0.5)


# -- round trip -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_grouped_round_trip_random_models(seed):
    rng = np.random.default_rng(seed)
    calls = []
    enc = GroupedEncoder()
    for radius in (1, 8, 16, 512):
        n = int(rng.integers(1, 400))
        s = rng.integers(0, N_SCALES, n)
        f = rng.integers(0, MU_DIV, n)
        # mostly plausible symbols, some at the edges of the alphabet (very unlikely ones too)
        r = np.clip(np.rint(rng.laplace(0, 1 + radius / 8, n)), -radius, radius).astype(np.int64)
        r[rng.random(n) < 0.05] = radius
        r[rng.random(n) < 0.05] = -radius
        enc.encode(r, s, f, radius)
        calls.append((r, s, f, radius))
    words = enc.words()
    assert words.dtype == np.dtype("<u4")
    dec = GroupedDecoder(np.frombuffer(words.tobytes(), dtype="<u4"))  # through bytes, as in a file
    for r, s, f, radius in calls:
        out = dec.decode(s, f, radius)
        assert out.dtype == np.int64
        assert np.array_equal(out, r)


def test_round_trip_single_model_and_empty_call():
    enc = GroupedEncoder()
    enc.encode(np.array([], np.int64), np.array([], np.int64), np.array([], np.int64), 4)
    sym = np.array([0, 1, -1, 4, -4, 0, 0])
    enc.encode(sym, np.full(7, 10), np.full(7, 2), 4)
    dec = GroupedDecoder(enc.words())
    assert dec.decode(np.array([], np.int64), np.array([], np.int64), 4).size == 0
    assert np.array_equal(dec.decode(np.full(7, 10), np.full(7, 2), 4), sym)


@pytest.mark.parametrize("n", [0, 1, 7, 5000])
def test_models_are_grouped_in_key_order_with_positions_in_their_given_order(n):
    # the grouping is part of the format: its order is that of a stable sort of
    # the 64-bit keys s * MU_DIV + f, whatever sort computes it
    rng = np.random.default_rng(n)
    s = rng.integers(0, N_SCALES, n)
    f = rng.integers(0, MU_DIV, n)
    s[: n // 2] = rng.integers(20, 23, n // 2)  # a few crowded models, as in a file
    key = s * MU_DIV + f
    order = np.argsort(key, kind="stable")
    keys, starts = np.unique(key[order], return_index=True)
    expected = [(k // MU_DIV, k % MU_DIV, order[a:b]) for k, a, b in zip(keys, starts, [*starts[1:], n])]
    got = list(entropy._groups(s, f))
    assert [(si, fi) for si, fi, _ in got] == [(si, fi) for si, fi, _ in expected]
    assert all(np.array_equal(a, b) for (_, _, a), (_, _, b) in zip(got, expected))
    assert sum(at.size for _, _, at in got) == n


def test_encoding_is_deterministic_and_close_to_the_ideal_length():
    rng = np.random.default_rng(7)
    n, radius = 20000, 16
    s = rng.integers(5, 40, n)
    f = rng.integers(0, MU_DIV, n)
    # each symbol drawn from its own model, so the ideal length is what a good coder reaches
    # (symbols far less likely than constriction's 2**-24 floor would cost less than the ideal)
    r = np.empty(n, np.int64)
    for si, fi in {(int(a), int(b)) for a, b in zip(s, f)}:
        sel = (s == si) & (f == fi)
        p = model_table(si, fi, radius)
        r[sel] = rng.choice(np.arange(-radius, radius + 1), size=int(sel.sum()), p=p / p.sum())

    def words():
        enc = GroupedEncoder()
        enc.encode(r, s, f, radius)
        return enc.words()

    a, b = words(), words()
    assert np.array_equal(a, b)
    ideal = sum(
        entropy.cost_bits(r[(s == si) & (f == fi)], si, fi, radius)
        for si in np.unique(s) for fi in range(MU_DIV)
    )
    assert ideal <= a.size * 32 <= ideal * 1.01 + 64, (ideal, a.size * 32)


def test_symbol_outside_the_alphabet_is_refused():
    enc = GroupedEncoder()
    with pytest.raises(ValueError, match="alphabet"):
        enc.encode(np.array([0, 5]), np.array([3, 3]), np.array([0, 0]), 4)


# -- model tables -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("s", [0, 1, 7, 20, 33, 50, 63])
@pytest.mark.parametrize("f", range(MU_DIV))
def test_model_table_is_exact_positive_integers(s, f):
    for radius in (1, 8, 16, 128):
        t = model_table(s, f, radius)
        assert t.dtype == np.float64 and t.shape == (2 * radius + 1,)
        assert np.all(t > 0) and np.all(t == np.floor(t)) and np.all(t < 2.0**53)


@pytest.mark.parametrize("s, f", [(0, 0), (3, 1), (10, 2), (20, 3), (30, 0), (40, 1), (50, 2), (63, 3)])
def test_model_table_matches_a_continuous_laplace(s, f):
    radius = 16
    t = model_table(s, f, radius)
    masses = np.array([laplace_mass(r, s, f) for r in range(-radius, radius + 1)])
    # the table is twice the mass in 32-bit fixed point
    assert np.allclose(t / 2.0**33, masses, atol=1e-6, rtol=0)
    # and, normalised (what the coder uses), it is the Laplace truncated to the alphabet
    p = t / t.sum()
    assert np.max(np.abs(p - masses / masses.sum())) < 1e-3
    if masses.sum() > 0.999:  # little tail mass beyond the alphabet: close to the untruncated Laplace
        assert np.max(np.abs(p - masses)) < 1e-3


def test_model_table_is_centred_on_the_mean_fraction():
    radius = 8
    for s in (5, 25, 45):
        z = model_table(s, 0, radius)
        assert np.array_equal(z, z[::-1])  # f = 0: symmetric around 0
        half = model_table(s, MU_DIV // 2, radius)  # mean 1/2: symmetric around 1/2
        assert np.array_equal(half[radius - 4 : radius + 1], half[radius + 1 : radius + 6][::-1])
        assert np.argmax(model_table(s, 1, radius)) == radius  # mean 1/4 still rounds to 0


def test_model_index_out_of_range_is_refused():
    for s, f in [(-1, 0), (N_SCALES, 0), (0, MU_DIV), (0, -1)]:
        with pytest.raises(ValueError):
            model_table(s, f, 4)


def test_fixed_point_constants_follow_their_formula():
    for s, q in enumerate(entropy.Q_FIXED):
        exact = math.exp(-1 / (MU_DIV * entropy.B_MIN * entropy.RHO**s)) * 2**32
        assert abs(q - exact) <= 1, (s, q, exact)
    assert len(entropy.Q_FIXED) == N_SCALES


def test_best_scale_fits_the_spread():
    rng = np.random.default_rng(3)
    radius = 64
    narrow = np.clip(np.rint(rng.laplace(0, 0.5, 5000)), -radius, radius).astype(np.int64)
    wide = np.clip(np.rint(rng.laplace(0, 8.0, 5000)), -radius, radius).astype(np.int64)
    s_narrow, s_wide = entropy.best_scale(narrow, radius), entropy.best_scale(wide, radius)
    assert s_narrow < s_wide
    assert entropy.cost_bits(wide, s_wide, 0, radius) <= entropy.cost_bits(wide, s_narrow, 0, radius)
    b_wide = entropy.B_MIN * entropy.RHO**s_wide
    assert 8.0 / 1.5 < b_wide < 8.0 * 1.5


# -- garbage --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(20))
def test_decoding_garbage_raises_format_error_or_returns_values(seed):
    rng = np.random.default_rng(seed)
    words = rng.integers(0, 2**32, int(rng.integers(0, 12)), dtype=np.uint64).astype(np.uint32)
    radius = int(rng.choice([1, 8, 16, 512]))
    dec = GroupedDecoder(words)
    for _ in range(5):
        n = int(rng.integers(1, 300))
        s, f = rng.integers(0, N_SCALES, n), rng.integers(0, MU_DIV, n)
        try:
            out = dec.decode(s, f, radius)
        except AniFormatError:
            return
        assert out.shape == (n,) and out.dtype == np.int64
        assert out.min() >= -radius and out.max() <= radius


class _Raising:
    """Stands in for constriction's decoder: raises ``exc`` on every decode."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def decode(self, model, n):
        raise self.exc


class _FakePanic(BaseException):
    """Like pyo3's PanicException: a BaseException, not an Exception."""


@pytest.mark.parametrize("exc", [_FakePanic("panicked at 'invalid data'"), ValueError("invalid"), AssertionError()])
def test_a_coder_failure_or_panic_becomes_a_format_error(exc):
    dec = GroupedDecoder(np.zeros(2, np.uint32))
    dec._dec = _Raising(exc)
    with pytest.raises(AniFormatError, match="entropy decoding failed"):
        dec.decode(np.zeros(3, np.int64), np.zeros(3, np.int64), 4)


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(3), MemoryError()])
def test_an_interrupt_exit_or_memory_error_passes_through_the_decoder(exc):
    dec = GroupedDecoder(np.zeros(2, np.uint32))
    dec._dec = _Raising(exc)
    with pytest.raises(type(exc)):
        dec.decode(np.zeros(3, np.int64), np.zeros(3, np.int64), 4)
