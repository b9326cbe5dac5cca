"""Bilinear upsampling of a latent grid by whole factors, for the fit: the
forward of ``F.interpolate`` (half-pixel centres, as ``align_corners=False``;
the same floats), with a backward that is its transpose computed block by
block instead of torch's CPU ``upsample_bilinear2d_backward``.

With an output of ``s`` times the input along an axis, output ``k s + r`` reads
input ``k`` with weight ``1 - |u_r|`` and one neighbour with weight ``|u_r|``,
``u_r = (r + 1/2) / s - 1/2`` (the left one where ``u_r < 0``, the right one
where it is positive; past an edge the edge itself, where the clamped source
index puts all the weight). The transpose therefore sums each block of ``s``
gradients three ways, one small product per axis, and adds the neighbours'
shares. Levels 1-6 of a 768x512 fit, forward and backward with one thread:
22.7 ms with torch's backward, 10.6 ms with this one
(``benchmarks/step_parts.py``, issue 8's sixteenth round).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


def upsample(y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Grid ``y`` (h, w) upsampled bilinearly to ``size``; the block transpose as
    its backward where ``size`` is a whole multiple of the grid's on both axes."""
    (h, w), (height, width) = y.shape, size
    if y.requires_grad and torch.is_grad_enabled() and height % h == 0 and width % w == 0:
        return _Upsample.apply(y, size)
    return F.interpolate(y[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


@functools.lru_cache(maxsize=32)
def _shares(s: int, device: torch.device) -> torch.Tensor:
    """(3, s): the weight of output ``r`` of a block on its own input, on the
    left neighbour and on the right one."""
    u = (torch.arange(s, dtype=torch.float64) + 0.5) / s - 0.5
    return torch.stack([1 - u.abs(), (-u).clamp(min=0), u.clamp(min=0)]).to(device=device, dtype=torch.float32)


def _fold(parts: torch.Tensor, dim: int) -> torch.Tensor:
    """Sum the three shares (``parts``: own, left, right along ``dim + 1``)
    onto the input positions along ``dim``: a block's left share goes to the
    input before it, its right share to the one after, and at the edges to
    the edge itself."""
    own, left, right = parts.unbind(dim + 1)
    out = own.clone()
    n = own.shape[dim]
    out.narrow(dim, 0, n - 1).add_(left.narrow(dim, 1, n - 1))
    out.narrow(dim, 0, 1).add_(left.narrow(dim, 0, 1))
    out.narrow(dim, 1, n - 1).add_(right.narrow(dim, 0, n - 1))
    out.narrow(dim, n - 1, 1).add_(right.narrow(dim, n - 1, 1))
    return out


class _Upsample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, size):
        ctx.grid = tuple(y.shape)
        return F.interpolate(y[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]

    @staticmethod
    def backward(ctx, grad):
        h, w = ctx.grid
        height, width = grad.shape
        sh, sw = height // h, width // w
        grad = grad.float().contiguous()
        # columns: (height, w, sw) blocks -> (height, w, 3) shares -> (height, w)
        cols = _fold(grad.view(height, w, sw) @ _shares(sw, grad.device).t(), 1)
        # rows: (h, sh, w) blocks -> (h, 3, w) shares -> (h, w)
        rows = _fold(torch.matmul(_shares(sh, grad.device), cols.view(h, sh, w)), 0)
        return rows, None
