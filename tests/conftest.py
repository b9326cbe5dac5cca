"""Shared fixtures of the core tests: tiny seeded synthetic images and encodes
shared across a session (each fit runs once per test run).

Process-wide settings belong here, never in the library: torch runs on one
thread, because this machine has two cores and oversubscribed intra-op threads
make small fits about ten times slower.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

try:
    import torch
except ImportError:  # the container/options/entropy tests run without torch
    torch = None
else:
    torch.set_num_threads(1)

#: size of the default test image (width, height)
W, H = 24, 16


def synthetic_image(channels: int = 3, w: int = W, h: int = H, seed: int = 0) -> np.ndarray:
    """A seeded uint8 test image: smooth gradients plus a little texture.

    Colour channels differ in frequency and phase; an alpha channel (the last
    one of LA and RGBA) is its own pattern (a ramp with a soft disc), so a
    decoder that ignored alpha or copied a colour channel into it would fail.
    Returns shape (h, w) for one channel, else (h, w, channels).
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    n_colour = channels - 1 if channels in (2, 4) else channels
    planes = []
    for c in range(n_colour):
        base = 128 + 90 * np.sin(x / (3.0 + c) + c) * np.cos(y / (4.0 + c)) + 20 * (x / w - y / h)
        planes.append(base + rng.normal(0, 4, size=(h, w)))
    if channels in (2, 4):
        r = np.hypot(x - 0.6 * w, y - 0.45 * h) / (0.35 * min(w, h))
        alpha = 40 + 160 * (x / w) + 55 / (1 + np.exp(4 * (r - 1)))
        planes.append(alpha + rng.normal(0, 2, size=(h, w)))
    a = np.clip(np.rint(np.stack(planes, axis=-1)), 0, 255).astype(np.uint8)
    return a[:, :, 0] if channels == 1 else a


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays (MSE over all values)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def flat_image(a: np.ndarray) -> np.ndarray:
    """The image of the same shape filled with its per-channel mean colour."""
    a3 = a.reshape(a.shape[0], a.shape[1], -1).astype(np.float64)
    mean = np.rint(a3.mean(axis=(0, 1)))
    return np.broadcast_to(mean, a3.shape).reshape(a.shape).astype(np.uint8)


@pytest.fixture(scope="session")
def synth():
    """The synthetic image factory: ``synth(channels, w=, h=, seed=)``."""
    return synthetic_image


@pytest.fixture(scope="session")
def metrics():
    """``(psnr, flat_image)`` helpers."""
    return psnr, flat_image


MODE_CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


@pytest.fixture(scope="session")
def encoded_modes():
    """``{mode: (image, ani_bytes)}`` for L, LA, RGB, RGBA at 24x16, effort=2, seed=0.

    Effort 2 (150 steps): at effort 1 (60 steps) the default rounding ``linear``
    fits this RGBA image's alpha to only 16-20 dB over seeds 0-2 (``softround``:
    21-22 dB), too close to the flat image for the mode tests to mean much.
    """
    pytest.importorskip("torch")
    import core

    out = {}
    for mode, channels in MODE_CHANNELS.items():
        image = synthetic_image(channels)
        out[mode] = (image, core.encode(image, effort=2, seed=0))
    return out


@pytest.fixture(scope="session")
def small_file(encoded_modes) -> bytes:
    """A small complete RGB ``.ani`` file (24x16, effort=2, seed=0)."""
    return encoded_modes["RGB"][1]
