"""The ``.ani`` container: magic, versioned header and checksummed sections.

Pure Python (``struct`` and ``zlib``), no torch: reading a header is cheap.
The layout is specified in ``docs/format.md``; this module is its reference
implementation. All integers are little-endian.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Iterable

from .errors import AniFormatError, AniLimitError, NotAniError

MAGIC = b"\x89ANI\r\n\x1a\n"
#: the version written; versions 2 and 3 changed the ``grid`` family's context
#: model (``MODL``, ``LATS``: docs/format.md 8); the container is the same in all
FORMAT_VERSION = 3
READ_VERSIONS = (1, 2, 3)
_PREAMBLE = struct.Struct("<8sHH")  # magic, version, header length
_HEADER = struct.Struct("<IIBBBBIIBBH")  # w, h, channels, model, bits, flags, n_latents, n_params, quality, effort, reserved
_SECTION = struct.Struct("<4sI")
_TOTAL = struct.Struct("<I")  # header extension of progressive files: the whole file's length
_CRC = struct.Struct("<I")

MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
CHANNELS = {mode: ch for ch, mode in MODES.items()}

#: Decoder limits, checked before anything is allocated.
MAX_SIDE = 1 << 16
MAX_PIXELS = 1 << 28
MAX_PARAMS = 1 << 22
MAX_SECTIONS = 64

END_TAG = b"END "
#: Header ``flags`` bit 0: the file is *progressive*. Its last sections are
#: laid out so that a prefix ending at a section boundary still decodes
#: (a supernet stored smallest sub-network first, docs/format.md 5.4); a
#: truncated progressive file parses as its complete sections, with
#: ``Header.truncated`` set. Every other file must be complete.
FLAG_PROGRESSIVE = 0x01
META_TAGS = {"icc_profile": b"iCCP", "exif": b"eXIf", "xmp": b"xMPm"}


@dataclass(frozen=True)
class Header:
    """What the file header says.

    Attributes:
        width, height: stored image size in pixels.
        mode: ``L``, ``LA``, ``RGB`` or ``RGBA``.
        model: model family name (``grid``, ...) or ``unknown-<code>``.
        bits: bit-width of the quantized parameters.
        version: container format version.
        n_latents: number of integer latents stored.
        n_params: number of integer network parameters stored.
        quality, effort: the encoder settings (informational).
        file_size: total bytes of the file.
        metadata: ``icc_profile``, ``exif``, ``xmp`` payloads present in the file.
        flags: the header's flags byte (:data:`FLAG_PROGRESSIVE`).
        truncated: a progressive file that ends before its END marker: only
            the complete sections before the cut were read.
        section_ends: ``{tag: offset}`` of the byte after each section read
            (its CRC included), so a reader can say how long a prefix must be.
    """

    width: int
    height: int
    mode: str
    model: str
    bits: int
    version: int
    n_latents: int
    n_params: int
    quality: int
    effort: int
    file_size: int
    model_code: int = 0
    metadata: dict = field(default_factory=dict)
    flags: int = 0
    truncated: bool = False
    section_ends: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)

    @property
    def channels(self) -> int:
        return CHANNELS[self.mode]

    @property
    def bpp(self) -> float:
        """Bits per pixel of the whole file."""
        return self.file_size * 8 / (self.width * self.height)


def _section(tag: bytes, data: bytes) -> bytes:
    head = _SECTION.pack(tag, len(data))
    return head + data + _CRC.pack(zlib.crc32(head + data))


def pack(
    *,
    width: int,
    height: int,
    channels: int,
    model_code: int,
    bits: int,
    n_latents: int,
    n_params: int,
    quality: int,
    effort: int,
    sections: Iterable[tuple[bytes, bytes]],
    metadata: dict | None = None,
    flags: int = 0,
) -> bytes:
    """Assemble a complete file from the header fields and ``(tag, data)`` sections.

    A progressive file (``flags & FLAG_PROGRESSIVE``) gets a 4-byte header
    extension, the ``u32`` length of the whole file, so that a reader can tell
    a prefix (shorter than that) from a corrupt length field.
    """
    check_limits(width, height, n_params, n_latents)
    header = _HEADER.pack(width, height, channels, model_code, bits, flags, n_latents, n_params, quality, effort, 0)
    body = []
    metadata = metadata or {}
    for key, tag in META_TAGS.items():  # a fixed order: the bytes do not depend on the dict's
        if metadata.get(key):
            body.append(_section(tag, bytes(metadata[key])))
    for tag, data in sections:
        body.append(_section(tag, data))
    body.append(_section(END_TAG, b""))
    if flags & FLAG_PROGRESSIVE:
        total = _PREAMBLE.size + len(header) + _TOTAL.size + _CRC.size + sum(len(b) for b in body)
        header += _TOTAL.pack(total)
    pre = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header)) + header
    return b"".join([pre, _CRC.pack(zlib.crc32(pre)), *body])


def check_limits(width: int, height: int, n_params: int, n_latents: int) -> None:
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise AniLimitError(f"image size {width}x{height} outside 1..{MAX_SIDE} per side")
    if width * height > MAX_PIXELS:
        raise AniLimitError(f"image of {width * height} pixels exceeds the limit of {MAX_PIXELS}")
    if n_params > MAX_PARAMS:
        raise AniLimitError(f"{n_params} network parameters exceed the limit of {MAX_PARAMS}")
    # latents live on grids no larger than the image, a few per pixel at most
    if n_latents > 4 * width * height + 4096:
        raise AniLimitError(f"{n_latents} latents are implausible for a {width}x{height} image")


def is_ani(prefix: bytes) -> bool:
    """True if ``prefix`` (at least 8 bytes) starts with the ``.ani`` magic."""
    return bytes(prefix[: len(MAGIC)]) == MAGIC


def parse(data: bytes) -> tuple[Header, dict[bytes, bytes]]:
    """Check and split a file into its header and ``{tag: data}`` sections.

    Raises:
        NotAniError: the magic is missing (another format).
        AniFormatError: truncated, corrupt or inconsistent.
        AniLimitError: header sizes beyond the decoder's limits.
    """
    data = memoryview(bytes(data)) if not isinstance(data, (bytes, memoryview)) else memoryview(data)
    if len(data) < len(MAGIC) or bytes(data[: len(MAGIC)]) != MAGIC:
        raise NotAniError("not an .ani file (magic bytes missing)")
    if len(data) < _PREAMBLE.size:
        raise AniFormatError("truncated .ani file: preamble incomplete")
    _, version, hlen = _PREAMBLE.unpack_from(data, 0)
    if version not in READ_VERSIONS:
        raise AniFormatError(f"unsupported .ani format version {version} (this decoder reads {', '.join(map(str, READ_VERSIONS))})")
    if hlen < _HEADER.size:
        raise AniFormatError(f"header length {hlen} is shorter than the {_HEADER.size} bytes of version {version}")
    end = _PREAMBLE.size + hlen
    if len(data) < end + _CRC.size:
        raise AniFormatError("truncated .ani file: header incomplete")
    (crc,) = _CRC.unpack_from(data, end)
    if zlib.crc32(data[:end]) != crc:
        raise AniFormatError("corrupt .ani file: header checksum mismatch")
    w, h, ch, model_code, bits, flags, n_lat, n_par, quality, effort, _ = _HEADER.unpack_from(data, _PREAMBLE.size)
    if ch not in MODES:
        raise AniFormatError(f"corrupt .ani header: {ch} channels (allowed 1..4)")
    if not 2 <= bits <= 8:
        raise AniFormatError(f"corrupt .ani header: bits={bits} (allowed 2..8)")
    check_limits(w, h, n_par, n_lat)

    sections: dict[bytes, bytes] = {}
    ends: dict[bytes, int] = {}
    progressive = bool(flags & FLAG_PROGRESSIVE)
    if progressive:
        if hlen < _HEADER.size + _TOTAL.size:
            raise AniFormatError("corrupt .ani header: a progressive file without its length field")
        (total,) = _TOTAL.unpack_from(data, _PREAMBLE.size + _HEADER.size)
        # only a file shorter than it says is a prefix; a complete one is held to every rule
        progressive = len(data) < total
    truncated = False
    pos = end + _CRC.size
    while True:
        if len(sections) > MAX_SECTIONS:
            raise AniFormatError("corrupt .ani file: too many sections")
        if len(data) < pos + _SECTION.size:
            if progressive:  # a prefix of a progressive file: keep what is complete
                truncated = True
                break
            raise AniFormatError("truncated .ani file: section header incomplete (end marker missing)")
        tag, length = _SECTION.unpack_from(data, pos)
        stop = pos + _SECTION.size + length
        if stop + _CRC.size > len(data):
            if progressive:
                truncated = True
                break
            raise AniFormatError(f"truncated .ani file: section {tag!r} declares {length} bytes beyond the end")
        (crc,) = _CRC.unpack_from(data, stop)
        if zlib.crc32(data[pos:stop]) != crc:
            raise AniFormatError(f"corrupt .ani file: checksum mismatch in section {tag!r}")
        if tag == END_TAG:
            if length != 0:
                raise AniFormatError("corrupt .ani file: end marker with data")
            break
        if tag in sections:
            raise AniFormatError(f"corrupt .ani file: duplicate section {tag!r}")
        sections[bytes(tag)] = bytes(data[pos + _SECTION.size : stop])
        pos = stop + _CRC.size
        ends[bytes(tag)] = pos
    if not truncated and pos + _SECTION.size + _CRC.size != len(data):
        raise AniFormatError("corrupt .ani file: trailing data after the end marker")

    from .hooks import family_by_code

    fam = family_by_code(model_code)
    metadata = {key: sections[tag] for key, tag in META_TAGS.items() if tag in sections}
    header = Header(
        width=w,
        height=h,
        mode=MODES[ch],
        model=fam[0] if fam else f"unknown-{model_code}",
        bits=bits,
        version=version,
        n_latents=n_lat,
        n_params=n_par,
        quality=quality,
        effort=effort,
        file_size=len(data),
        model_code=model_code,
        metadata=metadata,
        flags=flags,
        truncated=truncated,
        section_ends=ends,
    )
    return header, sections


def read_header(data) -> Header:
    """Read and check the header of an ``.ani`` file given as bytes or a path.

    Never imports torch. All section checksums are verified, so a header that
    reads without error belongs to an intact file.
    """
    if isinstance(data, str) or hasattr(data, "__fspath__"):
        data = _read_path(data)
    return parse(data)[0]


def _read_path(path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()
