"""SIREN (Sitzmann et al. 2020), the ``siren`` family of the ANI paper
(``shared/papers/000``): a coordinate MLP with sine activations.

Sub-network ``(d, w)`` of a supernet (tensors named as in
:mod:`core.inr.layout`), with ``x`` the pixel coordinates in ``[-1, 1]^2``::

    h_0 = sin(W_0[:w] x + b_0[:w])
    h_k = sin(W_k[:w, :w] h_{k-1} + b_k[:w])         k = 1 .. d-1
    o   = H_d[:, :w] h_{d-1} + c_d                   (the head of depth d)

The file stores these *effective* weights; training keeps SIREN's form
``sin(omega_0 (W x + b))`` with ``omega_0 = W0`` and its initialisation,
and :func:`gain` folds ``omega_0`` into the stored step sizes.
"""
from __future__ import annotations

import math

import torch

#: SIREN's omega_0 (frequency factor of every sine layer)
W0 = 30.0


def gain(spec) -> float:
    """Factor between a trained tensor and the effective one (trunk: omega_0)."""
    return W0 if spec.layer is not None else 1.0


def init_params(arch, gen: torch.Generator, image_size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """SIREN's initialisation: first layer U(-1/n, 1/n), later layers
    U(-sqrt(6/n)/omega_0, sqrt(6/n)/omega_0), ``n`` the fan-in; biases as
    PyTorch's Linear default, U(-1/sqrt(n), 1/sqrt(n))."""
    out = {}
    for t in arch.tensors:
        fan_in = 2 if t.name == "L0.w" or t.name == "L0.b" else arch.width
        shape = (t.rows, t.cols) if t.cols else (t.rows,)
        u = torch.rand(shape, generator=gen) * 2 - 1
        if t.name == "L0.w":
            bound = 1.0 / fan_in
        elif t.role == "bias":
            bound = 0.0 if t.head is not None else 1.0 / math.sqrt(fan_in)
        else:
            bound = math.sqrt(6.0 / fan_in) / W0
        out[t.name] = u * bound
    return out


def forward(arch, p: dict[str, torch.Tensor], x: torch.Tensor, depth: int, width: int) -> torch.Tensor:
    """Effective tensors ``p`` (full supernet size), coordinates ``x`` (N, 2)
    -> (N, channels), without the +0.5 offset."""
    w = width
    h = torch.sin(torch.addmm(p["L0.b"][:w], x, p["L0.w"][:w].t()))
    for k in range(1, depth):
        h = torch.sin(torch.addmm(p[f"L{k}.b"][:w], h, p[f"L{k}.w"][:w, :w].t()))
    return torch.addmm(p[f"H{depth}.b"], h, p[f"H{depth}.w"][:, :w].t())
