"""The context fit of frozen latents (:mod:`core.grid.context_fit`): it finds
the structure in the latents, never makes a group's code longer, and reports
the bits of the parameters as they will be stored."""
import numpy as np
import pytest
import torch

from core.grid.arch import GridArch, default_levels
from core.grid.context import CTX_FRAC, N_CTX_PARAMS, N_FEATURES, N_PASSES
from core.grid.context_fit import CTX_FIT_STEPS, fit_context, quantize_ctx
from core.grid.rate import ContextTable, flat_bits, group_bits

LO, HI = -8, 7


def _setup(seed=0):
    """Latents whose finest level is smooth (neighbours predict it) and sparse
    elsewhere, and the fit's start parameters (wide scale, no mean weights)."""
    arch = GridArch(default_levels(48, 64), (16, 16), 3)
    shapes = arch.grid_shapes(48, 64)
    gen = np.random.default_rng(seed)
    grids = [np.where(gen.random(s) < 0.1, gen.integers(-3, 4, size=s), 0) for s in shapes]
    ramp = np.add.outer(np.arange(48) // 8, np.arange(64) // 16) - 4
    grids[0] = np.clip(ramp + gen.integers(-1, 2, size=shapes[0]), LO, HI)
    flat = torch.cat([torch.from_numpy(g.ravel()).float() for g in grids])
    gain = torch.ones(N_CTX_PARAMS)
    gain[N_FEATURES + 1 :] = 16.0
    start = torch.zeros((arch.levels, N_PASSES, N_CTX_PARAMS))
    start[:, :, -1] = 24.0 / 16.0
    return flat, ContextTable(shapes), gain, start


def _stored(param, gain):
    return quantize_ctx(param * gain) / CTX_FRAC


def test_fit_finds_the_structure_and_reports_the_stored_bits():
    flat, table, gain, start = _setup()
    before = float(flat_bits(flat, _stored(start, gain), table, LO, HI))
    best, bits = fit_context(flat, start, gain, table, LO, HI)
    assert best.shape == start.shape and not best.requires_grad
    after = float(flat_bits(flat, _stored(best, gain), table, LO, HI))
    assert float(bits) == pytest.approx(after, rel=1e-6)  # the code length of the parameters as written (float32 sums in another order)
    assert after < 0.8 * before, (before, after)
    # and the default 60 steps get within 1 % of a fit ten times as long
    _, long = fit_context(flat, start, gain, table, LO, HI, steps=600)
    assert after <= 1.01 * float(long), (after, float(long))


def test_no_group_gets_longer():
    flat, table, gain, start = _setup(seed=1)
    # a start already fitted: a fixed-rate optimiser alone would wander off it
    start, _ = fit_context(flat, start, gain, table, LO, HI, steps=40)
    before = group_bits(flat, _stored(start, gain), table, LO, HI)
    best, _ = fit_context(flat, start, gain, table, LO, HI, steps=30, lr=0.5)
    after = group_bits(flat, _stored(best, gain), table, LO, HI)
    assert torch.all(after <= before), (before, after)


def test_zero_steps_returns_the_start():
    flat, table, gain, start = _setup()
    best, bits = fit_context(flat, start, gain, table, LO, HI, steps=0)
    assert torch.equal(best, start)
    assert float(bits) == pytest.approx(float(flat_bits(flat, _stored(start, gain), table, LO, HI)), rel=1e-6)


def _fit_calls(monkeypatch, image, every):
    """(step count of each context fit, how many the loop had run) in one grid fit at effort 1."""
    from core.grid import fit as F
    from core.options import EncodeOptions

    calls, steps_run = [], []
    real = F.fit_context

    def spy(*args, **kwargs):
        calls.append((kwargs.get("steps"), len(steps_run)))
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "fit_context", spy)
    monkeypatch.setattr(F, "CTX_REFIT_EVERY", every)
    # the loop's own context fits only: the refinement after the last step refits once more
    monkeypatch.setattr(F, "RDO_LEVELS", 0)
    fitted = F.fit_grid(image, EncodeOptions(quality=50, effort=1), progress=lambda done, total: steps_run.append(done))
    return calls, fitted.stats["steps"]


def test_context_is_refitted_during_the_fit_and_fitted_at_the_freeze(monkeypatch):
    from core.grid import fit as F
    from plugin_support import kodak_crop

    calls, steps = _fit_calls(monkeypatch, kodak_crop(), every=10)
    freeze = next(s for s in range(steps) if s / steps >= F.FREEZE)
    refits = [at for n, at in calls if n == F.CTX_REFIT_STEPS]
    # every 10 steps until the freeze (not at step 0: the latents are all zero there)
    assert refits == list(range(10, freeze, 10))
    assert calls[-1] == (CTX_FIT_STEPS, freeze)  # then once with the full step count, when the latents freeze
    assert len(calls) == len(refits) + 1


def test_refits_start_when_the_finest_level_joins(monkeypatch):
    from core.grid import fit as F
    from plugin_support import kodak_crop

    image = kodak_crop("kodim05", (0, 0, 256, 256))  # big enough for the half-resolution phase
    calls, steps = _fit_calls(monkeypatch, image, every=5)
    _, coarse = F.schedule(F.EFFORT_STEPS[1], 50, big=True)
    assert steps == F.schedule(F.EFFORT_STEPS[1], 50, big=True)[0] and coarse > 0
    refits = [at for n, at in calls if n == F.CTX_REFIT_STEPS]
    assert refits[0] == coarse and all(b - a == 5 for a, b in zip(refits, refits[1:]))


def test_no_refits_when_switched_off(monkeypatch):
    from plugin_support import kodak_crop

    calls, _ = _fit_calls(monkeypatch, kodak_crop(), every=0)
    assert [n for n, _ in calls] == [CTX_FIT_STEPS]  # the fit at the freeze only
