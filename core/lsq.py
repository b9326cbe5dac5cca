"""Learned Step size Quantization (LSQ, Esser et al. 2020; used by the ANI
paper, ``shared/papers/000``) for network weights.

For a tensor ``w`` with a learned step ``s`` and signed ``bits``::

    q     = clamp(round(w / s), -Qn, Qp),   Qn = 2**(bits-1), Qp = 2**(bits-1) - 1
    w_hat = q * s

Rounding passes gradients straight through; the step's gradient is scaled by
``g = 1 / sqrt(numel(w) * Qp)``, the LSQ gradient scale.
"""
from __future__ import annotations

import math

import torch


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def _grad_scale(x: torch.Tensor, g: float) -> torch.Tensor:
    return (x - x * g).detach() + x * g


class LSQ(torch.nn.Module):
    """A per-tensor LSQ quantizer; call :meth:`init_from` before use."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits
        self.qn = 2 ** (bits - 1)
        self.qp = 2 ** (bits - 1) - 1
        self.step = torch.nn.Parameter(torch.tensor(1.0))
        self.enabled = False

    @torch.no_grad()
    def init_from(self, w: torch.Tensor) -> None:
        """LSQ's initial step ``2 mean|w| / sqrt(Qp)``."""
        self.step.fill_(max(2 * w.abs().mean().item() / math.sqrt(max(self.qp, 1)), 1e-8))
        self.enabled = True

    @torch.no_grad()
    def init_mse(self, w: torch.Tensor, candidates: int = 64) -> None:
        """The step with the smallest quantization error ``|w - q s|^2`` among
        ``s = f * max|w| / Qp``, ``f`` in ``(0, 1]`` (``candidates`` values).
        LSQ's ``2 mean|w| / sqrt(Qp)`` suits 2-4 bits and bell-shaped weights;
        at 8 bits it spans about 22 mean|w|, far wider than the weights of a
        trained coordinate MLP, which then lose several dB."""
        top = float(w.abs().max())
        if top == 0:
            self.step.fill_(1e-8)
        else:
            best, best_err = top / max(self.qp, 1), float("inf")
            for k in range(1, candidates + 1):
                s = top / max(self.qp, 1) * k / candidates
                err = float(((torch.clamp(torch.round(w / s), -self.qn, self.qp) * s - w) ** 2).sum())
                if err < best_err:
                    best, best_err = s, err
            self.step.fill_(best)
        self.enabled = True

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return w
        s = _grad_scale(self.step.abs() + 1e-12, 1.0 / math.sqrt(w.numel() * max(self.qp, 1)))
        return _round_ste(torch.clamp(w / s, -self.qn, self.qp)) * s

    @torch.no_grad()
    def integers(self, w: torch.Tensor) -> tuple["torch.Tensor", float]:
        """The stored integers and the step as float32."""
        s = float(torch.tensor(self.step.abs().item() + 1e-12, dtype=torch.float32))
        q = torch.clamp(torch.round(w / s), -self.qn, self.qp).to(torch.int64)
        return q, s


def quantized_layers(layers, quant):
    """``[(w_hat, b_hat), ...]``: each layer's weights and bias through its pair of quantizers."""
    return [(qw(w), qb(b)) for (w, b), (qw, qb) in zip(layers, quant)]
