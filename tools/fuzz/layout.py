"""The byte layout of an ``.ani`` file as the fuzzer edits it: split a valid
file into its parts and rebuild it with fresh checksums, and find the fields
of the ``grid`` family's ``MODL`` section.

Written from ``docs/format.md`` on its own, without :func:`core.container.parse`:
the fuzzer must not share the parser's mistakes.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field, replace

PREAMBLE = struct.Struct("<8sHH")  # magic, version, header length
HEADER = struct.Struct("<IIBBBBIIBBH")
FIELDS = ("width", "height", "channels", "model_code", "bits", "flags", "n_latents", "n_params", "quality",
          "effort", "reserved")
#: bytes of each header field (for values that fit it)
FIELD_BYTES = dict(zip(FIELDS, (4, 4, 1, 1, 1, 1, 4, 4, 1, 1, 2)))
SECTION = struct.Struct("<4sI")
CRC = struct.Struct("<I")
END = b"END "
META_TAGS = (b"iCCP", b"eXIf", b"xMPm")


def section_bytes(tag: bytes, data: bytes) -> bytes:
    """A section with its CRC32 (over tag, length and data)."""
    head = SECTION.pack(tag, len(data))
    return head + data + CRC.pack(zlib.crc32(head + data))


@dataclass(frozen=True)
class Layout:
    """A file in parts; :meth:`build` writes it with valid checksums."""

    magic: bytes
    version: int
    fields: dict
    extension: bytes = b""
    sections: list = field(default_factory=list)  # (tag, data), END excluded
    hlen: int | None = None  # None: 24 + len(extension)

    def prelude(self) -> bytes:
        hlen = HEADER.size + len(self.extension) if self.hlen is None else self.hlen
        values = [self.fields[k] & ((1 << (8 * FIELD_BYTES[k])) - 1) for k in FIELDS]
        head = PREAMBLE.pack(self.magic, self.version & 0xFFFF, hlen & 0xFFFF) + HEADER.pack(*values) + self.extension
        return head + CRC.pack(zlib.crc32(head))

    def build(self, end: bytes | None = None) -> bytes:
        tail = section_bytes(END, b"") if end is None else end
        return self.prelude() + b"".join(section_bytes(t, d) for t, d in self.sections) + tail

    def with_fields(self, **changes) -> "Layout":
        return replace(self, fields={**self.fields, **changes})

    def section(self, tag: bytes) -> bytes | None:
        return next((d for t, d in self.sections if t == tag), None)

    def with_section(self, tag: bytes, data: bytes) -> "Layout":
        return replace(self, sections=[(t, data if t == tag else d) for t, d in self.sections])


def split(data: bytes) -> Layout:
    """Split a *valid* file (a seed) into its parts."""
    magic, version, hlen = PREAMBLE.unpack_from(data, 0)
    fields = dict(zip(FIELDS, HEADER.unpack_from(data, PREAMBLE.size)))
    extension = data[PREAMBLE.size + HEADER.size : PREAMBLE.size + hlen]
    sections = []
    for start, stop, tag in spans(data):
        if tag != END:
            sections.append((tag, data[start + SECTION.size : stop - CRC.size]))
    return Layout(magic, version, fields, extension, sections)


def spans(data: bytes) -> list[tuple[int, int, bytes]]:
    """``(start, stop, tag)`` of every section of a valid file, END included."""
    _, _, hlen = PREAMBLE.unpack_from(data, 0)
    pos = PREAMBLE.size + hlen + CRC.size
    out = []
    while pos < len(data):
        tag, length = SECTION.unpack_from(data, pos)
        stop = pos + SECTION.size + length + CRC.size
        out.append((pos, stop, tag))
        pos = stop
    return out


def prelude_size(data: bytes) -> int:
    """Bytes of preamble, header and header CRC of a valid file."""
    return PREAMBLE.size + PREAMBLE.unpack_from(data, 0)[2] + CRC.size


@dataclass(frozen=True)
class ModlFields:
    """Offsets of the fields of a ``MODL`` payload (``docs/format.md`` 4.2)."""

    levels: int  # u8 at 0
    channels: int  # u8 at 1
    n_hidden: int  # u8 at 2
    widths: tuple[int, ...]  # u8 offsets
    bias_bits: int  # u8
    layers: tuple[tuple[int, int, int, int], ...]  # offsets of w_step f32, b_step f32, w_scale u8, b_scale u8
    ctx: tuple[int, int]  # version 1: offset and count of the int16 context parameters; 2, 3: of the low-bit bytes
    ctx_codes: tuple[int, ...]  # versions 2, 3: offsets of the u8 shift and scale of each class; 1: none
    n_words: int  # u32 offset
    words: tuple[int, int]  # offset and count of the u32 words


def stored_sets(levels: int, width: int, height: int, version: int) -> int:
    """Context parameter sets in a ``MODL``: 2 or 3 per level in versions 1 and
    2; in version 3 one per pass with latents of the five (``docs/format.md``
    4.3: levels of fewer than 128 * 128 latents code their even lattice in one
    pass, so their passes 1 and 2 are empty)."""
    if version < 3:
        return levels * (2 if version == 1 else 3)
    n = 0
    for level in range(levels):
        h, w = -(-height // 2**level), -(-width // 2**level)
        big = h * w >= 128 * 128
        n += 1 + (big and h > 2 and w > 2) + (big and ((h + 1) // 2) * ((w + 1) // 2) > 1) + (h > 1 and w > 1) + (h * w > 1)
    return n


def modl_fields(payload: bytes, version: int, width: int, height: int) -> ModlFields:
    """Locate the fields of a valid ``MODL`` payload of a file of format
    ``version`` and the header's ``width`` and ``height`` (from version 3 the
    number of context parameter sets follows from them)."""
    levels, _, n = struct.unpack_from("<BBB", payload, 0)
    widths = tuple(range(3, 3 + n))
    pos = 3 + n
    bias_bits = pos
    pos += 1
    layers = []
    for _ in range(n + 1):
        layers.append((pos, pos + 4, pos + 8, pos + 9))
        pos += 10
    codes: tuple[int, ...] = ()
    if version == 1:
        n_ctx = levels * 2 * 12
        ctx = (pos, n_ctx)
        pos += 2 * n_ctx
    else:
        sizes = (5, 1, 5, 1)  # parameters per pass of each class
        codes = tuple(range(pos, pos + 2 * len(sizes)))
        shifts = payload[pos : pos + 2 * len(sizes) : 2]
        pos += 2 * len(sizes)
        sets = stored_sets(levels, width, height, version)
        n_low = (sum(sets * k * h for k, h in zip(sizes, shifts)) + 7) // 8
        ctx = (pos, n_low)
        pos += n_low
    (count,) = struct.unpack_from("<I", payload, pos)
    return ModlFields(0, 1, 2, widths, bias_bits, tuple(layers), ctx, codes, pos, (pos + 4, count))
