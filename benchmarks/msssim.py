"""Multi-scale structural similarity (MS-SSIM), in numpy.

Wang, Simoncelli and Bovik, "Multiscale structural similarity for image
quality assessment", Asilomar 2003. At scales ``j = 1..M`` (``M = 5``), the
image pair is filtered by an 11x11 Gaussian window (sigma 1.5, "valid"
positions only) to give local means, variances and covariance, and

    c_j s_j = mean( (2 sigma_xy + C2) / (sigma_x^2 + sigma_y^2 + C2) )
    l_M     = mean( (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1) )       (at scale M only)
    MS-SSIM = l_M^{a_M} * prod_j (c_j s_j)^{b_j}

with ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, ``L = 255`` and the exponents
``(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)`` of the paper. (The product at
scale M is taken pixel by pixel before the mean, i.e. the SSIM map of the
coarsest scale, as in the authors' reference code.) Between scales the images
are low-pass filtered by a 2x2 box and subsampled by 2 (the reference code's
``imfilter(img, ones(2)/4, 'symmetric')`` followed by ``img(1:2:end, 1:2:end)``:
on even sizes, the mean of each 2x2 block).

Colour: MS-SSIM is computed on each RGB channel separately and the three
values are averaged (as ``pytorch_msssim`` and CompressAI's evaluations do).
A negative ``c_j s_j`` is clipped to 0 before the power, so the result is
always in [0, 1].

The five scales need the smaller side to be at least ``MIN_SIDE`` = 176 pixels
(the coarsest scale must hold one 11x11 window); smaller images give NaN.
"""
from __future__ import annotations

import math

import numpy as np

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03
DATA_RANGE = 255.0
MIN_SIDE = WINDOW * 2 ** (len(WEIGHTS) - 1)


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA) -> np.ndarray:
    """The normalised 1-D Gaussian (the 2-D window is its outer product)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 2-D correlation of ``a`` (..., H, W) with ``g`` x ``g``, valid positions."""
    n = len(g)
    h, w = a.shape[-2] - n + 1, a.shape[-1] - n + 1
    rows = a[..., :h, :] * g[0]
    tmp = np.empty_like(rows)
    for k in range(1, n):
        np.multiply(a[..., k : k + h, :], g[k], out=tmp)
        rows += tmp
    out = rows[..., :w] * g[0]
    tmp = np.empty_like(out)
    for k in range(1, n):
        np.multiply(rows[..., k : k + w], g[k], out=tmp)
        out += tmp
    return out


def _ssim_terms(x: np.ndarray, y: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel of (C, H, W) images: the mean contrast-structure term and the mean SSIM (l * cs)."""
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    # one filtering pass over the five stacked maps
    f = _filter_valid(np.concatenate([x, y, x * x, y * y, x * y], axis=0), g)
    mu_x, mu_y, exx, eyy, exy = np.split(f, 5, axis=0)
    sxx, syy, sxy = exx - mu_x**2, eyy - mu_y**2, exy - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return cs.mean(axis=(1, 2)), (lum * cs).mean(axis=(1, 2))


def _downsample(a: np.ndarray) -> np.ndarray:
    """2x2 box filter with symmetric edges, then every other pixel from the first (C, H, W)."""
    if a.shape[1] % 2:
        a = np.concatenate([a, a[:, -1:]], axis=1)
    if a.shape[2] % 2:
        a = np.concatenate([a, a[:, :, -1:]], axis=2)
    return (a[:, 0::2, 0::2] + a[:, 1::2, 0::2] + a[:, 0::2, 1::2] + a[:, 1::2, 1::2]) / 4


def ms_ssim(reference: np.ndarray, test: np.ndarray, weights=WEIGHTS) -> float:
    """MS-SSIM of two uint8 images of shape (H, W) or (H, W, C), 8-bit range.

    Returns the mean over channels of the per-channel MS-SSIM; NaN when the
    smaller side is below ``WINDOW * 2**(len(weights) - 1)``.
    """
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(test, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} and {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if a.ndim != 3:
        raise ValueError(f"expected (H, W) or (H, W, C) images, got shape {a.shape}")
    a = np.ascontiguousarray(np.moveaxis(a, 2, 0))  # channels first: contiguous rows
    b = np.ascontiguousarray(np.moveaxis(b, 2, 0))
    if min(a.shape[1:]) < WINDOW * 2 ** (len(weights) - 1):
        return float("nan")
    g = gaussian_window()
    w = np.asarray(weights, dtype=np.float64)
    values = []
    for j in range(len(w)):
        cs, ssim = _ssim_terms(a, b, g)
        last = j == len(w) - 1
        values.append(np.maximum(ssim if last else cs, 0.0))
        if not last:
            a, b = _downsample(a), _downsample(b)
    per_channel = np.prod(np.stack(values) ** w[:, None], axis=0)
    result = float(per_channel.mean())
    return result if math.isfinite(result) else float("nan")
