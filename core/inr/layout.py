"""Layout of coordinate-MLP neural images (``siren`` and ``mfn``): the
tensors of a Once-for-All supernet, which slice of each a sub-network uses,
the order in which sub-networks are stored, and the ``NETA`` section.

Pure Python and numpy (no torch): ``ani info`` and ``read_header`` use it.

A supernet has elastic depths ``depths`` (increasing, max ``D``) and elastic
widths ``widths`` (increasing, max ``W``), as in Once-for-All (Cai et al.
2020) used by the ANI paper (``shared/papers/000``). Sub-network ``(d, w)``
runs the first ``d`` layers, keeps the first ``w`` neurons of every hidden
layer (the top-left ``w x w`` block of each weight matrix) and ends in the
output head of depth ``d`` (one small head per depth). Sub-networks are
stored smallest first, each *chunk* holding only the parameters that no
earlier sub-network used, so a file prefix that ends after chunk ``k``
holds sub-networks ``0..k`` complete (``docs/format.md``, section 9).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..errors import AniFormatError

TAG_ARCH = b"NETA"
#: chunk ``k`` is stored in section ``NP`` + two decimal digits
CHUNK_PREFIX = b"NP"

KIND_SIREN, KIND_FOURIER, KIND_GABOR = 0, 1, 2
KIND_NAMES = {KIND_SIREN: "siren", KIND_FOURIER: "mfn-fourier", KIND_GABOR: "mfn-gabor"}

MAX_DEPTH = 8
MAX_WIDTH = 255
MAX_CHOICES = 8
MAX_SUBNETS = 32
#: elastic depths start here (the paper: sub-networks of fewer than 2 layers fail)
MIN_ELASTIC_DEPTH = 2
#: elastic widths are W * k / WIDTH_STEPS, k = 1..WIDTH_STEPS
WIDTH_STEPS = 4
MAX_PARAM_BITS = 12

ROLES = ("first", "hidden", "last", "bias")
_NETA_HEAD = struct.Struct("<BB")


def chunk_tag(k: int) -> bytes:
    return CHUNK_PREFIX + b"%02d" % k


def elastic_choices(depth: int, width: int, elastic: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Depth and width choices of a supernet of ``(depth, width)``.

    ``elastic`` is ``depth+width``, ``depth``, ``width`` or ``none``. Depths
    run from ``min(MIN_ELASTIC_DEPTH, depth)`` to ``depth``; widths are
    ``width * k / 4``, ``k = 1..4`` (``width`` a multiple of 4).
    """
    depths = tuple(range(min(MIN_ELASTIC_DEPTH, depth), depth + 1)) if "depth" in elastic else (depth,)
    widths = tuple(width * k // WIDTH_STEPS for k in range(1, WIDTH_STEPS + 1)) if "width" in elastic else (width,)
    return depths, widths


@dataclass(frozen=True)
class TensorSpec:
    """One parameter tensor of the supernet at its full size.

    ``rows x cols`` (``cols == 0``: a vector). A sub-network of width ``w``
    uses ``rows[:w]`` if ``rows_elastic`` and ``cols[:w]`` if ``cols_elastic``;
    trunk tensors of ``layer`` serve sub-networks of depth ``> layer``, a head
    only those of depth ``head``.
    """

    name: str
    rows: int
    cols: int
    role: str
    rows_elastic: bool
    cols_elastic: bool
    layer: int | None = None
    head: int | None = None

    @property
    def size(self) -> int:
        return self.rows * max(self.cols, 1)

    def used_by(self, depth: int) -> bool:
        return (self.layer is not None and self.layer < depth) or self.head == depth

    def dims(self, width: int) -> tuple[int, int]:
        """(rows, cols) of the slice a sub-network of ``width`` uses."""
        return (width if self.rows_elastic else self.rows, width if (self.cols_elastic and self.cols) else self.cols)


@dataclass(frozen=True)
class InrArch:
    """A stored supernet: family kind, output channels, elastic choices and
    the bit-widths of each parameter role (``hidden`` is the header's bits)."""

    kind: int
    channels: int
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    hidden_bits: int
    first_bits: int
    last_bits: int
    bias_bits: int

    @property
    def depth(self) -> int:
        return self.depths[-1]

    @property
    def width(self) -> int:
        return self.widths[-1]

    def bits_of(self, role: str) -> int:
        return {"first": self.first_bits, "hidden": self.hidden_bits, "last": self.last_bits, "bias": self.bias_bits}[role]

    @cached_property
    def tensors(self) -> tuple[TensorSpec, ...]:
        W, out = self.width, []
        for k in range(self.depth):
            if self.kind == KIND_SIREN:
                out.append(TensorSpec(f"L{k}.w", W, 2 if k == 0 else W, "first" if k == 0 else "hidden", True, k > 0, layer=k))
                out.append(TensorSpec(f"L{k}.b", W, 0, "bias", True, False, layer=k))
                continue
            out.append(TensorSpec(f"F{k}.w", W, 2, "first", True, False, layer=k))
            out.append(TensorSpec(f"F{k}.b", W, 0, "bias", True, False, layer=k))
            if self.kind == KIND_GABOR:
                out.append(TensorSpec(f"F{k}.mu", W, 2, "first", True, False, layer=k))
                out.append(TensorSpec(f"F{k}.g", W, 0, "first", True, False, layer=k))
            if k > 0:
                out.append(TensorSpec(f"L{k}.w", W, W, "hidden", True, True, layer=k))
                out.append(TensorSpec(f"L{k}.b", W, 0, "bias", True, False, layer=k))
        for d in self.depths:
            out.append(TensorSpec(f"H{d}.w", self.channels, W, "last", False, True, head=d))
            out.append(TensorSpec(f"H{d}.b", self.channels, 0, "bias", False, False, head=d))
        return tuple(out)

    def n_params(self) -> int:
        return sum(t.size for t in self.tensors)

    def subnet_params(self, depth: int, width: int) -> int:
        return sum(int(np.prod([v for v in t.dims(width) if v])) for t in self.tensors if t.used_by(depth))

    @cached_property
    def order(self) -> tuple[tuple[int, int], ...]:
        """Sub-networks in storage order: by parameter count, then depth, width."""
        subnets = [(d, w) for d in self.depths for w in self.widths]
        return tuple(sorted(subnets, key=lambda s: (self.subnet_params(*s), s)))

    def index_of(self, subnet: tuple[int, int]) -> int:
        try:
            return self.order.index(tuple(subnet))
        except ValueError:
            raise KeyError(subnet) from None

    @cached_property
    def pieces(self) -> tuple[tuple[tuple[int, np.ndarray], ...], ...]:
        """Per chunk, the ``(tensor index, flat positions)`` it stores, in
        coding order: tensors in :attr:`tensors` order, positions row-major
        over the full tensor; empty pieces are left out."""
        covered = [(0, 0)] * len(self.tensors)  # rows, cols covered so far (a top-left block)
        chunks = []
        for d, w in self.order:
            chunk = []
            for ti, t in enumerate(self.tensors):
                if not t.used_by(d):
                    continue
                r, c = t.dims(w)
                mr, mc = covered[ti]
                cols = max(t.cols, 1)
                rr, cc = np.meshgrid(np.arange(r), np.arange(max(c, 1)), indexing="ij")
                new = ~((rr < mr) & (cc < max(mc, 1))) if t.cols else (rr >= mr)
                pos = (rr * cols + cc)[new]
                if pos.size:
                    chunk.append((ti, pos.astype(np.int64)))
                covered[ti] = (max(mr, r), max(mc, c))
            chunks.append(tuple(chunk))
        return tuple(chunks)

    def named(self, name) -> tuple[int, int]:
        """``full`` (largest), ``medium`` or ``small`` (smallest) as ``(depth, width)``."""
        if name == "full":
            return (self.depth, self.width)
        if name == "small":
            return (self.depths[0], self.widths[0])
        if name == "medium":
            return (self.depths[(len(self.depths) - 1) // 2], self.widths[(len(self.widths) - 1) // 2])
        raise KeyError(name)

    def pack(self, steps: list[float]) -> bytes:
        head = [_NETA_HEAD.pack(self.kind, self.channels),
                struct.pack(f"<B{len(self.depths)}B", len(self.depths), *self.depths),
                struct.pack(f"<B{len(self.widths)}B", len(self.widths), *self.widths),
                struct.pack("<BBB", self.first_bits, self.last_bits, self.bias_bits),
                np.asarray(steps, dtype="<f4").tobytes()]
        return b"".join(head)

    @classmethod
    def unpack(cls, buf: bytes, hidden_bits: int, channels: int, n_params: int) -> tuple["InrArch", np.ndarray]:
        """Parse and check ``NETA``; returns the architecture and the steps."""
        try:
            kind, ch = _NETA_HEAD.unpack_from(buf, 0)
            pos = _NETA_HEAD.size
            lists = []
            for _ in range(2):
                (n,) = struct.unpack_from("<B", buf, pos)
                lists.append(struct.unpack_from(f"<{n}B", buf, pos + 1))
                pos += 1 + n
            first, last, bias = struct.unpack_from("<BBB", buf, pos)
            pos += 3
        except struct.error:
            raise AniFormatError("corrupt .ani network section: architecture truncated") from None
        depths, widths = lists
        if kind not in KIND_NAMES:
            raise AniFormatError(f"corrupt .ani network section: unknown network kind {kind}")
        if ch != channels:
            raise AniFormatError(f"corrupt .ani file: network outputs {ch} channels, header says {channels}")
        for what, values, hi in (("depths", depths, MAX_DEPTH), ("widths", widths, MAX_WIDTH)):
            ok = 1 <= len(values) <= MAX_CHOICES and all(1 <= v <= hi for v in values)
            if not ok or any(a >= b for a, b in zip(values, values[1:])):
                raise AniFormatError(f"corrupt .ani network section: {what} {list(values)}")
        if len(depths) * len(widths) > MAX_SUBNETS:
            raise AniFormatError(f"corrupt .ani network section: more than {MAX_SUBNETS} sub-networks")
        if not all(2 <= b <= MAX_PARAM_BITS for b in (first, last, bias)):
            raise AniFormatError(f"corrupt .ani network section: bit-widths {first}, {last}, {bias}")
        arch = cls(kind, ch, tuple(depths), tuple(widths), hidden_bits, first, last, bias)
        if arch.n_params() != n_params:
            raise AniFormatError(f"corrupt .ani file: header declares {n_params} parameters, network has {arch.n_params()}")
        n = len(arch.tensors)
        if len(buf) != pos + 4 * n:
            raise AniFormatError(f"corrupt .ani network section: {len(buf) - pos} bytes of steps, expected {4 * n}")
        steps = np.frombuffer(buf, dtype="<f4", count=n, offset=pos).astype(np.float32)
        if not np.all(np.isfinite(steps)):
            raise AniFormatError("corrupt .ani network section: a step is not finite")
        return arch, steps
