"""Rounding methods for latents (core.rounding, core.sga): probabilities,
gradients, the temperature schedule, the sampler, and that every method ends
in hard integer rounding in a real encode.

References: SGA (Yang et al. 2020) and SGA+ (Perugachi-Diaz et al. 2024,
``shared/papers/003``).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import core  # noqa: E402
from core import sga  # noqa: E402
from core.rounding import RoundingStep, noise_then_ste, soft_round, softround_noise, ste, temperature  # noqa: E402

SGA_PLUS = {"linear": sga.linear_logits, "cosine": sga.cosine_logits, "ssl": sga.ssl_logits}
ALL_LOGITS = {"sga": sga.atanh_logits, **SGA_PLUS}
# (name, logit function, classes) of every built-in SGA-family method
SGA_METHODS = [("sga", sga.atanh_logits, 2)] + [(n, f, 2) for n, f in SGA_PLUS.items()] + [
    (n + "3", f, 3) for n, f in SGA_PLUS.items()
]
TAUS = (1.0, 0.5, 0.2, 0.05)


def _values() -> torch.Tensor:
    """Latents across a few integers: exact integers, half-integers, both sides of each."""
    grid = torch.linspace(-2.5, 2.5, 501, dtype=torch.float64)
    return torch.cat([grid, torch.tensor([-1e-7, 1e-7, 0.5 - 1e-7, 0.5 + 1e-7, 3.0, -3.0], dtype=torch.float64)])


def _dense(y: torch.Tensor, c: torch.Tensor, p: torch.Tensor, lo: int = -6, hi: int = 6) -> torch.Tensor:
    """Probabilities as a (len(y), hi - lo + 1) table over the integers lo..hi."""
    out = torch.zeros(len(y), hi - lo + 1, dtype=p.dtype)
    out.scatter_add_(1, (c.long() - lo), p)
    return out


# -- probabilities ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, log_f, classes", SGA_METHODS, ids=[m[0] for m in SGA_METHODS])
@pytest.mark.parametrize("tau", TAUS)
def test_probabilities_sum_to_one(name, log_f, classes, tau):
    y = _values()
    c, p = sga.probabilities(y, log_f, classes, tau)
    assert torch.isfinite(p).all() and (p >= 0).all()
    assert torch.allclose(p.sum(-1), torch.ones(len(y), dtype=p.dtype), atol=1e-12)


@pytest.mark.parametrize("name", list(SGA_PLUS))
def test_at_unit_temperature_the_sga_plus_probabilities_are_f(name):
    y = torch.tensor([0.1, 0.3, 1.7, -0.25], dtype=torch.float64)
    u = y - torch.floor(y)
    expected = {"linear": 1 - u, "cosine": torch.cos(u * math.pi / 2) ** 2,
                "ssl": torch.sigmoid(-2.3 * torch.log(u / (1 - u)))}[name]
    _, p = sga.probabilities(y, SGA_PLUS[name], 2, 1.0, a=2.3)
    assert torch.allclose(p[:, 0], expected, atol=1e-9)


@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("tau", TAUS)
def test_ssl_with_a_equal_1_is_linear(classes, tau):
    y = _values()
    c1, p_ssl = sga.probabilities(y, sga.ssl_logits, classes, tau, a=1.0)
    c2, p_lin = sga.probabilities(y, sga.linear_logits, classes, tau)
    assert torch.equal(c1, c2)
    assert torch.allclose(p_ssl, p_lin, atol=1e-6)


def test_ssl_approaches_hard_rounding_as_a_grows():
    y = torch.tensor([0.1, 0.3, 0.45, 0.55, 0.7, 0.9, -1.4, 2.2], dtype=torch.float64)
    nearest = torch.round(y)
    gaps = []
    for a in (1.0, 2.3, 5.0, 20.0, 80.0):
        c, p = sga.probabilities(y, sga.ssl_logits, 2, 1.0, a=a)
        p_nearest = (p * (c == nearest[:, None])).sum(-1)
        gaps.append(float((1 - p_nearest).max()))
    assert all(b < g for g, b in zip(gaps, gaps[1:])), gaps
    c, p = sga.probabilities(y, sga.ssl_logits, 2, 1.0, a=80.0)
    assert ((p * (c == nearest[:, None])).sum(-1) > 1 - 1e-3).all()


@pytest.mark.parametrize("name", list(SGA_PLUS))
def test_three_class_forms_put_no_mass_beyond_one_integer(name):
    y = _values()
    c, p = sga.probabilities(y, SGA_PLUS[name], 3, 1.0)
    mid = torch.round(y)
    dense = _dense(y, c, p)
    ks = torch.arange(-6, 7, dtype=y.dtype)
    far = (ks[None, :] - mid[:, None]).abs() > 1
    assert dense[far].abs().max() == 0
    # and none on a candidate THREE_CLASS_RANGE or more away from the latent
    assert p[(c - y[:, None]).abs() >= sga.THREE_CLASS_RANGE].abs().max() == 0
    # a latent on an integer may still move to either neighbour
    _, p0 = sga.probabilities(torch.tensor([1.0], dtype=torch.float64), SGA_PLUS[name], 3, 1.0)
    assert p0[0, 0] > 0 and p0[0, 2] > 0 and p0[0, 1] > p0[0, 0]


@pytest.mark.parametrize("name", list(SGA_PLUS))
def test_three_class_with_unit_range_is_the_two_class_form(name, monkeypatch):
    monkeypatch.setattr(sga, "THREE_CLASS_RANGE", 1.0)
    y = _values()
    for tau in (1.0, 0.3):
        two = _dense(y, *sga.probabilities(y, SGA_PLUS[name], 2, tau))
        three = _dense(y, *sga.probabilities(y, SGA_PLUS[name], 3, tau))
        assert torch.allclose(two, three, atol=1e-9)


# -- gradients ----------------------------------------------------------------------------------------

def _slope_of_p_floor(log_f, y: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    y = y.clone().requires_grad_()
    _, p = sga.probabilities(y, log_f, 2, tau)
    (g,) = torch.autograd.grad(p[:, 0].sum(), y)
    return g


DISTANCES = torch.tensor([1e-2, 1e-3, 1e-4, 1e-5, 1e-6], dtype=torch.float64)


@pytest.mark.parametrize("name", list(SGA_PLUS))
def test_sga_plus_probabilities_have_bounded_slopes_at_the_rounding_boundaries(name):
    # near an integer from above and from below, and on it
    y = torch.cat([2 + DISTANCES, 2 - DISTANCES, torch.tensor([2.0, 0.0, -1.0], dtype=torch.float64)])
    for tau in (1.0, 0.5):
        g = _slope_of_p_floor(SGA_PLUS[name], y, tau)
        assert torch.isfinite(g).all() and g.abs().max() < 10, (name, tau, g)


def test_atanh_probabilities_have_unbounded_slopes_at_the_rounding_boundaries():
    # p(floor) = sigmoid(atanh(1 - u) - atanh(u)) ~ 1 - sqrt(u / 2) near u = 0 at tau = 1:
    # the slope grows like u ** -1/2 as the latent approaches an integer
    g = _slope_of_p_floor(sga.atanh_logits, 2 + DISTANCES).abs()
    assert all(b > 2 * a for a, b in zip(g, g[1:])), g
    assert g[-1] > 100, g
    for name, log_f in SGA_PLUS.items():
        assert _slope_of_p_floor(log_f, 2 + DISTANCES).abs().max() < 10, name


@pytest.mark.parametrize("name, log_f, classes", SGA_METHODS, ids=[m[0] for m in SGA_METHODS])
def test_relaxed_samples_have_finite_gradients_everywhere(name, log_f, classes):
    y = _values().float().requires_grad_()
    gen = torch.Generator().manual_seed(0)
    for tau in (1.0, 0.5, 0.1):
        out = sga.relaxed_round(y, log_f, classes, tau, 2.3, gen)
        (g,) = torch.autograd.grad(out.sum(), y)
        assert torch.isfinite(out).all() and torch.isfinite(g).all(), (name, tau)
        # and they carry a signal: some latents get a gradient (the rate and distortion reach them)
        assert (g.abs() > 1e-6).any(), (name, tau)


# -- temperature --------------------------------------------------------------------------------------

def test_temperature_schedule_is_min_of_exp_decay_and_tau_max():
    assert temperature(0.0, 2.0, 0.5) == 0.5
    assert temperature(1.0, 2.0, 0.5) == pytest.approx(math.exp(-2.0))
    assert temperature(0.25, 2.0, 1.0) == pytest.approx(math.exp(-0.5))
    assert temperature(0.7, 0.0, 0.3) == 0.3
    taus = [temperature(p / 100, 3.0, 0.6) for p in range(101)]
    assert all(b <= a for a, b in zip(taus, taus[1:])) and taus[-1] < taus[0]


@pytest.mark.parametrize("name, log_f, classes", SGA_METHODS, ids=[m[0] for m in SGA_METHODS])
def test_each_sga_method_approaches_hard_rounding_as_the_temperature_falls(name, log_f, classes):
    y = torch.tensor([0.1, 0.3, 0.38, 0.62, 0.8, -1.3, -2.9, 1.05, 2.0], dtype=torch.float64)
    nearest = torch.round(y)
    gen = torch.Generator().manual_seed(1)
    worst_p, worst_sample = [], []
    for tau in (1.0, 0.5, 0.2, 0.05, 0.01):
        c, p = sga.probabilities(y, log_f, classes, tau)
        worst_p.append(float(1 - (p * (c == nearest[:, None])).sum(-1).min()))
        draws = torch.stack([sga.relaxed_round(y, log_f, classes, tau, 2.3, gen) for _ in range(200)])
        worst_sample.append(float((draws - nearest).abs().mean()))
    assert all(b <= a + 1e-12 for a, b in zip(worst_p, worst_p[1:])), worst_p
    assert worst_p[-1] < 1e-6 and worst_sample[-1] < 1e-4, (worst_p, worst_sample)
    assert worst_sample[-1] < worst_sample[0] / 100, worst_sample


def test_methods_without_a_temperature_end_in_hard_rounding():
    y = torch.tensor([0.1, 0.3, 0.7, -1.7, 3.0])
    opts = core.EncodeOptions()
    for progress in (0.0, 0.5, 0.95):
        step = RoundingStep(int(progress * 100), 100, 0.5, opts, torch.Generator().manual_seed(0))
        assert torch.equal(ste(y, step), torch.round(y))
    late = RoundingStep(95, 100, 0.5, opts, torch.Generator().manual_seed(0))
    assert torch.equal(noise_then_ste(y, late), torch.round(y))
    assert torch.equal(softround_noise(y, late), torch.round(y))
    # soft rounding tends to round as its own temperature falls
    errors = [float((soft_round(y, t) - torch.round(y)).abs().max()) for t in (0.3, 0.1, 0.03, 0.01)]
    assert all(b < a for a, b in zip(errors, errors[1:])) and errors[-1] < 1e-3, errors


# -- the sampler --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, log_f, classes", SGA_METHODS, ids=[m[0] for m in SGA_METHODS])
def test_relaxed_samples_round_to_each_candidate_with_its_probability(name, log_f, classes):
    # Gumbel-max: the candidate of largest weight in a draw is distributed as p
    n = 40000
    gen = torch.Generator().manual_seed(2)
    for v, tau in ((0.3, 1.0), (-1.2, 0.5), (2.0, 0.7)):
        y = torch.full((n,), v, dtype=torch.float64)
        c, p = sga.probabilities(y[:1], log_f, classes, tau)
        cw, w = sga.relaxed_weights(y, log_f, classes, tau, 2.3, gen)
        landed = cw.gather(1, w.argmax(1, keepdim=True))[:, 0]
        if classes == 2:  # the method's own two-class draw: floor + w_1, nearest candidate = argmax
            landed2 = torch.round(sga.relaxed_round(y, log_f, classes, tau, 2.3, gen))
        for k in range(c.shape[1]):
            for got in [landed] + ([landed2] if classes == 2 else []):
                freq = float((got == c[0, k]).double().mean())
                assert abs(freq - float(p[0, k])) < 0.015, (name, v, tau, float(c[0, k]), freq, float(p[0, k]))


def test_the_sga_methods_read_ssl_a_and_tau_from_the_step():
    y = torch.full((20000,), 0.3)
    up = {}
    for a in (1.0, 4.0):
        step = RoundingStep(0, 10, 1.0, core.EncodeOptions(ssl_a=a), torch.Generator().manual_seed(3))
        up[a] = float((sga.ssl(y, step) > 0.5).float().mean())
    assert up[1.0] == pytest.approx(0.3, abs=0.02) and up[4.0] < 0.05, up
    cold = RoundingStep(0, 10, 0.05, core.EncodeOptions(), torch.Generator().manual_seed(3))
    assert float((sga.linear(y, cold) - 0.0).abs().max()) < 1e-3


# -- registration and real encodes --------------------------------------------------------------------

BUILTIN = ("cosine", "cosine3", "linear", "linear3", "noise", "sga", "softround", "ssl", "ssl3", "ste")


def test_builtin_methods_come_through_the_plugin_hook_only():
    from core import hooks

    pm = hooks.make_plugin_manager(load_entrypoints=False)
    assert tuple(sorted(hooks.rounding_methods(pm))) == BUILTIN
    for name, path in hooks.rounding_methods(pm).items():
        assert callable(hooks.resolve(path)), name
    # the core holds no list of its own: without the built-in plugin there are none
    pm.unregister(name="ani-builtins")
    assert hooks.rounding_methods(pm) == {}
    assert hooks.model_families(pm) == {}


@pytest.fixture(scope="module")
def tiny(synth):
    return synth(3, w=24, h=16, seed=4)


@pytest.mark.parametrize("rounding", BUILTIN)
def test_every_method_encodes_and_decodes(tiny, rounding):
    from core.grid.fit import fit_grid

    fitted = fit_grid(tiny, core.EncodeOptions(rounding=rounding, effort=1, seed=0, device="cpu"))
    data = core.encode(tiny, rounding=rounding, effort=1, seed=0, device="cpu")
    out = core.decode(data)
    assert out.shape == tiny.shape
    # the decoded pixels are the fit's own render of its hard-rounded integers
    mse = float(np.mean((out.astype(np.float64) - tiny) ** 2))
    assert 10 * math.log10(255**2 / mse) == pytest.approx(fitted.stats["psnr"], abs=1e-6)
    assert fitted.stats["psnr"] > 15


def test_hard_trace_reports_the_loss_of_the_stored_latents(tiny, monkeypatch):
    from core.grid import fit as F
    from core.grid.fit import fit_grid

    # without what changes the stored model after the last step: the refinement, which moves
    # some stored latents, and the kept best and polished synthesis, which replace its weights
    monkeypatch.setattr(F, "RDO_LEVELS", 0)
    monkeypatch.setattr(F, "KEEP_BEST", False)
    monkeypatch.setattr(F, "POLISH", False)

    points = []
    fitted = fit_grid(tiny, core.EncodeOptions(rounding="ssl", effort=1, device="cpu"),
                      hard_trace=lambda *p: points.append(p), hard_every=10)
    steps = fitted.stats["steps"]
    assert [p[0] for p in points] == list(range(0, steps, 10)) + ([steps - 1] if (steps - 1) % 10 else [])
    step, mse, bits = points[-1]
    # after the last step the latents are the stored ones: same MSE as the decoded picture (float render)
    rendered = 10 * math.log10(1 / mse)
    assert rendered == pytest.approx(fitted.stats["psnr"], abs=0.05)  # the decode's 8-bit rounding
    assert bits == pytest.approx(fitted.stats["estimated_latent_bits"], rel=1e-4)


def test_level_0_temperature_restarts_when_it_joins_after_the_coarse_phase(monkeypatch, synth):
    from core.grid import fit

    calls = []

    def recorder(y, step):
        calls.append((tuple(y.shape), step.step, step.tau))
        return ste(y, step)

    monkeypatch.setattr(fit, "COARSE_MIN_PIXELS", 32 * 32)  # a coarse phase for a tiny image
    monkeypatch.setattr(fit, "resolve", lambda path: recorder)
    image = synth(3, w=48, h=48, seed=8)
    fit.fit_grid(image, core.EncodeOptions(effort=1, quality=20, tau_max=0.8, tau_decay=3, device="cpu"))
    level0 = [(s, t) for shape, s, t in calls if shape == (48, 48)]
    coarser = {s: t for shape, s, t in calls if shape != (48, 48)}
    start = level0[0][0]
    assert start > 10  # level 0 is first rounded after the coarse phase
    # it starts hot while the coarser levels, rounded from step 0, have cooled
    assert level0[0][1] == 0.8 and coarser[0] == 0.8 and coarser[start] < 0.2
    assert all(b <= a for (_, a), (_, b) in zip(level0, level0[1:]))


def _fit_temperatures(monkeypatch, image, **options):
    """(step, steps, tau) of every rounding call of a fit of ``image``."""
    from core.grid import fit

    taus = []

    def recorder(y, step):
        taus.append((step.step, step.steps, step.tau))
        return ste(y, step)

    monkeypatch.setattr(fit, "resolve", lambda path: recorder)
    fit.fit_grid(image, core.EncodeOptions(effort=1, device="cpu", **options))
    return taus


@pytest.mark.parametrize("quality, decay", [(20, 1.0), (90, 0.5)])
def test_the_default_schedule_leaves_the_latents_warm_until_the_freeze(monkeypatch, tiny, quality, decay):
    from core.grid import fit

    taus = _fit_temperatures(monkeypatch, tiny, quality=quality)  # no coarse phase at this size
    assert taus and all(t == pytest.approx(math.exp(-decay * s / n)) for s, n, t in taus)
    last, steps, tau = taus[-1]
    assert last / steps < fit.FREEZE <= (last + 1) / steps  # the latents are rounded until the freeze
    # exp(-0.85) at low qualities, exp(-0.425) at high ones: the papers' decay
    # of 2 had cooled it to exp(-1.7) = 0.18
    assert tau > 0.4


def test_a_set_decay_overrides_the_one_by_quality(monkeypatch, tiny):
    taus = _fit_temperatures(monkeypatch, tiny, quality=90, tau_decay=2)
    assert taus and all(t == pytest.approx(math.exp(-2 * s / n)) for s, n, t in taus)
