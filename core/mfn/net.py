"""Multiplicative filter networks (Fathony et al. 2021), the ``mfn`` family of
the ANI paper (``shared/papers/000``), with Fourier or Gabor filters.

Sub-network ``(d, w)`` of a supernet (tensors named as in
:mod:`core.inr.layout`), ``x`` the pixel coordinates in ``[-1, 1]^2``::

    g_k(x) = sin(F_k[:w] x + f_k[:w])                                  Fourier
    g_k(x) = sin(F_k[:w] x + f_k[:w]) * exp(-max(gamma_k, 0)/2 * |x - mu_k|^2)   Gabor
    z_0 = g_0(x)
    z_k = (L_k[:w, :w] z_{k-1} + l_k[:w]) * g_k(x)                     k = 1 .. d-1
    o   = H_d[:, :w] z_{d-1} + c_d

with ``|x - mu|^2 = (x_0 - mu_0)^2 + (x_1 - mu_1)^2``. The initialisation
follows the authors' reference code; the filter frequencies are scaled by
``input_scale / sqrt(D)`` (``D`` filters), ``input_scale`` set from the image
size so the summed frequencies reach about the image's Nyquist rate.
"""
from __future__ import annotations

import math

import torch

#: input_scale = INPUT_SCALE_PER_PIXEL * max(height, width); on a 256x256 crop of
#: kodim23 ((3, 48), 300 steps, lr 2e-3) 1, 0.5, 0.25 gave 17.2, 20.6, 25.1 dB: the
#: reference code's 256 for this size is far too high for short fits
INPUT_SCALE_PER_PIXEL = 0.25
#: Gabor filters' gamma ~ Gamma(GABOR_ALPHA / D, 1)
GABOR_ALPHA = 6.0


def gain(spec) -> float:
    return 1.0


def init_params(arch, gen: torch.Generator, image_size: tuple[int, int]) -> dict[str, torch.Tensor]:
    from ..inr.layout import KIND_GABOR

    D, W = arch.depth, arch.width
    scale = INPUT_SCALE_PER_PIXEL * max(image_size) / math.sqrt(D)
    out = {}
    gammas = {}
    if arch.kind == KIND_GABOR:
        # Gamma(a, 1) via numpy's generator seeded from the torch one (torch's Gamma has no generator)
        import numpy as np

        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen)))
        for k in range(D):
            gammas[k] = torch.from_numpy(rng.gamma(GABOR_ALPHA / D, 1.0, size=W).astype("float32"))
    for t in arch.tensors:
        shape = (t.rows, t.cols) if t.cols else (t.rows,)
        u = torch.rand(shape, generator=gen) * 2 - 1
        kind, _, field = t.name.partition(".")
        k = int(kind[1:])
        if kind[0] == "F":
            if field == "w":
                v = u * (1 / math.sqrt(2)) * scale
                if k in gammas:
                    v = v * torch.sqrt(gammas[k])[:, None]
            elif field == "b":
                v = u * math.pi
            elif field == "mu":
                v = u
            else:  # gamma
                v = gammas[k].clone()
        elif kind[0] == "L":
            v = u * math.sqrt(1.0 / W) if field == "w" else u / math.sqrt(W)
        else:  # head
            v = u / math.sqrt(W) if field == "w" else torch.zeros(shape)
        out[t.name] = v
    return out


def _filter(p, x, k: int, w: int) -> torch.Tensor:
    z = torch.sin(torch.addmm(p[f"F{k}.b"][:w], x, p[f"F{k}.w"][:w].t()))
    if f"F{k}.mu" in p:
        mu, g = p[f"F{k}.mu"][:w], p[f"F{k}.g"][:w].clamp(min=0)
        dist = (x[:, 0:1] - mu[:, 0]) ** 2 + (x[:, 1:2] - mu[:, 1]) ** 2
        z = z * torch.exp(-0.5 * g * dist)
    return z


def forward(arch, p: dict[str, torch.Tensor], x: torch.Tensor, depth: int, width: int) -> torch.Tensor:
    w = width
    z = _filter(p, x, 0, w)
    for k in range(1, depth):
        z = torch.addmm(p[f"L{k}.b"][:w], z, p[f"L{k}.w"][:w, :w].t()) * _filter(p, x, k, w)
    return torch.addmm(p[f"H{depth}.b"], z, p[f"H{depth}.w"][:, :w].t())
