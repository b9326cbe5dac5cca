"""Decoding of siren/mfn images: sections -> integers -> sub-network -> pixels.

Also :func:`describe` (the sub-networks a file holds, for ``ani info``;
no torch) and :func:`extract` (cut one sub-network out of a supernet file
into a smaller file, without retraining).
"""
from __future__ import annotations

import importlib
import warnings

import numpy as np

from ..errors import AniFormatError, AniOptionError, AniTruncatedWarning
from .bitstream import check_tags, read_ints, slice_ints, write_sections
from .layout import KIND_NAMES, KIND_SIREN, TAG_ARCH, InrArch, chunk_tag

#: pixels per block when rendering (bounds memory: block * width floats per layer)
RENDER_BLOCK = 1 << 16


def net_module(kind: int):
    """The module with ``forward`` (and the fit's ``init_params``, ``gain``) of a kind."""
    return importlib.import_module("core.siren.net" if kind == KIND_SIREN else "core.mfn.net")


def load_arch(header, sections) -> tuple[InrArch, np.ndarray, int]:
    """(arch, steps, number of complete chunks); refuses what cannot decode."""
    if TAG_ARCH not in sections:
        if header.truncated:
            raise AniFormatError("truncated .ani file: it ends before any sub-network is complete "
                                 "(the NETA section is missing)")
        raise AniFormatError("corrupt .ani file: required section NETA missing")
    arch, steps = InrArch.unpack(sections[TAG_ARCH], header.bits, header.channels, header.n_params)
    n = check_tags(arch, sections, header.truncated)
    if n == 0:
        d, w = arch.order[0]
        raise AniFormatError(f"truncated .ani file: no sub-network is complete (the smallest, ({d}, {w}), "
                             f"needs section {chunk_tag(0).decode()}); only {header.file_size} bytes present")
    return arch, steps, n


def choose(arch: InrArch, complete: int, subnet) -> tuple[int, int]:
    """The sub-network to run: ``None`` = the largest complete one."""
    if subnet is None:
        return arch.order[complete - 1]
    if subnet == "all":
        raise AniOptionError("invalid option subnet='all': allowed full, medium, small or (depth, width) when "
                             "decoding (a decode runs one sub-network)")
    try:
        if isinstance(subnet, str):
            chosen = arch.named(subnet)
        else:
            chosen = tuple(int(v) for v in subnet)
            arch.index_of(chosen)
    except (KeyError, TypeError, ValueError):
        raise AniOptionError(f"invalid option subnet={subnet!r}: allowed full, medium, small or one of "
                             f"{list(arch.order)} (the sub-networks of this file)") from None
    if arch.index_of(chosen) >= complete:
        raise AniFormatError(f"truncated .ani file: sub-network {chosen} is not complete; the complete ones are "
                             f"{list(arch.order[:complete])}")
    return chosen


def tensors(arch: InrArch, ints: list[np.ndarray], steps) -> dict:
    """Effective float32 tensors ``float32(q) * step``."""
    import torch

    out = {}
    for t, q, s in zip(arch.tensors, ints, steps):
        shape = (t.rows, t.cols) if t.cols else (t.rows,)
        out[t.name] = torch.from_numpy(q.astype(np.float32).reshape(shape)) * torch.tensor(s, dtype=torch.float32)
    return out


def coords(n: int):
    """Pixel-centre coordinates ``(2 i + 1) / n - 1`` in float32."""
    import torch

    return torch.from_numpy(((2 * np.arange(n, dtype=np.float64) + 1) / n - 1).astype(np.float32))


def render(arch: InrArch, params: dict, subnet: tuple[int, int], size, device="cpu") -> np.ndarray:
    """Run sub-network ``subnet`` at ``size = (width, height)``; uint8 (H, W, C)."""
    import torch

    width, height = size
    forward = net_module(arch.kind).forward
    dev = torch.device(device)
    params = {k: v.to(dev) for k, v in params.items()}
    ys, xs = coords(height).to(dev), coords(width).to(dev)
    rows = max(1, RENDER_BLOCK // width)
    out = []
    with torch.no_grad():
        for r0 in range(0, height, rows):
            yy = ys[r0 : r0 + rows]
            x = torch.stack([xs.repeat(len(yy)), yy.repeat_interleave(width)], dim=1)
            o = forward(arch, params, x, *subnet) + 0.5
            out.append(torch.round(o.clamp(0, 1) * 255).to(torch.uint8).reshape(len(yy), width, -1).cpu())
    return torch.cat(out).numpy()


def decode_inr(header, sections, size, subnet, device="cpu") -> np.ndarray:
    arch, steps, complete = load_arch(header, sections)
    chosen = choose(arch, complete, subnet)
    if header.truncated:
        warnings.warn(AniTruncatedWarning(
            f"truncated .ani supernet file ({header.file_size} bytes): decoded as sub-network {chosen}, "
            f"the largest of the {complete} complete ones" if subnet is None else
            f"truncated .ani supernet file ({header.file_size} bytes): decoded sub-network {chosen}", chosen), stacklevel=3)
    ints = read_ints(arch, sections, arch.index_of(chosen))
    return render(arch, tensors(arch, ints, steps), chosen, size, device)


def describe(header, sections) -> dict:
    """What ``ani info`` shows of a siren/mfn file: the network kind, the
    supernet's choices and, per sub-network in storage order, its parameter
    count, the bytes of the file prefix that holds it, and whether it is
    complete. No torch."""
    arch, _, complete = load_arch(header, sections)
    subnets = []
    for k, (d, w) in enumerate(arch.order):
        end = header.section_ends.get(chunk_tag(k))
        subnets.append({"depth": d, "width": w, "params": arch.subnet_params(d, w),
                        "bytes": end if end is not None else None, "complete": k < complete})
    return {"network": KIND_NAMES[arch.kind], "depths": list(arch.depths), "widths": list(arch.widths),
            "first_bits": arch.first_bits, "last_bits": arch.last_bits, "bias_bits": arch.bias_bits,
            "truncated": header.truncated, "subnets": subnets}


def extract(header, sections, subnet) -> tuple[InrArch, list[tuple[bytes, bytes]]]:
    """The sections of a one-sub-network file holding ``subnet`` of this one."""
    arch, steps, complete = load_arch(header, sections)
    d, w = choose(arch, complete, subnet)
    ints = read_ints(arch, sections, arch.index_of((d, w)))
    dst = InrArch(arch.kind, arch.channels, (d,), (w,), arch.hidden_bits, arch.first_bits, arch.last_bits, arch.bias_bits)
    q, s = slice_ints(arch, ints, steps, d, w, dst)
    return dst, write_sections(dst, s, q)
