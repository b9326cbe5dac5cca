"""Encode options: defaults, validation, and the documented errors.

Every invalid value raises :class:`core.AniOptionError` (a ``ValueError``)
whose message names the option, the allowed values and the value given.
No fit runs here except where an array is refused (refused before fitting).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import core
from core import options as opt_mod
from core.errors import AniError, AniOptionError

# (option, given value, words the allowed part of the message must contain)
INVALID = [
    ("bits", 1, ["2..8"]),
    ("bits", 9, ["2..8"]),
    ("bits", "x", ["2..8"]),
    ("bits", True, ["2..8"]),
    ("bits", 4.5, ["2..8"]),
    ("bits", [4], ["2..8"]),
    ("quality", -1, ["0..100"]),
    ("quality", 101, ["0..100"]),
    ("quality", "high", ["0..100"]),
    ("quality", float("nan"), ["0..100"]),
    ("quality", True, ["0..100"]),
    ("effort", 0, ["1..9"]),
    ("effort", 10, ["1..9"]),
    ("effort", 2.5, ["1..9"]),
    ("model", "nope", ["grid"]),
    ("rounding", "nope", ["noise", "ste"]),
    ("subnet", "nope", ["full"]),
    ("subnet", (2, 16), ["full"]),
    ("device", "tpu", ["auto", "cpu", "cuda"]),
    ("seed", -1, ["0.."]),
    ("seed", 1.5, ["0.."]),
    ("seed", "abc", ["0.."]),
    ("ssl_a", 0, ["0.01..100"]),
    ("ssl_a", 101, ["0.01..100"]),
    ("ssl_a", "2.3", ["0.01..100"]),
    ("ssl_a", float("nan"), ["0.01..100"]),
    ("ssl_a", True, ["0.01..100"]),
    ("tau_max", 0.0, ["0.01..1"]),
    ("tau_max", 1.5, ["0.01..1"]),
    ("tau_max", [0.5], ["0.01..1"]),
    ("tau_decay", -0.1, ["0..100"]),
    ("tau_decay", float("inf"), ["0..100"]),
    ("rounding", "SSL", ["ssl", "linear3"]),
]


def _ids(case):
    return f"{case[0]}={case[1]!r}"


def _check_message(exc, name, given, allowed):
    msg = str(exc)
    assert name in msg, msg
    assert repr(given) in msg, msg
    assert "allowed" in msg, msg
    for word in allowed:
        assert word in msg, msg


@pytest.mark.parametrize("name, given, allowed", INVALID, ids=[_ids(c) for c in INVALID])
def test_invalid_option_names_option_allowed_and_given(name, given, allowed):
    with pytest.raises(AniOptionError) as info:
        core.EncodeOptions(**{name: given})
    assert isinstance(info.value, ValueError) and isinstance(info.value, AniError)
    _check_message(info.value, name, given, allowed)


@pytest.mark.parametrize("name, given, allowed", INVALID, ids=[_ids(c) for c in INVALID])
def test_invalid_option_through_keywords_and_encode(name, given, allowed):
    with pytest.raises(AniOptionError) as info:
        core.EncodeOptions.from_kwargs({name: given})
    _check_message(info.value, name, given, allowed)
    # core.encode validates options before it looks at (or fits) the image
    with pytest.raises(AniOptionError) as info:
        core.encode(np.zeros((4, 4, 3), np.uint8), **{name: given})
    _check_message(info.value, name, given, allowed)


@pytest.mark.parametrize("unknown", ["colour", "Bits", "quality_"])
def test_unknown_option_name_is_refused_with_the_allowed_names(unknown):
    with pytest.raises(AniOptionError) as info:
        core.EncodeOptions.from_kwargs({unknown: 3})
    msg = str(info.value)
    assert unknown in msg and "allowed" in msg
    for field in dataclasses.fields(core.EncodeOptions):
        assert field.name in msg
    with pytest.raises(AniOptionError, match=unknown):
        core.encode(np.zeros((4, 4, 3), np.uint8), **{unknown: 3})


def test_defaults_are_stated_once_in_options():
    o = core.EncodeOptions()
    assert (o.model, o.bits, o.quality, o.rounding, o.subnet, o.effort, o.device, o.seed) == (
        opt_mod.DEFAULT_MODEL, opt_mod.DEFAULT_BITS, opt_mod.DEFAULT_QUALITY, opt_mod.DEFAULT_ROUNDING,
        opt_mod.DEFAULT_SUBNET, opt_mod.DEFAULT_EFFORT, opt_mod.DEFAULT_DEVICE, opt_mod.DEFAULT_SEED,
    )
    assert (o.ssl_a, o.tau_max, o.tau_decay) == (opt_mod.DEFAULT_SSL_A, opt_mod.DEFAULT_TAU_MAX, None)
    assert o.resolved_tau_decay() == opt_mod.default_tau_decay(o.quality)
    assert o.ssl_a == 2.3  # the SGA+ paper's value
    assert (o.model, o.bits, o.device) == ("grid", 4, "auto")


def test_options_are_frozen_and_normalised():
    o = core.EncodeOptions(bits="5", quality=80, effort=2.0, seed=7)
    assert (o.bits, o.quality, o.effort, o.seed) == (5, 80.0, 2, 7)
    assert isinstance(o.bits, int) and isinstance(o.quality, float) and isinstance(o.effort, int)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.bits = 3  # type: ignore[misc]
    assert o == core.EncodeOptions(bits=5, quality=80.0, effort=2, seed=7)


@pytest.mark.parametrize("name, value", [("bits", 2), ("bits", 8), ("quality", 0), ("quality", 100),
                                         ("quality", 37.5), ("effort", 1), ("effort", 9), ("seed", 0),
                                         ("seed", 2**40), ("rounding", "ste"), ("rounding", "noise"),
                                         ("device", "cpu"), ("device", "cuda"), ("subnet", "full"),
                                         ("rounding", "sga"), ("rounding", "ssl3"), ("rounding", "softround"),
                                         ("ssl_a", 0.01), ("ssl_a", 100), ("tau_max", 0.01), ("tau_max", 1),
                                         ("tau_decay", 0), ("tau_decay", 100), ("ssl_a", np.float32(2.5))])
def test_boundary_values_are_accepted(name, value):
    assert getattr(core.EncodeOptions(**{name: value}), name) == value


def test_none_means_default_in_from_kwargs():
    o = core.EncodeOptions.from_kwargs({"bits": None, "quality": 30}, seed=None, effort=3)
    assert (o.bits, o.quality, o.seed, o.effort) == (opt_mod.DEFAULT_BITS, 30.0, opt_mod.DEFAULT_SEED, 3)


@pytest.mark.parametrize("seed", [2**53 + 1, 2**63 - 1])
def test_large_seeds_are_kept_exactly(seed):
    assert core.EncodeOptions(seed=seed).seed == seed


# -- arrays ---------------------------------------------------------------------------------------------

BAD_ARRAYS = [
    ("float dtype", np.zeros((4, 4, 3), np.float32), ["float32", "uint8"]),
    ("float64 dtype", np.full((4, 4), 0.5), ["float64", "uint8"]),
    ("uint16 dtype", np.zeros((4, 4, 3), np.uint16), ["uint16", "uint8"]),
    ("bool dtype", np.zeros((4, 4), bool), ["bool", "uint8"]),
    ("5 channels", np.zeros((4, 4, 5), np.uint8), ["(4, 4, 5)", "(H, W, 4)"]),
    ("0 channels", np.zeros((4, 4, 0), np.uint8), ["(4, 4, 0)", "(H, W)"]),
    ("empty", np.zeros((0, 4, 3), np.uint8), ["(0, 4, 3)", "empty"]),
    ("empty 2-D", np.zeros((4, 0), np.uint8), ["(4, 0)", "empty"]),
    ("4-D", np.zeros((2, 4, 4, 3), np.uint8), ["(2, 4, 4, 3)", "(H, W)"]),
    ("1-D", np.zeros(16, np.uint8), ["(16,)", "(H, W)"]),
]


@pytest.mark.parametrize("what, array, words", BAD_ARRAYS, ids=[c[0] for c in BAD_ARRAYS])
def test_bad_arrays_are_refused(what, array, words):
    with pytest.raises(AniOptionError) as info:
        core.encode(array, effort=1)
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    assert "array" in msg
    for word in words:
        assert word in msg, msg


def test_oversized_array_is_refused_before_fitting():
    big = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), shape=(1, 2**17), strides=(0, 0))
    with pytest.raises(ValueError, match="65536"):
        core.encode(big, effort=1)


def test_unknown_metadata_key_is_refused():
    with pytest.raises(AniOptionError, match="gps"):
        core.encode(np.zeros((4, 4, 3), np.uint8), effort=1, metadata={"gps": b"x"})


def test_real_options_are_stored_as_floats():
    o = core.EncodeOptions(ssl_a=2, tau_max=np.float64(0.25), tau_decay=3)
    assert (o.ssl_a, o.tau_max, o.tau_decay) == (2.0, 0.25, 3.0)
    assert all(type(v) is float for v in (o.ssl_a, o.tau_max, o.tau_decay))


def test_the_default_tau_decay_falls_from_low_to_high_qualities():
    lo, hi = opt_mod.TAU_DECAY_KNEE
    d = opt_mod.default_tau_decay
    assert d(0) == d(lo) == opt_mod.TAU_DECAY_LOW == 1.0
    assert d(hi) == d(100) == opt_mod.TAU_DECAY_HIGH == 0.5
    assert d((lo + hi) / 2) == pytest.approx(0.75)
    values = [d(q) for q in range(101)]
    assert values == sorted(values, reverse=True)
    assert all(opt_mod.MIN_TAU_DECAY <= v <= opt_mod.MAX_TAU_DECAY for v in values)


def test_the_decay_follows_the_quality_unless_set():
    o = core.EncodeOptions(quality=10)
    assert o.tau_decay is None and o.resolved_tau_decay() == 1.0
    assert dataclasses.replace(o, quality=90).resolved_tau_decay() == 0.5  # not fixed at the first quality
    assert core.EncodeOptions(quality=90, tau_decay=2).resolved_tau_decay() == 2.0
    assert core.EncodeOptions(quality=10, tau_decay=0).resolved_tau_decay() == 0.0
    assert core.EncodeOptions.from_kwargs(quality=90, tau_decay=None).resolved_tau_decay() == 0.5
