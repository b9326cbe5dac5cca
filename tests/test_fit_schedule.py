"""The grid fit's budget and quality-dependent schedules (core/grid/fit.py)."""
import pytest

from core.grid import fit as F
from plugin_support import kodak_crop
from core.options import EncodeOptions


def _cost(steps: int, coarse: int) -> float:
    """Time of a fit in full-resolution steps (a coarse step costs a quarter)."""
    return coarse / 4 + (steps - coarse)


def test_small_images_fit_at_full_resolution_only():
    assert F.schedule(850, 10, big=False) == (850, 0)
    assert F.schedule(850, 90, big=False) == (850, 0)


@pytest.mark.parametrize("quality", [0, 10, 30, 45, 60, 90, 100])
def test_budget_is_the_same_time_whatever_the_coarse_fraction(quality, monkeypatch):
    budget = F.EFFORT_STEPS[5]
    reference = budget * F._step_cost(F.BUDGET_COARSE)
    costs = []
    for coarse_end in (0.5, 0.6, 0.85):
        monkeypatch.setattr(F, "COARSE_END", coarse_end)
        steps, coarse = F.schedule(budget, quality, big=True)
        assert coarse == int(F.coarse_fraction(quality) * steps)
        costs.append(_cost(steps, coarse))
    # each within a step of the reference time: changing COARSE_END does not change the budget
    assert all(abs(c - reference) <= 1.0 for c in costs), (costs, reference)


def test_default_schedule_leaves_full_resolution_steps_at_low_quality():
    # 850 steps at 85 % coarse left ~130 full-resolution steps; the low-quality fits lacked them
    steps, coarse = F.schedule(F.EFFORT_STEPS[5], 10, big=True)
    assert steps - coarse >= 200
    assert coarse > 0


def test_latent_learning_rate_rises_with_quality():
    lrs = [F.latents_lr(q) for q in range(0, 101, 5)]
    assert lrs[0] == F.LR_LATENTS and lrs[-1] == F.LR_LATENTS_HIGH
    assert F.latents_lr(25) == F.LR_LATENTS and F.latents_lr(45) == pytest.approx(F.LR_LATENTS_MID)
    assert F.latents_lr(70) == pytest.approx(F.LR_LATENTS_HIGH) and F.LR_LATENTS_HIGH > F.LR_LATENTS_MID
    assert all(a <= b for a, b in zip(lrs, lrs[1:]))


def test_fit_runs_the_schedule_and_uses_the_latent_rate(monkeypatch):
    # a real 256x256 Kodak crop: big enough for the coarse phase and the quality-dependent rates
    image = kodak_crop("kodim23", box=(256, 128, 512, 384))
    seen = {}
    real_adam = F.torch.optim.Adam

    def spy(groups, *a, **k):
        groups = list(groups)
        if isinstance(groups[0], dict):  # the fit's optimiser (the context fit's has one plain tensor)
            seen.setdefault("lrs", [g["lr"] for g in groups])
        return real_adam(groups, *a, **k)

    monkeypatch.setattr(F.torch.optim, "Adam", spy)
    fitted = F.fit_grid(image, EncodeOptions(quality=70, effort=1))
    steps, coarse = F.schedule(F.EFFORT_STEPS[1], 70, big=True)
    assert coarse > 0
    assert fitted.stats["steps"] == steps
    assert seen["lrs"][0] == pytest.approx(F.latents_lr(70))
    assert seen["lrs"][0] > F.LR_LATENTS
