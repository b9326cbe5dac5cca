"""The fit's synthesis on the CPU, a block of pixels at a time.

The synthesis is a small MLP applied to every pixel: (levels, pixels) in,
hidden layers of a few dozen rows, (channels, pixels) out, with the output
layer also reading the latents (:func:`core.grid.arch.synthesize_planes`).
As whole-image products each layer's output, 24 x 393,216 floats for a
768x512 image, goes to memory and comes back for the next layer, the ReLU and
every step of the backward; the products themselves are too thin to keep the
cores busy. Here the pixels are taken ``CHUNK`` at a time: one block's layers
stay in the cache from the first product to the last, and the backward
recomputes a block's hidden layers instead of storing them (only the input
is kept), so nothing of the image's size but the input, the output and their
gradients is ever written.

The floats are those of the whole-image products up to rounding: each
block's weight gradients are summed in a fixed order, so the result does not
depend on the thread count either.
"""
from __future__ import annotations

import torch

#: pixels per block: 24 hidden rows of 8192 float32 pixels are 768 KiB, which
#: stays in a core's L2 cache with the block's input and gradients
CHUNK = 8192


def chunked_planes(x0: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]],
                   dtype: torch.dtype | None = None) -> torch.Tensor:
    """(channels, pixels) of the MLP ``layers`` on the columns of ``x0``
    (levels, pixels): hidden layers with ReLU, then the output layer, which
    also reads ``x0`` when its weight has more columns than the last hidden
    layer's rows. ``dtype``: of the products (default: ``x0``'s); the
    gradients come back in the inputs' dtypes."""
    params = [t for layer in layers for t in layer]
    return _Chunked.apply(x0, dtype or x0.dtype, *params)


def _pairs(params):
    return [(params[i], params[i + 1]) for i in range(0, len(params), 2)]


def _hidden(xc, layers):
    """The hidden layers of one block (the block itself first)."""
    hs = [xc]
    for w, b in layers[:-1]:
        hs.append(torch.addmm(b[:, None], w, hs[-1]).relu_())
    return hs


class _Chunked(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x0, dtype, *params):
        with torch.autocast("cpu", enabled=False):
            layers = [(w.to(dtype), b.to(dtype)) for w, b in _pairs(params)]
            x = x0.to(dtype)
            w, b = layers[-1]
            skip = len(layers) > 1 and w.shape[1] != layers[-2][0].shape[0]
            hid = w.shape[1] - x.shape[0] if skip else w.shape[1]
            out = x.new_empty((w.shape[0], x.shape[1]))
            for start in range(0, x.shape[1], CHUNK):
                xc = x[:, start : start + CHUNK]
                o = torch.addmm(b[:, None], w[:, :hid], _hidden(xc, layers)[-1])
                out[:, start : start + CHUNK] = o.addmm_(w[:, hid:], xc) if skip else o
        ctx.save_for_backward(x0, *params)
        ctx.dtype, ctx.skip, ctx.hid = dtype, skip, hid
        return out

    @staticmethod
    def backward(ctx, grad):
        x0, *params = ctx.saved_tensors
        dtype, skip, hid = ctx.dtype, ctx.skip, ctx.hid
        with torch.autocast("cpu", enabled=False):
            layers = [(w.to(dtype), b.to(dtype)) for w, b in _pairs(params)]
            x, grad = x0.to(dtype), grad.to(dtype)
            # the weight gradients are summed over the blocks in float32
            sums = [(w.new_zeros(w.shape, dtype=torch.float32), b.new_zeros(b.shape, dtype=torch.float32))
                    for w, b in layers]
            gx0 = torch.empty_like(x0)
            w_out = layers[-1][0]
            for start in range(0, x.shape[1], CHUNK):
                xc = x[:, start : start + CHUNK]
                hs = _hidden(xc, layers)
                g = grad[:, start : start + CHUNK]
                dw, db = sums[-1]
                dw[:, :hid] += g @ hs[-1].t()
                if skip:
                    dw[:, hid:] += g @ xc.t()
                db += g.sum(1, dtype=torch.float32)
                gh = w_out[:, :hid].t() @ g
                for i in range(len(layers) - 2, -1, -1):
                    gh = torch.ops.aten.threshold_backward(gh, hs[i + 1], 0)
                    sums[i][0].add_(gh @ hs[i].t())
                    sums[i][1].add_(gh.sum(1, dtype=torch.float32))
                    gh = layers[i][0].t() @ gh
                gx0[:, start : start + CHUNK] = gh.addmm_(w_out[:, hid:].t(), g) if skip else gh
        grads = []
        for (dw, db), (w, b) in zip(sums, _pairs(params)):
            grads += [dw.to(w.dtype), db.to(b.dtype)]
        return (gx0, None, *grads)
