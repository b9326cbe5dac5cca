"""BD-rate, BD-PSNR and PSNR-at-bpp against hand-computed cases."""
import math

import numpy as np
import pytest

from benchmarks.bdrate import bd_psnr, bd_rate, mean_curve, psnr_at

PSNRS = [28.0, 31.0, 34.0, 37.0, 40.0]


def curve(log_rate):
    return [(math.exp(log_rate(p)), p) for p in PSNRS]


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_half_the_rate_everywhere_is_minus_50(method):
    anchor = curve(lambda p: p / 8 - 4)
    test = [(r / 2, p) for r, p in anchor]
    assert bd_rate(anchor, test, method) == pytest.approx(-50.0, abs=1e-9)
    assert bd_rate(test, anchor, method) == pytest.approx(100.0, abs=1e-9)
    assert bd_rate(anchor, anchor, method) == pytest.approx(0.0, abs=1e-12)


def test_quadratic_difference_hand_integrated():
    # anchor: ln R = P/10; test: ln R = P/10 - 0.1 + 0.01 (P - 35)^2 over P in [30, 40]
    # mean difference = (-0.1*10 + 0.01 * 2 * 5^3 / 3) / 10 = -1/60
    psnrs = [30.0, 32.5, 35.0, 37.5, 40.0]
    anchor = [(math.exp(p / 10), p) for p in psnrs]
    test = [(math.exp(p / 10 - 0.1 + 0.01 * (p - 35) ** 2), p) for p in psnrs]
    expected = (math.exp(-1 / 60) - 1) * 100
    assert bd_rate(anchor, test, "cubic") == pytest.approx(expected, abs=1e-9)
    # pchip is not exact on a parabola but close with five points
    assert bd_rate(anchor, test, "pchip") == pytest.approx(expected, abs=0.1)


def test_overlap_only():
    # test covers 34..40 only; over that range it is 20 % cheaper
    anchor = curve(lambda p: p / 8 - 4)
    test = [(math.exp(p / 8 - 4) * 0.8, p) for p in (34.0, 36.0, 38.0, 40.0)]
    assert bd_rate(anchor, test, "cubic") == pytest.approx(-20.0, abs=1e-9)
    assert bd_rate(anchor, test, "pchip") == pytest.approx(-20.0, abs=1e-9)


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_psnr_max_cuts_the_overlap(method):
    # ln R differs by 0.02 (P - 28): the mean over [28, hi] is 0.01 (hi - 28)
    anchor = curve(lambda p: p / 8 - 4)
    test = curve(lambda p: p / 8 - 4 + 0.02 * (p - 28))
    assert bd_rate(anchor, test, method) == pytest.approx((math.exp(0.12) - 1) * 100, abs=1e-9)
    assert bd_rate(anchor, test, method, psnr_max=34.0) == pytest.approx((math.exp(0.06) - 1) * 100, abs=1e-9)
    assert bd_rate(anchor, test, method, psnr_max=50.0) == bd_rate(anchor, test, method)
    assert math.isnan(bd_rate(anchor, test, method, psnr_max=27.0))


def test_bd_psnr_constant_shift():
    anchor = [(0.25, 28.0), (0.5, 31.0), (1.0, 34.0), (2.0, 37.0)]
    test = [(r, p + 1.5) for r, p in anchor]
    for method in ("cubic", "pchip"):
        assert bd_psnr(anchor, test, method) == pytest.approx(1.5, abs=1e-9)


def test_no_overlap_or_too_few_points_is_nan():
    anchor = curve(lambda p: p / 8 - 4)
    far = [(r, p + 100) for r, p in anchor]
    assert math.isnan(bd_rate(anchor, far))
    assert math.isnan(bd_rate(anchor, anchor[:3], "cubic"))
    assert not math.isnan(bd_rate(anchor, anchor[:3], "pchip"))
    with pytest.raises(ValueError, match="unknown BD method"):
        bd_rate(anchor, anchor, "spline")


def test_pchip_is_monotone_where_cubic_overshoots():
    # a kink: pchip stays within the data's range (no overshoot), so its mean is
    # between the min and max of the data
    psnrs = [28.0, 29.0, 30.0, 40.0]
    anchor = [(math.exp(p / 10), p) for p in psnrs]
    test = [(math.exp(0.5), 28.0), (math.exp(0.6), 29.0), (math.exp(0.7), 30.0), (math.exp(3.0), 40.0)]
    assert np.isfinite(bd_rate(anchor, test, "pchip"))


def test_psnr_at_is_linear_in_log_bpp():
    c = [(0.25, 30.0), (1.0, 36.0)]
    assert psnr_at(c, 0.5) == pytest.approx(33.0)
    assert psnr_at(c, 0.25) == pytest.approx(30.0)
    assert math.isnan(psnr_at(c, 0.2))
    assert math.isnan(psnr_at(c, 1.5))


def test_mean_curve():
    a = [(0.2, 30.0), (0.4, 32.0)]
    b = [(0.4, 28.0), (0.8, 34.0)]
    assert mean_curve([a, b]) == [(pytest.approx(0.3), pytest.approx(29.0)), (pytest.approx(0.6), pytest.approx(33.0))]
    with pytest.raises(ValueError):
        mean_curve([a, b[:1]])


def test_reproduces_the_shared_baseline_summary():
    """Our BD-rate on the shared raw rows gives the figures the baseline summary reports."""
    import collections
    import csv
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak_baselines.csv"
    if not path.exists():
        pytest.skip("shared baseline data not beside the repo")
    by = collections.defaultdict(lambda: collections.defaultdict(list))
    for row in csv.DictReader(path.open()):
        by[row["codec"]][row["setting"]].append((float(row["bpp"]), float(row["psnr"])))

    def average(settings):
        return sorted((float(np.mean([b for b, _ in v])), float(np.mean([p for _, p in v]))) for v in settings.values())

    jpeg = average(by["jpeg"])
    # kodak_baselines_summary.md: webp -40.7 / -40.3, avif -51.7 / -51.3 (cubic / pchip)
    assert bd_rate(jpeg, average(by["webp"]), "cubic") == pytest.approx(-40.7, abs=0.05)
    assert bd_rate(jpeg, average(by["webp"]), "pchip") == pytest.approx(-40.3, abs=0.05)
    assert bd_rate(jpeg, average(by["avif"]), "cubic") == pytest.approx(-51.7, abs=0.05)
    assert bd_rate(jpeg, average(by["avif"]), "pchip") == pytest.approx(-51.3, abs=0.05)


def test_bpp_at_inverts_the_curve_and_extrapolates_only_when_asked():
    from benchmarks.bdrate import bpp_at

    curve = [(0.25, 26.0), (0.5, 28.0), (1.0, 30.0)]
    assert bpp_at(curve, 28.0) == pytest.approx(0.5)
    assert bpp_at(curve, 29.0) == pytest.approx(math.sqrt(0.5))
    assert math.isnan(bpp_at(curve, 31.0))
    assert bpp_at(curve, 32.0, extrapolate=True) == pytest.approx(2.0)
    assert bpp_at(curve, 24.0, extrapolate=True) == pytest.approx(0.125)
    assert math.isnan(bpp_at([(0.5, 28.0), (1.0, 27.0)], 27.5))  # not rising
