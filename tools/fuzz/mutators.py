"""Mutations of valid ``.ani`` files, and which outcomes each may have.

Every mutator has a *kind*; :data:`ALLOWED` says which outcomes a kind may
have (``docs/security.md`` explains them). To cover a new case (a new layout,
a new kind of edit the format tolerates), write a mutator and register it
with :func:`register`, with an existing kind or a new one added to
:data:`ALLOWED`.

Outcomes (see :mod:`tools.fuzz.case`): ``refused`` (a documented error:
``NotAniError``, ``AniFormatError``, ``AniLimitError``), ``decoded-same``
(the pixels of the unmutated file), ``decoded-other`` (other pixels, of the
size the header declares). Anything else (another exception, a hang, a crash,
memory beyond the budget, pixels from a file whose checksums fail) is a
failure whatever the kind.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from . import layout as L

#: kind -> outcomes it may have
ALLOWED: dict[str, frozenset[str]] = {
    # bits changed, checksums left as they are: CRC32 detects every such change
    "bitflip": frozenset({"refused"}),
    # bytes inserted, deleted, truncated, spliced, checksums left as they are:
    # refused, unless the result is a well-formed file of intact sections
    # (a whole section removed or moved), which the case check verifies
    "raw": frozenset({"refused", "decoded-same", "decoded-other"}),
    # checksums recomputed (deliberate tampering): CRCs cannot catch it; the
    # structure and range checks refuse it, or it decodes to *some* image of
    # the declared size
    "forged": frozenset({"refused", "decoded-same", "decoded-other"}),
    # bytes a version 1 reader ignores, checksums recomputed: same pixels
    "ignored": frozenset({"decoded-same"}),
}

KIND_TEXT = {
    "bitflip": "bits flipped, checksums not recomputed",
    "raw": "bytes truncated/inserted/deleted/spliced/random, checksums not recomputed",
    "forged": "fields or payload changed and every checksum recomputed",
    "ignored": "bytes version 1 readers ignore changed, checksums recomputed",
}


@dataclass(frozen=True)
class Seed:
    """A valid file the mutations start from."""

    name: str
    data: bytes
    layout: L.Layout


@dataclass(frozen=True)
class Mutator:
    name: str
    kind: str
    fn: Callable[[np.random.Generator, Seed, list], bytes]


MUTATORS: dict[str, Mutator] = {}


def register(name: str, kind: str):
    """Decorator: register ``fn(rng, seed, seeds) -> bytes`` as a mutator."""
    if kind not in ALLOWED:
        raise ValueError(f"unknown mutator kind {kind!r}: add it to ALLOWED first")

    def deco(fn):
        MUTATORS[name] = Mutator(name, kind, fn)
        return fn

    return deco


# --------------------------------------------------------------------------- helpers

INTERESTING_U8 = (0, 1, 2, 3, 4, 7, 8, 9, 12, 13, 63, 64, 65, 127, 128, 200, 254, 255)
INTERESTING_U32 = (0, 1, 2, 15, 16, 24, 255, 256, 4095, 4096, 65535, 65536, 65537, 2**22, 2**22 + 1,
                   2**28, 2**28 + 1, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1)
F32_SPECIALS = (float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 1e38, -1e38, 1e-45, 1e-40, -1.0, 1e6, 3.4e38)


def _randbytes(rng: np.random.Generator, n: int) -> bytes:
    return rng.integers(0, 256, n, dtype=np.uint8).tobytes()


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _edit_bytes(rng: np.random.Generator, buf: bytes) -> bytes:
    """A few random byte-level edits of ``buf`` (bit flips, byte sets, a cut, an insertion)."""
    b = bytearray(buf)
    for _ in range(int(rng.integers(1, 4))):
        op = int(rng.integers(5))
        if op == 0 and b:
            i = int(rng.integers(len(b) * 8))
            b[i // 8] ^= 1 << (i % 8)
        elif op == 1 and b:
            b[int(rng.integers(len(b)))] = _pick(rng, INTERESTING_U8) if rng.random() < 0.5 else int(rng.integers(256))
        elif op == 2 and b:
            del b[int(rng.integers(len(b))):]
        elif op == 3:
            at = int(rng.integers(len(b) + 1))
            b[at:at] = _randbytes(rng, int(rng.integers(1, 9)))
        elif b:
            at = int(rng.integers(len(b)))
            del b[at : at + int(rng.integers(1, 9))]
    return bytes(b)


def _payload_tag(rng: np.random.Generator, seed: Seed) -> bytes:
    return _pick(rng, [t for t, _ in seed.layout.sections])


def _critical_tags(seed: Seed) -> list[bytes]:
    """The seed's critical (model) sections: MODL/LATS of a grid file, NETA and
    NPxx of a siren/mfn file."""
    return [t for t, _ in seed.layout.sections if t[:1].isupper()]


def _is_grid(seed: Seed) -> bool:
    return seed.layout.section(b"MODL") is not None


# --------------------------------------------------------------------------- bit flips


@register("flip-bit", "bitflip")
def flip_bit(rng, seed, seeds):
    b = bytearray(seed.data)
    i = int(rng.integers(len(b) * 8))
    b[i // 8] ^= 1 << (i % 8)
    return bytes(b)


@register("flip-bit-prelude", "bitflip")
def flip_bit_prelude(rng, seed, seeds):
    b = bytearray(seed.data)
    i = int(rng.integers(L.prelude_size(seed.data) * 8))
    b[i // 8] ^= 1 << (i % 8)
    return bytes(b)


@register("flip-bits", "bitflip")
def flip_bits(rng, seed, seeds):
    b = bytearray(seed.data)
    for i in rng.choice(len(b) * 8, size=int(rng.integers(2, 17)), replace=False):
        b[int(i) // 8] ^= 1 << (int(i) % 8)
    return bytes(b)


@register("flip-burst", "bitflip")
def flip_burst(rng, seed, seeds):
    """Up to 32 consecutive bits inverted (a burst error)."""
    b = bytearray(seed.data)
    start = int(rng.integers(len(b) * 8))
    for i in range(start, min(start + int(rng.integers(1, 33)), len(b) * 8)):
        b[i // 8] ^= 1 << (i % 8)
    return bytes(b)


# --------------------------------------------------------------------------- raw edits


@register("set-bytes", "raw")
def set_bytes(rng, seed, seeds):
    b = bytearray(seed.data)
    for _ in range(int(rng.integers(1, 5))):
        b[int(rng.integers(len(b)))] = _pick(rng, INTERESTING_U8) if rng.random() < 0.6 else int(rng.integers(256))
    return bytes(b)


@register("truncate", "raw")
def truncate(rng, seed, seeds):
    return seed.data[: int(rng.integers(len(seed.data)))]


@register("truncate-tail", "raw")
def truncate_tail(rng, seed, seeds):
    return seed.data[: len(seed.data) - int(rng.integers(1, 17))]


@register("insert", "raw")
def insert(rng, seed, seeds):
    at = int(rng.integers(len(seed.data) + 1))
    return seed.data[:at] + _randbytes(rng, int(rng.integers(1, 33))) + seed.data[at:]


@register("delete", "raw")
def delete(rng, seed, seeds):
    at = int(rng.integers(len(seed.data)))
    return seed.data[:at] + seed.data[at + int(rng.integers(1, 65)):]


@register("duplicate", "raw")
def duplicate(rng, seed, seeds):
    a = int(rng.integers(len(seed.data)))
    b = min(len(seed.data), a + int(rng.integers(1, 129)))
    at = int(rng.integers(len(seed.data) + 1))
    return seed.data[:at] + seed.data[a:b] + seed.data[at:]


@register("append", "raw")
def append(rng, seed, seeds):
    extra = _randbytes(rng, int(rng.integers(1, 65)))
    if rng.random() < 0.3:  # a well-formed section after the end marker
        extra = L.section_bytes(b"zzzz", extra)
    return seed.data + extra


@register("random", "raw")
def random_bytes(rng, seed, seeds):
    n = int(rng.integers(0, 700))
    start = int(rng.integers(3))
    if start == 0:
        return _randbytes(rng, n)
    if start == 1:  # the magic, then noise
        return seed.data[:8] + _randbytes(rng, n)
    return seed.data[: L.prelude_size(seed.data)] + _randbytes(rng, n)  # a valid header, then noise


@register("splice", "raw")
def splice(rng, seed, seeds):
    other = _pick(rng, seeds)
    if rng.random() < 0.5:  # at section boundaries: sections stay intact
        a = _pick(rng, [0] + [s for s, _, _ in L.spans(seed.data)])
        b = _pick(rng, [s for s, _, _ in L.spans(other.data)])
    else:
        a, b = int(rng.integers(len(seed.data))), int(rng.integers(len(other.data)))
    return seed.data[:a] + other.data[b:] if a else seed.data[: L.prelude_size(seed.data)] + other.data[b:]


@register("drop-section", "raw")
def drop_section(rng, seed, seeds):
    """A whole section, its CRC included, cut out: the others stay intact."""
    start, stop, _ = _pick(rng, L.spans(seed.data))
    return seed.data[:start] + seed.data[stop:]


@register("repeat-section", "raw")
def repeat_section(rng, seed, seeds):
    start, stop, _ = _pick(rng, L.spans(seed.data))
    return seed.data[:stop] + seed.data[start:stop] + seed.data[stop:]


# --------------------------------------------------------------------------- forged: header


HEADER_EXTREMES = {
    "width": (0, 1, 2, 7, 65535, 65536, 65537, 2**31, 2**32 - 1),
    "height": (0, 1, 2, 7, 65535, 65536, 65537, 2**31, 2**32 - 1),
    "channels": (0, 1, 2, 3, 4, 5, 255),
    "model_code": (1, 2, 7, 128, 255),
    "bits": (0, 1, 2, 3, 4, 5, 8, 9, 16, 255),
    "n_latents": (0, 1, 2**20, 2**28, 2**30 + 4096, 2**32 - 1),
    "n_params": (0, 1, 395, 13620, 2**22, 2**22 + 1, 2**32 - 1),
}


@register("header-field", "forged")
def header_field(rng, seed, seeds):
    name = _pick(rng, list(HEADER_EXTREMES))
    value = _pick(rng, HEADER_EXTREMES[name])
    if rng.random() < 0.3:  # near the true value instead
        value = max(0, seed.layout.fields[name] + int(rng.integers(-2, 3)))
    return seed.layout.with_fields(**{name: value}).build()


@register("header-fields", "forged")
def header_fields(rng, seed, seeds):
    changes = {}
    for name in rng.choice(list(HEADER_EXTREMES), size=int(rng.integers(2, 4)), replace=False):
        changes[str(name)] = int(rng.integers(0, 1 << (8 * L.FIELD_BYTES[str(name)]), dtype=np.uint64))
    return seed.layout.with_fields(**changes).build()


@register("version", "forged")
def version(rng, seed, seeds):
    return replace(seed.layout, version=_pick(rng, (0, 1, 2, 3, 255, 256, 65535))).build()


@register("header-length", "forged")
def header_length(rng, seed, seeds):
    """``hlen`` out of step with the bytes: too short, or longer than the header written."""
    lay = seed.layout
    if rng.random() < 0.5:
        return replace(lay, hlen=int(rng.integers(0, L.HEADER.size))).build()
    return replace(lay, hlen=L.HEADER.size + len(lay.extension) + int(rng.integers(1, 70000))).build()


@register("resize", "forged")
def resize(rng, seed, seeds):
    """A consistent header (counts match the architecture) for another image
    size, up to 256 x 256: the decoder reads the latents of a size they were
    not coded for."""
    from core.grid.arch import GridArch

    lay = seed.layout
    w, h = int(rng.integers(1, 257)), int(rng.integers(1, 257))
    if not _is_grid(seed):  # a coordinate network renders any size: counts unchanged
        return lay.with_fields(width=w, height=h).build()
    arch, _ = GridArch.unpack(lay.section(b"MODL"))
    return lay.with_fields(width=w, height=h, n_latents=arch.n_latents(h, w)).build()


# --------------------------------------------------------------------------- forged: sections


@register("payload-edit", "forged")
def payload_edit(rng, seed, seeds):
    tag = _payload_tag(rng, seed)
    return seed.layout.with_section(tag, _edit_bytes(rng, seed.layout.section(tag))).build()


@register("payload-random", "forged")
def payload_random(rng, seed, seeds):
    tag = _pick(rng, _critical_tags(seed))
    n = len(seed.layout.section(tag))
    return seed.layout.with_section(tag, _randbytes(rng, int(rng.integers(0, 2 * n + 1)))).build()


@register("payload-swap", "forged")
def payload_swap(rng, seed, seeds):
    """A section of another seed in place of this seed's."""
    other = _pick(rng, seeds)
    tag = _pick(rng, _critical_tags(seed))
    theirs = other.layout.section(tag)
    if theirs is None:  # another family: any of its model sections
        theirs = other.layout.section(_pick(rng, _critical_tags(other)))
    return seed.layout.with_section(tag, theirs).build()


def _set(buf: bytearray, offset: int, fmt: str, value) -> None:
    struct.pack_into(fmt, buf, offset, value)


@register("modl-field", "forged")
def modl_field(rng, seed, seeds):
    """One field of the MODL section set to an edge value."""
    if not _is_grid(seed):
        return payload_edit(rng, seed, seeds)
    payload = bytearray(seed.layout.section(b"MODL"))
    fields = seed.layout.fields
    f = L.modl_fields(bytes(payload), seed.layout.version, fields["width"], fields["height"])
    which = int(rng.integers(7))
    if which == 0:
        _set(payload, _pick(rng, (f.levels, f.channels, f.n_hidden, f.bias_bits)), "<B", _pick(rng, INTERESTING_U8))
    elif which == 1 and f.widths:
        _set(payload, _pick(rng, f.widths), "<B", _pick(rng, INTERESTING_U8))
    elif which == 2:
        layer = _pick(rng, f.layers)
        _set(payload, layer[int(rng.integers(2))], "<f", _pick(rng, F32_SPECIALS))
    elif which == 3:
        layer = _pick(rng, f.layers)
        _set(payload, layer[2 + int(rng.integers(2))], "<B", _pick(rng, INTERESTING_U8))
    elif which == 4 and f.ctx_codes and rng.random() < 0.5:  # versions 2, 3: a class's shift or scale
        _set(payload, _pick(rng, f.ctx_codes), "<B", _pick(rng, INTERESTING_U8))
    elif which == 4 and f.ctx_codes:  # versions 2, 3: bytes of the context parameters' low bits
        start, count = f.ctx
        for _ in range(int(rng.integers(1, 5))):
            if count:
                _set(payload, start + int(rng.integers(count)), "<B", _pick(rng, INTERESTING_U8))
    elif which == 4:
        start, count = f.ctx
        for _ in range(int(rng.integers(1, 5))):
            _set(payload, start + 2 * int(rng.integers(count)), "<h", _pick(rng, (-32768, -32767, -1, 0, 1, 32767)))
    elif which == 5:
        _set(payload, f.n_words, "<I", _pick(rng, INTERESTING_U32 + (f.words[1] - 1, f.words[1] + 1)))
    else:
        start, count = f.words
        for _ in range(int(rng.integers(1, 4))):
            if count:
                _set(payload, start + 4 * int(rng.integers(count)), "<I", _pick(rng, (0, 2**32 - 1, 2**31)))
    return seed.layout.with_section(b"MODL", bytes(payload)).build()


@register("lats-words", "forged")
def lats_words(rng, seed, seeds):
    if not _is_grid(seed):
        return payload_edit(rng, seed, seeds)
    payload = bytearray(seed.layout.section(b"LATS"))
    (count,) = struct.unpack_from("<I", payload, 0)
    which = int(rng.integers(4))
    if which == 0:
        _set(payload, 0, "<I", _pick(rng, INTERESTING_U32 + (count - 1, count + 1)))
    elif which == 1:
        payload = bytearray(struct.pack("<I", 0))  # no words at all
    elif which == 2 and count:
        fill = _pick(rng, (0, 0xFFFFFFFF, 0x80000000))
        for i in range(count):
            _set(payload, 4 + 4 * i, "<I", fill)
    else:
        keep = int(rng.integers(count + 1))
        payload = bytearray(struct.pack("<I", keep) + bytes(payload[4 : 4 + 4 * keep]))
    return seed.layout.with_section(b"LATS", bytes(payload)).build()


@register("sections-forged", "forged")
def sections_forged(rng, seed, seeds):
    """Sections removed, duplicated, unknown critical ones added, a damaged
    end marker, or too many sections; every checksum valid."""
    lay = seed.layout
    secs = list(lay.sections)
    which = int(rng.integers(6))
    if which == 0:
        secs.pop(int(rng.integers(len(secs))))
    elif which == 1:
        secs.insert(int(rng.integers(len(secs) + 1)), _pick(rng, secs))
    elif which == 2:
        tag = bytes([int(rng.integers(65, 91))]) + _randbytes(rng, 3)
        secs.insert(int(rng.integers(len(secs) + 1)), (tag, _randbytes(rng, int(rng.integers(0, 40)))))
    elif which == 3:
        return replace(lay, sections=secs).build(end=L.section_bytes(L.END, _randbytes(rng, int(rng.integers(1, 9)))))
    elif which == 4:
        return replace(lay, sections=secs).build(end=b"")
    else:
        n = int(rng.integers(60, 70))
        secs += [(b"z%03d" % i, b"") for i in range(n)]
    return replace(lay, sections=secs).build()


# --------------------------------------------------------------------------- ignored by version 1 readers


@register("flags-reserved", "ignored")
def flags_reserved(rng, seed, seeds):
    # flags bit 0 (progressive, format 1.4) has a meaning; the other bits are ignored
    flags = (int(rng.integers(256)) & ~1) | (seed.layout.fields["flags"] & 1)
    return seed.layout.with_fields(flags=flags, reserved=int(rng.integers(65536))).build()


@register("progressive-flag", "forged")
def progressive_flag(rng, seed, seeds):
    """Toggle flags bit 0 (with or without the length extension it needs)."""
    lay = seed.layout.with_fields(flags=seed.layout.fields["flags"] ^ 1)
    if rng.integers(2):
        ext = lay.extension[4:] if seed.layout.fields["flags"] & 1 else len(lay.build()).to_bytes(4, "little") + lay.extension
        lay = replace(lay, extension=ext)
    return lay.build()


@register("quality-effort", "ignored")
def quality_effort(rng, seed, seeds):
    return seed.layout.with_fields(quality=int(rng.integers(256)), effort=int(rng.integers(256))).build()


@register("header-extension", "ignored")
def header_extension(rng, seed, seeds):
    # a progressive file's first 4 extension bytes are its length (format 1.4);
    # what follows them, and any extension of other files, is ignored
    keep = seed.layout.extension[:4] if seed.layout.fields["flags"] & 1 else b""
    lay = replace(seed.layout, extension=keep + _randbytes(rng, int(rng.integers(1, 100))))
    if keep:  # the recorded length grows with the header
        data = lay.build()
        lay = replace(lay, extension=len(data).to_bytes(4, "little") + lay.extension[4:])
    return lay.build()


@register("ancillary-section", "ignored")
def ancillary_section(rng, seed, seeds):
    secs = list(seed.layout.sections)
    tag = bytes([int(rng.integers(97, 123))]) + _randbytes(rng, 3)
    if tag in {t for t, _ in secs} or tag == L.END:
        tag = b"zanc"
    secs.insert(int(rng.integers(len(secs) + 1)), (tag, _randbytes(rng, int(rng.integers(0, 300)))))
    return replace(seed.layout, sections=secs).build()


@register("metadata-payload", "ignored")
def metadata_payload(rng, seed, seeds):
    lay = seed.layout
    present = [t for t, _ in lay.sections if t in L.META_TAGS]
    if present:
        tag = _pick(rng, present)
        return lay.with_section(tag, _edit_bytes(rng, lay.section(tag))).build()
    tag = _pick(rng, L.META_TAGS)
    return replace(lay, sections=[(tag, _randbytes(rng, int(rng.integers(1, 200))))] + list(lay.sections)).build()


@register("reorder-sections", "ignored")
def reorder_sections(rng, seed, seeds):
    secs = list(seed.layout.sections)
    order = rng.permutation(len(secs))
    return replace(seed.layout, sections=[secs[int(i)] for i in order]).build()
