"""MS-SSIM (benchmarks/msssim.py) against hand-computed cases and its properties.

During development the Kodak values were also checked against pytorch_msssim
1.0 (``ms_ssim(X, Y, data_range=255)``, float64): kodim01/04/05/23 against
their JPEG decodes at qualities 10/5/50/90 agreed within 2e-6.
"""
import math

import numpy as np
import pytest

from benchmarks.msssim import MIN_SIDE, WEIGHTS, gaussian_window, ms_ssim


def _image(h, w, seed=0, c=3):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 3 + y) % 256, (y * 2) % 256, (x + 2 * y) % 256][:c], axis=-1).astype(np.float64)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def _noisy(img, sigma, seed=1):
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def test_identity_is_one():
    img = _image(MIN_SIDE, MIN_SIDE + 20)
    assert ms_ssim(img, img) == pytest.approx(1.0, abs=1e-12)


def test_constant_images_hand_computed():
    # no variance anywhere: every contrast-structure term is C2/C2 = 1, and the
    # luminance term at the coarsest scale is (2ab + C1) / (a^2 + b^2 + C1)
    a = np.full((MIN_SIDE, MIN_SIDE, 3), 100, np.uint8)
    b = np.full((MIN_SIDE, MIN_SIDE, 3), 110, np.uint8)
    c1 = (0.01 * 255) ** 2
    lum = (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1)
    assert ms_ssim(a, b) == pytest.approx(lum ** WEIGHTS[-1], abs=1e-12)


def _ssim_map_bruteforce(x, y):
    """Mean SSIM and mean cs of one channel with an explicit 11x11 window."""
    g = gaussian_window()
    win = np.outer(g, g)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    h, w = x.shape[0] - 10, x.shape[1] - 10
    ssim, cs = np.zeros((h, w)), np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (win * px).sum(), (win * py).sum()
            vx = (win * (px - mx) ** 2).sum()
            vy = (win * (py - my) ** 2).sum()
            cxy = (win * (px - mx) * (py - my)).sum()
            cs[i, j] = (2 * cxy + c2) / (vx + vy + c2)
            ssim[i, j] = cs[i, j] * (2 * mx * my + c1) / (mx**2 + my**2 + c1)
    return ssim.mean(), cs.mean()


def test_single_and_two_scales_match_an_explicit_window():
    x = _image(26, 30, c=1)[..., 0]
    y = _noisy(x, 20)
    ssim1, cs1 = _ssim_map_bruteforce(x.astype(float), y.astype(float))
    assert ms_ssim(x, y, weights=(1.0,)) == pytest.approx(ssim1, rel=1e-10)
    # two scales: cs at full size, SSIM on the 2x2-block means
    x2 = x.astype(float).reshape(13, 2, 15, 2).mean(axis=(1, 3))
    y2 = y.astype(float).reshape(13, 2, 15, 2).mean(axis=(1, 3))
    ssim2, _ = _ssim_map_bruteforce(x2, y2)
    expected = cs1**0.4 * ssim2**0.6
    assert ms_ssim(x, y, weights=(0.4, 0.6)) == pytest.approx(expected, rel=1e-10)


def test_rgb_is_the_mean_of_the_channels():
    x = _image(MIN_SIDE, MIN_SIDE)
    y = _noisy(x, 15)
    per = [ms_ssim(x[..., k], y[..., k]) for k in range(3)]
    assert ms_ssim(x, y) == pytest.approx(sum(per) / 3, rel=1e-12)


def test_properties_symmetry_range_and_monotone_in_noise():
    x = _image(MIN_SIDE, MIN_SIDE + 8)
    values = [ms_ssim(x, _noisy(x, s)) for s in (2, 8, 30, 90)]
    assert all(0 <= v < 1 for v in values)
    assert values == sorted(values, reverse=True)
    y = _noisy(x, 8)
    assert ms_ssim(x, y) == pytest.approx(ms_ssim(y, x), abs=1e-12)


def test_too_small_is_nan_and_shape_mismatch_raises():
    assert math.isnan(ms_ssim(_image(MIN_SIDE - 1, 300), _image(MIN_SIDE - 1, 300)))
    with pytest.raises(ValueError, match="differ in shape"):
        ms_ssim(_image(200, 200), _image(200, 201))

