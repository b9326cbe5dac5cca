"""SOAP: Adam run in the eigenbasis of a Shampoo preconditioner, for the
synthesis weight matrices (Vyas et al., "SOAP: Improving and Stabilizing
Shampoo using Adam", arXiv 2409.11321; Cool-chic 5 trains its networks with
it). For a weight ``W`` (out, in) with gradient ``G`` it keeps running
averages ``L = E[G G^T]`` and ``R = E[G^T G]``, whose eigenvectors ``Q_L``,
``Q_R`` (recomputed every ``every`` steps) rotate the gradient into a basis
where Adam's per-coordinate scaling fits the curvature better:

    m <- b1 m + (1 - b1) G                     (first moment, weight basis)
    v <- b2 v + (1 - b2) (Q_L^T G Q_R)^2       (second moment, rotated basis)
    W <- W - lr Q_L [(Q_L^T m Q_R) / (sqrt(v) + eps)] Q_R^T   (bias-corrected)

The matrices here are at most 64 x 64, so a full eigendecomposition costs
next to nothing against a step of the fit. On CUDA ``torch.linalg.eigh``
checks its result on the host (a synchronisation), so there the bases are
refreshed instead by one step of orthogonal iteration, ``Q <- qr(L Q)`` with
the columns first ordered by their estimated eigenvalues (SOAP's own refresh),
which synchronises nothing (``refresh="qr"``).
"""
from __future__ import annotations

import torch


class Soap(torch.optim.Optimizer):
    def __init__(self, params, lr: float, betas=(0.95, 0.95), shampoo_beta: float = 0.95,
                 eps: float = 1e-8, every: int = 10, refresh: str = "auto"):
        if refresh not in ("auto", "eigh", "qr"):
            raise ValueError(f"refresh must be 'auto', 'eigh' or 'qr', not {refresh!r}")
        super().__init__(params, dict(lr=lr, betas=betas, shampoo_beta=shampoo_beta, eps=eps, every=every,
                                      refresh=refresh))

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ARG002 - the Optimizer signature
        for group in self.param_groups:
            b1, b2 = group["betas"]
            sb, eps, every = group["shampoo_beta"], group["eps"], group["every"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                st = self.state[p]
                if not st:
                    st["t"] = 0
                    st["m"] = torch.zeros_like(p)
                    st["v"] = torch.zeros_like(p)
                    st["L"] = torch.zeros((p.shape[0], p.shape[0]), device=p.device, dtype=p.dtype)
                    st["R"] = torch.zeros((p.shape[1], p.shape[1]), device=p.device, dtype=p.dtype)
                st["t"] += 1
                t = st["t"]
                st["L"].mul_(sb).addmm_(g, g.t(), alpha=1 - sb)
                st["R"].mul_(sb).addmm_(g.t(), g, alpha=1 - sb)
                if t == 1 or (t - 1) % every == 0:
                    mode = group["refresh"]
                    if mode == "auto":
                        mode = "qr" if p.is_cuda else "eigh"
                    if mode == "eigh":
                        st["QL"] = _eigvecs(st["L"])
                        st["QR"] = _eigvecs(st["R"])
                    elif t == 1:
                        st["QL"] = torch.linalg.qr(st["L"])[0]
                        st["QR"] = torch.linalg.qr(st["R"])[0]
                    else:
                        st["QL"] = _orthogonal_iteration(st["L"], st["QL"], st["v"], 0)
                        st["QR"] = _orthogonal_iteration(st["R"], st["QR"], st["v"], 1)
                ql, qr = st["QL"], st["QR"]
                st["m"].mul_(b1).add_(g, alpha=1 - b1)
                st["v"].mul_(b2).addcmul_(g_rot := ql.t() @ g @ qr, g_rot, value=1 - b2)
                m_rot = ql.t() @ st["m"] @ qr
                denom = (st["v"] / (1 - b2**t)).sqrt_().add_(eps)
                p.sub_(ql @ (m_rot / denom) @ qr.t(), alpha=group["lr"] / (1 - b1**t))
        return None


def _eigvecs(a: torch.Tensor) -> torch.Tensor:
    """Eigenvectors of the symmetric ``a`` (columns), with a small ridge so
    that a zero matrix gives the identity basis."""
    eye = torch.eye(a.shape[0], device=a.device, dtype=a.dtype)
    return torch.linalg.eigh(a + 1e-12 * eye)[1]


def _orthogonal_iteration(a: torch.Tensor, q: torch.Tensor, v: torch.Tensor, dim: int) -> torch.Tensor:
    """One step of orthogonal iteration towards the eigenvectors of ``a`` from
    the basis ``q``: its columns ordered by their estimated eigenvalues
    (largest first; ``v``'s entries along ``dim`` are reordered in place to
    stay with them), then ``qr(a q)``."""
    order = torch.argsort(torch.diagonal(q.t() @ a @ q), descending=True)
    q = q.index_select(1, order)
    v.copy_(v.index_select(dim, order))
    return torch.linalg.qr(a @ q)[0]
