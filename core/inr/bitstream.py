"""Serialisation of a quantized siren/mfn supernet: the ``NETA`` section
(architecture and step sizes) and one chunk section per sub-network
(``NP00``, ``NP01``, ...), each an independent range-coded stream, so that
a sub-network decodes from its own chunk and the ones before it.
numpy + constriction only; no torch. See ``docs/format.md`` (section 9).
"""
from __future__ import annotations

import struct

import numpy as np

from ..entropy import N_SCALES, GroupedDecoder, GroupedEncoder, best_scale
from ..errors import AniFormatError
from .layout import CHUNK_PREFIX, TAG_ARCH, InrArch, chunk_tag


def radius(bits: int) -> int:
    return 2 ** (bits - 1)


def write_sections(arch: InrArch, steps, ints: list[np.ndarray]) -> list[tuple[bytes, bytes]]:
    """``ints[i]``: the integers of tensor ``i`` (full size, flat row-major)."""
    sections = [(TAG_ARCH, arch.pack(list(steps)))]
    for k, chunk in enumerate(arch.pieces):
        enc, scales = GroupedEncoder(), []
        for ti, pos in chunk:
            r = radius(arch.bits_of(arch.tensors[ti].role))
            values = np.asarray(ints[ti], dtype=np.int64)[pos]
            s = best_scale(values, r)
            scales.append(s)
            enc.encode(values, np.full(values.size, s), np.zeros(values.size, np.int64), r)
        words = enc.words()
        sections.append((chunk_tag(k), bytes(scales) + struct.pack("<I", len(words)) + words.tobytes()))
    return sections


def complete_chunks(arch: InrArch, sections: dict) -> int:
    """How many chunks, counted from the first, the file holds."""
    n = 0
    while n < len(arch.order) and chunk_tag(n) in sections:
        n += 1
    return n


def check_tags(arch: InrArch, sections: dict, truncated: bool) -> int:
    """Refuse unknown critical sections and missing or surplus chunks; return
    the number of complete chunks."""
    n = complete_chunks(arch, sections)
    for tag in sections:
        if tag[:2] == CHUNK_PREFIX and tag[2:].isdigit():
            if int(tag[2:]) >= n:
                raise AniFormatError(f"corrupt .ani file: chunk section {tag.decode()} out of order or beyond "
                                     f"the {len(arch.order)} sub-networks")
        elif tag[:1].isupper() and tag != TAG_ARCH:
            raise AniFormatError(f"this file has a critical section {tag!r} this decoder does not know; upgrade ani")
    if n < len(arch.order) and not truncated:
        raise AniFormatError(f"corrupt .ani file: required section {chunk_tag(n).decode()} missing")
    return n


def read_ints(arch: InrArch, sections: dict, upto: int) -> list[np.ndarray]:
    """Entropy-decode chunks ``0..upto``; returns the flat integers of every
    tensor at full size (zero where no decoded chunk stores a value)."""
    ints = [np.zeros(t.size, dtype=np.int64) for t in arch.tensors]
    for k in range(upto + 1):
        buf = sections[chunk_tag(k)]
        chunk = arch.pieces[k]
        n = len(chunk)
        if len(buf) < n + 4:
            raise AniFormatError(f"corrupt .ani chunk {k}: truncated")
        scales = np.frombuffer(buf, dtype=np.uint8, count=n)
        if n and scales.max() >= N_SCALES:
            raise AniFormatError(f"corrupt .ani chunk {k}: scale index {int(scales.max())} >= {N_SCALES}")
        (n_words,) = struct.unpack_from("<I", buf, n)
        if len(buf) != n + 4 + 4 * n_words:
            raise AniFormatError(f"corrupt .ani chunk {k}: {n_words} words declared, {len(buf) - n - 4} bytes present")
        dec = GroupedDecoder(np.frombuffer(buf, dtype="<u4", count=n_words, offset=n + 4).astype(np.uint32))
        for (ti, pos), s in zip(chunk, scales.tolist()):
            r = radius(arch.bits_of(arch.tensors[ti].role))
            ints[ti][pos] = dec.decode(np.full(pos.size, s), np.zeros(pos.size, np.int64), r)
    return ints


def slice_ints(src: InrArch, ints: list[np.ndarray], steps, depth: int, width: int, dst: InrArch):
    """The integers and steps of sub-network ``(depth, width)`` of ``src``
    laid out as the one-sub-network architecture ``dst``."""
    by_name = {t.name: i for i, t in enumerate(src.tensors)}
    out_ints, out_steps = [], []
    for t in dst.tensors:
        i = by_name[t.name]
        full = ints[i].reshape(src.tensors[i].rows, max(src.tensors[i].cols, 1))
        r, c = t.rows, max(t.cols, 1)
        out_ints.append(np.ascontiguousarray(full[:r, :c]).ravel())
        out_steps.append(steps[i])
    return out_ints, np.asarray(out_steps, dtype=np.float32)
