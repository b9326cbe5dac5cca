"""Architecture of a grid neural image: its configuration, how it is stored,
and the synthesis forward pass shared by fitting and decoding."""
from __future__ import annotations

import functools
import math
import struct
from dataclasses import dataclass

from ..errors import AniFormatError

MAX_LEVELS = 12
MAX_WIDTH = 64
MAX_LAYERS = 4


@dataclass(frozen=True)
class GridArch:
    """Shape of a grid model.

    Attributes:
        levels: number of latent grids; level ``l`` has
            ``ceil(H / 2**l) x ceil(W / 2**l)`` integer latents.
        widths: hidden widths of the synthesis MLP (1x1 layers, ReLU). The
            output layer sees the last hidden layer *and* the latents (a
            linear skip path, as Cool-chic 5's "stabiliser"): it measured
            about 40 % fewer bits at equal PSNR at a few hundred steps.
        channels: output channels (1..4).
    """

    levels: int
    widths: tuple[int, ...]
    channels: int

    def grid_shapes(self, height: int, width: int) -> list[tuple[int, int]]:
        return [(math.ceil(height / 2**l), math.ceil(width / 2**l)) for l in range(self.levels)]

    def layer_shapes(self) -> list[tuple[int, int]]:
        """(out, in) of every synthesis layer."""
        dims = [self.levels, *self.widths, self.channels]
        shapes = [(dims[i + 1], dims[i]) for i in range(len(dims) - 1)]
        if self.widths:  # the output layer also sees the latents: a linear skip path
            shapes[-1] = (self.channels, self.widths[-1] + self.levels)
        return shapes

    def n_latents(self, height: int, width: int) -> int:
        return sum(h * w for h, w in self.grid_shapes(height, width))

    def n_weights(self) -> int:
        return sum(o * i + o for o, i in self.layer_shapes())

    def pack(self) -> bytes:
        return struct.pack(f"<BBB{len(self.widths)}B", self.levels, self.channels, len(self.widths), *self.widths)

    @classmethod
    def unpack(cls, data: bytes, offset: int = 0) -> tuple["GridArch", int]:
        try:
            levels, channels, n = struct.unpack_from("<BBB", data, offset)
            widths = struct.unpack_from(f"<{n}B", data, offset + 3)
        except struct.error:
            raise AniFormatError("corrupt .ani model section: architecture truncated") from None
        if not (1 <= levels <= MAX_LEVELS and 1 <= channels <= 4 and n <= MAX_LAYERS):
            raise AniFormatError(f"corrupt .ani model section: levels={levels} channels={channels} layers={n}")
        if any(not 1 <= w <= MAX_WIDTH for w in widths):
            raise AniFormatError(f"corrupt .ani model section: hidden widths {widths}")
        return cls(levels, tuple(widths), channels), offset + 3 + n


def default_levels(height: int, width: int, max_levels: int = 7) -> int:
    """Levels down to a coarsest grid of about 8 latents per side (at most ``max_levels``)."""
    levels = 1
    while levels < max_levels and min(height, width) / 2**levels >= 8:
        levels += 1
    return levels


#: images of at most this many rows are rendered at once, taller ones in blocks
WHOLE_ROWS = 128
#: rows per block (128 until issue 8's eleventh round: a 768x512 render took about
#: half the time in blocks of 32, whose activations stay in the CPU's caches, with
#: the same floats; each block's values do not depend on the block size)
ROW_BLOCK = 32
#: rows of a tall render whose latents are upsampled at once (rounded down to whole
#: ``ROW_BLOCK``s; 128 x 768 pixels x 7 levels is 2.6 MiB of float32)
BAND_ROWS = 128


def synthesize(latents, layers, size, row_block: int = ROW_BLOCK, whole_rows: int = WHOLE_ROWS,
               band_rows: int = BAND_ROWS):
    """Render the network at ``size = (height, width)``.

    Args:
        latents: list of tensors (h_l, w_l), level 0 finest (floats or ints).
        layers: list of (weight (out, in), bias (out,)) tensors.
        size: output (height, width).

    Each grid is upsampled bilinearly (half-pixel centres, as
    ``align_corners=False``) to the output grid, the values are stacked per
    pixel and passed through the MLP; the output is offset by 0.5 so that an
    all-zero network renders mid-grey. Images of more than ``whole_rows`` rows
    are processed in blocks of ``row_block`` rows, which keeps the activations
    in cache, their latents upsampled ``band_rows`` rows at a time, which
    bounds the memory of large renders.
    """
    import torch

    height, width = size
    if height <= whole_rows:  # whole image at once
        x = torch.stack([_upsample(y, size) for y in latents], dim=-1).reshape(-1, len(latents))
        return (_mlp(x, layers) + 0.5).reshape(height, width, -1)
    outs = []
    cols = [_lerp_index(w.shape[1], width, latents[0].device) for w in latents]
    dtype = functools.reduce(torch.promote_types, [y.dtype for y in latents], torch.float32)
    band_rows = max(1, band_rows // row_block) * row_block  # whole blocks: the blocks of a render without bands
    for b0 in range(0, height, band_rows):
        # the band's upsampled latents, written in place into one (pixels, levels)
        # matrix: the values of per-block upsampling and stacking, in fewer and
        # larger operations; with _lerp_2d's index_select, a Kodak render took 35-53
        # ms instead of 60-89 with 1 thread (benchmarks/decode_parts.py, issue 8's
        # 24th round)
        b1 = min(height, b0 + band_rows)
        x = torch.empty((b1 - b0, width, len(latents)), dtype=dtype, device=latents[0].device)
        for level, (y, c) in enumerate(zip(latents, cols)):
            if tuple(y.shape) == (height, width):  # what the interpolation gives: y * 1 + y * 0
                x[:, :, level] = y[b0:b1]
            else:
                x[:, :, level] = _lerp_2d(y, _lerp_index(y.shape[0], height, y.device, b0, b1), c)
        x = x.view(-1, len(latents))
        for r0 in range(b0, b1, row_block):
            r1 = min(b1, r0 + row_block)
            outs.append((_mlp(x[(r0 - b0) * width : (r1 - b0) * width], layers) + 0.5).reshape(r1 - r0, width, -1))
    return torch.cat(outs, dim=0)


class LevelMaps:
    """Every latent grid upsampled to the output size and kept, for encoders
    that render many times with one level changed at a time (the rounding
    refinement, :mod:`core.grid.rdo`): each render upsamples only the changed
    level. Renders the same floats as :func:`synthesize`, in the same blocks.
    """

    def __init__(self, latents, size, row_block: int = ROW_BLOCK, whole_rows: int = WHOLE_ROWS):
        self.size, self.row_block = size, row_block
        self.whole = size[0] <= whole_rows
        self.maps = [self.upsample(y) for y in latents]

    def set(self, level: int, grid) -> None:
        """Keep ``grid`` as ``level``'s from now on."""
        self.maps[level] = self.upsample(grid)

    def upsample(self, y):
        """Grid ``y`` at the output size, as :func:`synthesize` computes it."""
        if self.whole:
            up = _upsample(y, self.size)
            return up.clone() if up is y else up  # not a view of the caller's latents
        height, width = self.size
        return _lerp_2d(y, _lerp_index(y.shape[0], height, y.device), _lerp_index(y.shape[1], width, y.device))

    def render(self, layers, level: int | None = None, grid=None):
        """(H, W, C) image of the kept grids, with ``level``'s replaced by ``grid`` if given."""
        import torch

        maps = list(self.maps)
        if level is not None:
            maps[level] = self.upsample(grid)
        height, width = self.size
        if self.whole:
            x = torch.stack(maps, dim=-1).reshape(-1, len(maps))
            return (_mlp(x, layers) + 0.5).reshape(height, width, -1)
        outs = []
        for r0 in range(0, height, self.row_block):
            r1 = min(height, r0 + self.row_block)
            x = torch.stack([m[r0:r1] for m in maps], dim=-1).reshape(-1, len(maps))
            outs.append((_mlp(x, layers) + 0.5).reshape(r1 - r0, width, -1))
        return torch.cat(outs, dim=0)


def _lerp_2d(y, rows, cols):
    """Grid ``y`` interpolated at the rows and columns of two :func:`_lerp_index` results."""
    (i0, i1, rt), (c0, c1, ct) = rows, cols
    # index_select: the gathers of y[i0] and r[:, c0], about 4 times faster on the CPU
    r = y.index_select(0, i0) * (1 - rt)[:, None] + y.index_select(0, i1) * rt[:, None]
    return r.index_select(1, c0) * (1 - ct) + r.index_select(1, c1) * ct


def synthesize_planes(latents, layers, size):
    """The whole image as (C, height, width) planes, for fitting: the values of
    :func:`synthesize` up to float rounding, computed with the pixels as the
    columns of one (levels, pixels) matrix, which spares two copies of the
    per-pixel features (forward and backward about 30 % faster on the CPU)."""
    import torch

    height, width = size
    x, x0 = hidden_planes(latents, layers, size)
    w, b = layers[-1]
    if w.shape[1] != x.shape[0]:  # the skip path: [hidden, latents]
        x = torch.addmm(b[:, None], w[:, : x.shape[0]], x) + w[:, x.shape[0] :] @ x0
    else:
        x = torch.addmm(b[:, None], w, x)
    return (x + 0.5).reshape(-1, height, width)


def hidden_planes(latents, layers, size):
    """What :func:`synthesize_planes`'s output layer sees: the last hidden layer
    (hidden, pixels) and the upsampled latents (levels, pixels) of its skip path
    (the same tensor when there are no hidden layers)."""
    import torch

    x0 = x = torch.stack([_upsample(y, size) for y in latents]).reshape(len(latents), -1)
    for w, b in layers[:-1]:
        x = torch.relu_(torch.addmm(b[:, None], w, x))  # in place: addmm keeps no output for its backward
    return x, x0


def _upsample(y, size):
    """Grid ``y`` upsampled bilinearly to ``size`` (half-pixel centres, as
    ``align_corners=False``); on CUDA as two products with interpolation
    matrices: the same values, and a backward without the atomic adds of
    ``upsample_bilinear2d``'s (not deterministic); on the CPU with the block
    transpose of :mod:`.upsample` as the backward where the factors are whole."""
    if tuple(y.shape) == tuple(size):
        return y
    if y.is_cuda:
        return _lerp_matrix(size[0], y.shape[0], y.device) @ y @ _lerp_matrix(size[1], y.shape[1], y.device).t()
    from .upsample import upsample

    return upsample(y, size)


#: pixels per matrix of the decoder's batched products (see :func:`_mlp`)
MLP_CHUNK = 64


def _mlp(x, layers):
    """The MLP on (pixels, features) rows, as batched products of ``MLP_CHUNK`` rows
    each: every chunk is one small matrix product of the same shape, computed
    whole by one thread, so the floats do not depend on torch's thread count (one
    large product is split across threads at row boundaries that move with it,
    and rows near a boundary could round differently: one pixel in 560,000 of a
    1000x140 render differed by a level between 1 and 3 threads, issue 8's
    fourteenth round). On the Kodak files measured it gives the floats of one
    large product exactly, at the same speed."""
    import torch

    n = x.shape[0]
    pad = (-n) % MLP_CHUNK
    if pad:
        x = torch.cat([x, x.new_zeros(pad, x.shape[1])])
    x0 = x = x.reshape(-1, MLP_CHUNK, x.shape[1])
    for k, (w, b) in enumerate(layers):
        if k == len(layers) - 1 and w.shape[1] != x.shape[2]:
            x = torch.cat([x, x0], dim=2)
        x = torch.baddbmm(b.expand(x.shape[0], 1, -1), x, w.t().expand(x.shape[0], -1, -1))
        if k < len(layers) - 1:
            x = torch.relu(x)
    return x.reshape(-1, x.shape[2])[:n]


def _lerp_index(n_in: int, n_out: int, device, start: int = 0, stop: int | None = None):
    import torch

    stop = n_out if stop is None else stop
    dst = torch.arange(start, stop, device=device, dtype=torch.float64)
    src = ((dst + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    t = (src - i0).to(torch.float32)
    return i0, i1, t


@functools.lru_cache(maxsize=64)
def _lerp_matrix(n_out: int, n_in: int, device):
    """(n_out, n_in) matrix of the bilinear weights along one axis (as :func:`_lerp_index`)."""
    import torch

    i0, i1, t = _lerp_index(n_in, n_out, "cpu")
    m = torch.zeros((n_out, n_in))
    rows = torch.arange(n_out)
    m.index_put_((rows, i0), 1 - t, accumulate=True)
    m.index_put_((rows, i1), t, accumulate=True)
    return m.to(device)
