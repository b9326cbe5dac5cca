"""Bjontegaard BD-rate / BD-PSNR and PSNR-at-bpp interpolation.

Convention (the same as ``shared/data/kodak_baselines_summary.md``):

* A curve is a list of ``(bpp, psnr)`` points, one per setting.
* BD-rate: the natural log of the rate is taken as a function of PSNR for both
  curves, each fitted by a cubic (``"cubic"``: least-squares degree-3
  polynomial, VCEG-M33) or a piecewise-cubic Hermite interpolant (``"pchip"``,
  Fritsch-Carlson slopes), and integrated over the overlap of the two PSNR
  ranges. ``BD-rate = exp(mean(log R_test - log R_anchor)) - 1``, in percent:
  negative means the test codec needs fewer bits than the anchor for the same
  PSNR.
* BD-PSNR: PSNR as a function of log rate, mean difference (test - anchor) over
  the overlap of the log-rate ranges, in dB.
* ``psnr_at``: PSNR at a given bpp, linear in log(bpp) between the two
  neighbouring points of the curve; NaN outside the curve's range.

Each function returns NaN where the curves do not overlap or have fewer points
than the method needs (4 for cubic, 2 for pchip).
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

Curve = Sequence[tuple[float, float]]

METHODS = ("cubic", "pchip")


def _clean(curve: Iterable[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    pts = [(float(r), float(p)) for r, p in curve if r > 0 and math.isfinite(r) and math.isfinite(p)]
    pts.sort()
    rate = np.array([r for r, _ in pts], dtype=np.float64)
    psnr = np.array([p for _, p in pts], dtype=np.float64)
    return rate, psnr


def psnr_at(curve: Curve, bpp: float) -> float:
    """PSNR at ``bpp``, linear in log(bpp); NaN outside the curve's bpp range."""
    rate, psnr = _clean(curve)
    if len(rate) == 0 or bpp <= 0:
        return float("nan")
    x = np.log(rate)
    lx = math.log(bpp)
    if not x[0] - 1e-12 <= lx <= x[-1] + 1e-12:
        return float("nan")
    return float(np.interp(lx, x, psnr))


def bpp_at(curve: Curve, psnr: float, extrapolate: bool = False) -> float:
    """bpp at ``psnr``, log(bpp) linear in PSNR between the curve's points (which
    must rise in PSNR with bpp); NaN where the curve does not rise, and outside
    its PSNR range unless ``extrapolate`` (then the end segment's line)."""
    rate, value = _clean(curve)
    if len(rate) < 2 or not math.isfinite(psnr) or not _strictly_increasing(value):
        return float("nan")
    x = np.log(rate)
    if value[0] - 1e-12 <= psnr <= value[-1] + 1e-12:
        return float(math.exp(np.interp(psnr, value, x)))
    if not extrapolate:
        return float("nan")
    k = 0 if psnr < value[0] else len(value) - 2
    slope = (x[k + 1] - x[k]) / (value[k + 1] - value[k])
    return float(math.exp(x[k] + slope * (psnr - value[k])))


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch-Carlson monotone slopes (as in scipy's PchipInterpolator)."""
    h = np.diff(x)
    delta = np.diff(y) / h
    n = len(x)
    d = np.zeros(n)
    if n == 2:
        d[:] = delta[0]
        return d
    for k in range(1, n - 1):
        if delta[k - 1] * delta[k] <= 0:
            d[k] = 0.0
        else:
            w1 = 2 * h[k] + h[k - 1]
            w2 = h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])

    def end(h0, h1, m0, m1):
        s = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(s) != np.sign(m0):
            return 0.0
        if np.sign(m0) != np.sign(m1) and abs(s) > abs(3 * m0):
            return 3 * m0
        return s

    d[0] = end(h[0], h[1], delta[0], delta[1])
    d[-1] = end(h[-1], h[-2], delta[-1], delta[-2])
    return d


def _pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Exact integral over [lo, hi] (inside [x0, xn]) of the pchip interpolant."""
    d = _pchip_slopes(x, y)
    total = 0.0
    for k in range(len(x) - 1):
        a, b = max(lo, x[k]), min(hi, x[k + 1])
        if b <= a:
            continue
        h = x[k + 1] - x[k]
        # Hermite cubic in t = (x - x_k)/h: y = c0 + c1 t + c2 t^2 + c3 t^3
        c0 = y[k]
        c1 = d[k] * h
        c2 = 3 * (y[k + 1] - y[k]) - (2 * d[k] + d[k + 1]) * h
        c3 = 2 * (y[k] - y[k + 1]) + (d[k] + d[k + 1]) * h
        ta, tb = (a - x[k]) / h, (b - x[k]) / h

        def prim(t):
            return c0 * t + c1 * t**2 / 2 + c2 * t**3 / 3 + c3 * t**4 / 4

        total += (prim(tb) - prim(ta)) * h
    return total


def _mean_over(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    if method == "cubic":
        coef = np.polyfit(x, y, 3)
        integ = np.polyint(coef)
        return float((np.polyval(integ, hi) - np.polyval(integ, lo)) / (hi - lo))
    if method == "pchip":
        return _pchip_integral(x, y, lo, hi) / (hi - lo)
    raise ValueError(f"unknown BD method {method!r}; expected one of {METHODS}")


def _needed(method: str) -> int:
    if method not in METHODS:
        raise ValueError(f"unknown BD method {method!r}; expected one of {METHODS}")
    return 4 if method == "cubic" else 2


def _strictly_increasing(x: np.ndarray) -> bool:
    return bool(np.all(np.diff(x) > 0))


def _mean_difference(anchor: Curve, test: Curve, method: str, axes, x_max: float | None = None) -> float:
    """Mean of ``y_test - y_anchor`` over the overlap of the two curves' ``x``
    ranges (cut at ``x_max`` if given), where ``axes(rate, psnr) -> (x, y)``
    picks the axes; NaN where the method has too few points, the ranges do not
    overlap, or (pchip) ``x`` repeats a value."""
    need = _needed(method)
    ra, pa = _clean(anchor)
    rt, pt = _clean(test)
    if len(ra) < need or len(rt) < need:
        return float("nan")
    xa, ya = axes(ra, pa)
    xt, yt = axes(rt, pt)
    lo, hi = max(xa.min(), xt.min()), min(xa.max(), xt.max())
    if x_max is not None:
        hi = min(hi, x_max)
    if not hi > lo:
        return float("nan")
    oa, ot = np.argsort(xa), np.argsort(xt)
    xa, ya, xt, yt = xa[oa], ya[oa], xt[ot], yt[ot]
    if method == "pchip" and not (_strictly_increasing(xa) and _strictly_increasing(xt)):
        return float("nan")
    return _mean_over(xt, yt, lo, hi, method) - _mean_over(xa, ya, lo, hi, method)


def bd_rate(anchor: Curve, test: Curve, method: str = "cubic", psnr_max: float | None = None) -> float:
    """BD-rate of ``test`` against ``anchor`` in percent (negative = test is
    better); ``psnr_max`` cuts the PSNR overlap there (to compare two curves of
    one codec against an anchor over the same range, when one reaches higher)."""
    diff = _mean_difference(anchor, test, method, lambda rate, psnr: (psnr, np.log(rate)), psnr_max)
    return (math.exp(diff) - 1) * 100 if math.isfinite(diff) else float("nan")


def bd_psnr(anchor: Curve, test: Curve, method: str = "cubic") -> float:
    """BD-PSNR of ``test`` against ``anchor`` in dB (positive = test is better)."""
    return _mean_difference(anchor, test, method, lambda rate, psnr: (np.log(rate), psnr))


def mean_curve(curves: Sequence[Curve]) -> list[tuple[float, float]]:
    """The Kodak-average curve: mean bpp and mean PSNR over images, setting by setting.

    ``curves`` holds one curve per image, with the same number of settings in the
    same order.
    """
    if not curves:
        return []
    n = len(curves[0])
    if any(len(c) != n for c in curves):
        raise ValueError("every image's curve must have the same settings")
    return [
        (float(np.mean([c[i][0] for c in curves])), float(np.mean([c[i][1] for c in curves])))
        for i in range(n)
    ]
