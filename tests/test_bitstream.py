"""The grid family's sections (core/grid/bitstream.py): the context parameters
of format versions 2 and 3 round-trip whatever their values, hostile class
codes are refused, version 3 stores no parameters for passes without latents,
and version 1 sections still read."""
import struct

import numpy as np
import pytest

from core.errors import AniFormatError
from core.grid.arch import GridArch
from core.grid.bitstream import CTX_CLASSES, GridModel, read_latents, read_model, write_latents, write_model
from core.grid.context import N_CTX_PARAMS, N_PASSES, SUBLATTICE_MIN, stored_passes

ARCH = GridArch(3, (8,), 3)
SIZE = (24, 20)  # height, width: every level below SUBLATTICE_MIN
LARGE = (136, 124)  # level 0 at or above it: all five passes
assert LARGE[0] * LARGE[1] >= SUBLATTICE_MIN > SIZE[0] * SIZE[1]


def _model(ctx, seed=0, size=SIZE):
    gen = np.random.default_rng(seed)
    weights = [(gen.integers(-8, 8, (o, i)), 0.01, gen.integers(-512, 512, o), 0.001) for o, i in ARCH.layer_shapes()]
    latents = [gen.integers(-2, 3, s) for s in ARCH.grid_shapes(*size)]
    return GridModel(ARCH, 4, weights, np.asarray(ctx, dtype=np.int16), latents)


def _stored(ctx, size=SIZE):
    """``ctx`` with the sets a file does not store zeroed."""
    return np.where(stored_passes(ARCH.grid_shapes(*size), N_PASSES)[..., None], ctx, 0)


def _roundtrip(model, size=SIZE):
    modl = write_model(model)
    arch, weights, ctx = read_model(modl, model.bits, ARCH.channels, ARCH.n_weights(), size)
    return modl, arch, weights, ctx


@pytest.mark.parametrize("size", [SIZE, LARGE])
@pytest.mark.parametrize("kind", ["zeros", "small", "int16 extremes", "random int16"])
def test_context_parameters_round_trip(kind, size):
    shape = (ARCH.levels, N_PASSES, N_CTX_PARAMS)
    gen = np.random.default_rng(1)
    ctx = _stored({
        "zeros": np.zeros(shape, int),
        "small": gen.integers(-200, 200, shape),
        "int16 extremes": gen.choice([-32768, -32767, -1, 0, 1, 32766, 32767], shape),
        "random int16": gen.integers(-32768, 32768, shape),
    }[kind], size)
    model = _model(ctx, size=size)
    _, arch, weights, got = _roundtrip(model, size)
    assert arch == ARCH and np.array_equal(got, ctx)
    for (a, _, b, _), (c, _, d, _) in zip(weights, model.weights):
        assert np.array_equal(a, c) and np.array_equal(b, d)
    # and the latents decode with them
    lats = write_latents(model)
    grids = read_latents(lats, ARCH, got, 4, *size)
    assert all(np.array_equal(g, y) for g, y in zip(grids, model.latents))


def test_passes_without_latents_store_no_parameters():
    stored = stored_passes(ARCH.grid_shapes(*LARGE), N_PASSES)
    # level 0 (136x124) has all five passes; levels 1 and 2 code their even lattice in one
    assert stored[0].all() and stored[1:].tolist() == [[True, False, False, True, True]] * 2
    gen = np.random.default_rng(3)
    ctx = _stored(gen.integers(-200, 200, (ARCH.levels, N_PASSES, N_CTX_PARAMS)), LARGE)
    large = write_model(_model(ctx, size=LARGE))
    # a set more costs its parameters: the file of the small size stores 3 per level, not 5
    assert len(write_model(_model(_stored(ctx, SIZE), size=SIZE))) < len(large)
    bad = ctx.copy()
    bad[1, 1, 0] = 1  # a parameter of a pass without latents would be lost
    with pytest.raises(ValueError, match="not stored"):
        write_model(_model(bad, size=LARGE))


def test_coded_parameters_take_fewer_bytes_than_raw_ones_when_small():
    gen = np.random.default_rng(2)
    ctx = gen.integers(-150, 150, (ARCH.levels, N_PASSES, N_CTX_PARAMS))
    ctx[..., -1] = gen.integers(2800, 4600, ctx.shape[:2])
    ctx = _stored(ctx)
    modl, *_ = _roundtrip(_model(ctx))
    raw = _model(np.zeros_like(ctx))
    no_ctx, *_ = _roundtrip(raw)
    n_stored = stored_passes(ARCH.grid_shapes(*SIZE), N_PASSES).sum() * N_CTX_PARAMS
    assert len(modl) - len(no_ctx) < 0.7 * 2 * n_stored


def _codes_at(modl):
    """Offset of the first class's shift byte: after the architecture, bias bits and layer records."""
    return len(ARCH.pack()) + 1 + 10 * len(ARCH.layer_shapes())


@pytest.mark.parametrize("field,value", [("shift", 16), ("shift", 255), ("scale", 64), ("scale", 255)])
def test_hostile_class_codes_are_refused(field, value):
    modl = bytearray(write_model(_model(np.zeros((ARCH.levels, N_PASSES, N_CTX_PARAMS), int))))
    at = _codes_at(modl) + (0 if field == "shift" else 1)
    modl[at] = value
    with pytest.raises(AniFormatError, match="context parameter coding"):
        read_model(bytes(modl), 4, ARCH.channels, ARCH.n_weights(), SIZE)


def test_truncated_low_bits_are_refused():
    ctx = _stored(np.full((ARCH.levels, N_PASSES, N_CTX_PARAMS), 4000))
    modl = write_model(_model(ctx))
    start = _codes_at(modl)
    shifts = modl[start : start + 2 * len(CTX_CLASSES) : 2]
    assert max(shifts) > 0  # there are low bits to cut
    cut = start + 2 * len(CTX_CLASSES) + 1
    with pytest.raises(AniFormatError):
        read_model(modl[:cut], 4, ARCH.channels, ARCH.n_weights(), SIZE)


def test_version_1_sections_read_with_two_passes():
    ctx = np.arange(ARCH.levels * 2 * N_CTX_PARAMS).reshape(ARCH.levels, 2, N_CTX_PARAMS) - 30
    model = _model(np.zeros((ARCH.levels, N_PASSES, N_CTX_PARAMS), int))
    v3 = write_model(model)
    # a version 1 MODL: the same head, then the raw int16 parameters and the network's words
    head = _codes_at(v3)
    # the v3 word stream also holds the parameters' high parts: the network's integers coded alone
    from core.entropy import GroupedEncoder, best_scale
    enc = GroupedEncoder()
    for wq, _, bq, _ in model.weights:
        for v, r in ((wq.ravel(), 8), (bq.ravel(), 512)):
            enc.encode(v, np.full(v.size, best_scale(v, r)), np.zeros(v.size, np.int64), r)
    w = enc.words()
    v1 = v3[:head] + ctx.astype("<i2").tobytes() + struct.pack("<I", len(w)) + w.tobytes()
    arch, weights, got = read_model(v1, 4, ARCH.channels, ARCH.n_weights(), SIZE, version=1)
    assert got.shape == (ARCH.levels, 2, N_CTX_PARAMS) and np.array_equal(got, ctx)


def test_the_robustness_benchmark_s_flat_file_decodes_to_mid_grey():
    from benchmarks.robustness import flat_file
    import core

    out = core.decode(flat_file(40))
    assert out.shape == (40, 40, 3) and (out == 128).all()


def test_file_anatomy_accounts_for_the_latent_section():
    from pathlib import Path

    from benchmarks.file_anatomy import anatomy, report

    data = (Path(__file__).parent / "data" / "golden.ani").read_bytes()
    a = anatomy(data)
    # version 3, both levels below SUBLATTICE_MIN: passes 1 and 2 have no latents (left out)
    assert [(p["level"], p["pass"]) for p in a["passes"]] == [(1, 0), (1, 3), (1, 4), (0, 0), (0, 3), (0, 4)]
    bits = sum(p["bits"] for p in a["passes"])
    # the section holds the words (4 bytes each) and their count: the ideal length plus the coder's last words
    assert bits / 8 <= a["sections"]["LATS"] <= bits / 8 + 16
    assert "| 0 | 4 |" in report("golden.ani", a)
