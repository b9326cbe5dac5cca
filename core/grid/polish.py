"""The synthesis's output layer re-chosen in integers after the fit.

The output layer is linear in what it sees (the last hidden layer and the
latents), so with everything before it fixed the distortion is a quadratic in
its integers: ``|F^T (s q) + s_b q_b - t|^2`` per output channel, with ``F`` the
(features, pixels) inputs, ``s`` and ``s_b`` the LSQ steps. Coordinate descent on
the integers (each move to the best integer along one coordinate, within the
format's range) finds a better point than the training's straight-through
rounding left, for the cost of one pass over the pixels.
"""
from __future__ import annotations

import numpy as np
import torch

from ..lsq import quantized_layers
from .arch import hidden_planes

#: passes of coordinate descent over the output layer's integers (it stops earlier
#: when a pass moves nothing)
POLISH_PASSES = 8
#: pixels per block of the float64 products (bounds their memory)
BLOCK = 1 << 16


@torch.no_grad()
def output_features(grids, layers, size) -> torch.Tensor:
    """(features + 1, pixels): what the output layer sees, and a row of ones for its bias."""
    x, x0 = hidden_planes(grids, layers, size)
    if layers[-1][0].shape[1] != x.shape[0]:  # the skip path: [hidden, latents]
        x = torch.cat([x, x0])
    return torch.cat([x, torch.ones_like(x[:1])])


@torch.no_grad()
def normal_equations(feats: torch.Tensor, target: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``F F^T`` (features, features) and ``F t^T`` (features, channels) in float64,
    summed over blocks of pixels; ``target`` (channels, pixels)."""
    gram = torch.zeros((feats.shape[0],) * 2, dtype=torch.float64, device=feats.device)
    cross = torch.zeros((feats.shape[0], target.shape[0]), dtype=torch.float64, device=feats.device)
    for p0 in range(0, feats.shape[1], BLOCK):
        f = feats[:, p0 : p0 + BLOCK].double()
        gram += f @ f.T
        cross += f @ target[:, p0 : p0 + BLOCK].double().T
    return gram.cpu().numpy(), cross.cpu().numpy()


def polish_integers(gram: np.ndarray, cross: np.ndarray, q: np.ndarray, steps: np.ndarray,
                    lo: np.ndarray, hi: np.ndarray, passes: int = POLISH_PASSES) -> tuple[np.ndarray, float]:
    """Integers ``q`` (n,) lowering ``x^T G x - 2 c^T x`` with ``x = steps * q``,
    each within ``lo..hi``; returns them and the change of the objective (<= 0).

    ``gram``: (n, n) ``G``; ``cross``: (n,) ``c``.
    """
    q = q.astype(np.int64).copy()
    x = steps * q
    r = gram @ x - cross  # half the gradient
    change = 0.0
    for _ in range(passes):
        moved = False
        for j in range(len(q)):
            curv = steps[j] ** 2 * gram[j, j]
            if curv <= 0:
                continue
            target = int(np.clip(np.rint(q[j] - steps[j] * r[j] / curv), lo[j], hi[j]))
            d = target - q[j]
            if d == 0:
                continue
            delta = d * steps[j]
            df = 2 * delta * r[j] + delta * delta * gram[j, j]
            if df >= 0:
                continue
            q[j] = target
            r += delta * gram[:, j]
            change += df
            moved = True
        if not moved:
            break
    return q, change


@torch.no_grad()
def polish_output(grids, layers, quant, target, size) -> float:
    """Re-choose the output layer's weight and bias integers (in place, in
    ``layers``' float weights, which then quantize to them) where that lowers
    the float32 render's distortion against ``target`` (C, H, W); returns the MSE
    change (0 when the render did not improve, and nothing is changed)."""
    qlayers = quantized_layers(layers, quant)
    feats = output_features(grids, qlayers, size)
    # the render is the output layer's result + 0.5
    goal = target.reshape(target.shape[0], -1) - 0.5
    before = _output_mse(*qlayers[-1], feats, goal)
    gram, cross = normal_equations(feats, goal)
    (w, b), (qw, qb) = layers[-1], quant[-1]
    wq, ws = qw.integers(w)
    bq, bs = qb.integers(b)
    n = w.shape[1]
    steps = np.array([ws] * n + [bs], dtype=np.float64)
    lo = np.array([-qw.qn] * n + [-qb.qn])
    hi = np.array([qw.qp] * n + [qb.qp])
    new_w, new_b = wq.cpu().numpy().copy(), bq.cpu().numpy().copy()
    for c in range(w.shape[0]):
        q = np.concatenate([new_w[c], new_b[c : c + 1]])
        q, _ = polish_integers(gram, cross[:, c], q, steps, lo, hi)
        new_w[c], new_b[c] = q[:n], q[n]
    old = w.clone(), b.clone()
    w.copy_(torch.from_numpy(new_w).to(w) * ws)
    b.copy_(torch.from_numpy(new_b).to(b) * bs)
    after = _output_mse(qw(w), qb(b), feats, goal)
    if after >= before:
        w.copy_(old[0])
        b.copy_(old[1])
        return 0.0
    return after - before


def _output_mse(w, b, feats, goal) -> float:
    """The render's MSE with output layer ``(w, b)`` on ``feats`` (:func:`output_features`),
    against ``goal`` (the target less the render's 0.5 offset, (channels, pixels))."""
    out = torch.cat([w, b[:, None]], dim=1) @ feats
    return torch.mean((out - goal) ** 2).item()
