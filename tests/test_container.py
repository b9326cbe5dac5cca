"""The ``.ani`` container (:mod:`core.container`) and the errors of reading
files: other formats, truncation, corruption, hostile headers, and reading a
header with torch unimportable.

The container tests build files with :func:`core.container.pack` (no torch);
the corruption tests use a small real encode (``small_file``, 24x16 RGB).
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

import core
from core import container
from core.errors import AniError, AniFormatError, AniLimitError, NotAniError

ROOT = Path(__file__).resolve().parents[1]

# The layout of docs/format.md, spelled out here so the test pins it:
MAGIC = b"\x89ANI\r\n\x1a\n"
PREAMBLE = struct.Struct("<8sHH")  # magic, version, header length
HEADER = struct.Struct("<IIBBBBIIBBH")  # w, h, channels, model, bits, flags, n_latents, n_params, quality, effort, reserved
FIELDS = ("width", "height", "channels", "model_code", "bits", "flags", "n_latents", "n_params", "quality", "effort",
          "reserved")
SECTION = struct.Struct("<4sI")  # tag, length; then data, then CRC32 of tag + length + data


def section(tag: bytes, data: bytes) -> bytes:
    head = SECTION.pack(tag, len(data))
    return head + data + struct.pack("<I", zlib.crc32(head + data))


def forge(data: bytes, version: int | None = None, **fields) -> bytes:
    """``data`` with header fields replaced and the header CRC recomputed (so it is valid)."""
    magic, ver, hlen = PREAMBLE.unpack_from(data, 0)
    values = dict(zip(FIELDS, HEADER.unpack_from(data, PREAMBLE.size)))
    assert set(fields) <= set(values), fields
    values.update(fields)
    end = PREAMBLE.size + hlen
    head = (PREAMBLE.pack(magic, ver if version is None else version, hlen)
            + HEADER.pack(*(values[k] for k in FIELDS)) + data[PREAMBLE.size + HEADER.size : end])
    return head + struct.pack("<I", zlib.crc32(head)) + data[end + 4 :]


def split_sections(data: bytes) -> list[tuple[bytes, bytes]]:
    """The ``(tag, data)`` sections of a file, END excluded."""
    _, _, hlen = PREAMBLE.unpack_from(data, 0)
    pos = PREAMBLE.size + hlen + 4
    out = []
    while True:
        tag, length = SECTION.unpack_from(data, pos)
        if tag == b"END ":
            return out
        out.append((tag, data[pos + SECTION.size : pos + SECTION.size + length]))
        pos += SECTION.size + length + 4


def prelude(data: bytes) -> bytes:
    """Preamble, header and header CRC of a file."""
    _, _, hlen = PREAMBLE.unpack_from(data, 0)
    return data[: PREAMBLE.size + hlen + 4]


def fake_file(**overrides) -> bytes:
    args = dict(width=24, height=16, channels=3, model_code=0, bits=4, n_latents=480, n_params=100,
                quality=75, effort=5, sections=[(b"MODL", b"model bytes"), (b"LATS", b"\x00" * 9)])
    args.update(overrides)
    return container.pack(**args)


# -- the layout -----------------------------------------------------------------------------------------

def test_layout_matches_the_spec():
    assert container.MAGIC == MAGIC and not MAGIC.startswith(b"RIFF")
    assert container.FORMAT_VERSION == core.FORMAT_VERSION == 3
    data = fake_file()
    magic, version, hlen = PREAMBLE.unpack_from(data, 0)
    assert (magic, version, hlen) == (MAGIC, 3, HEADER.size)
    assert struct.unpack_from("<I", data, PREAMBLE.size + hlen)[0] == zlib.crc32(data[: PREAMBLE.size + hlen])
    assert split_sections(data) == [(b"MODL", b"model bytes"), (b"LATS", b"\x00" * 9)]
    assert data.endswith(section(b"END ", b""))


def test_pack_parse_round_trip_of_header_fields_and_metadata():
    meta = {"icc_profile": bytes(range(256)) * 3, "exif": b"Exif\x00\x00II*\x00", "xmp": "<x:xmpmeta>é</x:xmpmeta>".encode()}
    data = fake_file(width=640, height=3, channels=4, bits=7, n_latents=5000, n_params=1234, quality=33, effort=9,
                     metadata=meta)
    header, sections = container.parse(data)
    assert (header.width, header.height, header.mode, header.channels, header.bits) == (640, 3, "RGBA", 4, 7)
    assert (header.n_latents, header.n_params, header.quality, header.effort) == (5000, 1234, 33, 9)
    assert (header.model, header.model_code, header.version) == ("grid", 0, container.FORMAT_VERSION)
    assert header.size == (640, 3) and header.file_size == len(data)
    assert header.bpp == pytest.approx(len(data) * 8 / (640 * 3))
    assert header.metadata == meta
    assert sections[b"MODL"] == b"model bytes" and sections[b"LATS"] == b"\x00" * 9
    assert core.read_header(data) == header
    assert core.read_header(bytearray(data)) == header and core.read_header(memoryview(data)) == header


@pytest.mark.parametrize("channels, mode", [(1, "L"), (2, "LA"), (3, "RGB"), (4, "RGBA")])
def test_modes(channels, mode):
    assert core.read_header(fake_file(channels=channels)).mode == mode


def test_empty_metadata_is_not_stored_and_unknown_sections_are_kept():
    data = fake_file(metadata={"exif": b"", "xmp": None}, sections=[(b"MODL", b"m"), (b"zzzz", b"future")])
    header, sections = container.parse(data)
    assert header.metadata == {}
    assert sections[b"zzzz"] == b"future"


def test_read_header_from_a_path(tmp_path):
    path = tmp_path / "a.ani"
    path.write_bytes(fake_file())
    assert core.read_header(path) == core.read_header(str(path)) == core.read_header(path.read_bytes())


def test_unknown_model_code_reads_but_does_not_decode():
    data = fake_file(model_code=200)
    assert core.read_header(data).model == "unknown-200"
    with pytest.raises(AniFormatError, match="model code 200"):
        core.decode(data)


@pytest.mark.parametrize("version", [0, 4, 255, 65535])
def test_unknown_version_is_refused(version):
    data = forge(fake_file(), version=version)
    with pytest.raises(AniFormatError, match="version") as info:
        core.read_header(data)
    assert str(version) in str(info.value)
    assert not isinstance(info.value, NotAniError)


def test_trailing_data_is_refused():
    data = fake_file()
    for extra in (b"\x00", b"junk", section(b"MODL", b"x")):
        with pytest.raises(AniFormatError, match="trailing"):
            core.read_header(data + extra)


def test_duplicate_section_is_refused():
    data = fake_file(sections=[(b"MODL", b"a"), (b"LATS", b"b"), (b"MODL", b"c")])
    with pytest.raises(AniFormatError, match="duplicate"):
        core.read_header(data)
    meta = prelude(fake_file()) + section(b"eXIf", b"1") + section(b"eXIf", b"2") + section(b"END ", b"")
    with pytest.raises(AniFormatError, match="duplicate"):
        core.read_header(meta)


def test_missing_end_marker_and_end_with_data_are_refused():
    data = fake_file()
    body = data[: -len(section(b"END ", b""))]
    with pytest.raises(AniFormatError, match="truncated"):
        core.read_header(body)
    with pytest.raises(AniFormatError, match="end marker"):
        core.read_header(body + section(b"END ", b"x"))


def test_too_many_sections_are_refused():
    many = [(b"s%03d" % i, b"") for i in range(container.MAX_SECTIONS + 2)]
    with pytest.raises(AniFormatError, match="too many"):
        core.read_header(fake_file(sections=many))


@pytest.mark.parametrize("field, value, words", [("channels", 0, "channels"), ("channels", 5, "channels"),
                                                 ("bits", 1, "bits"), ("bits", 9, "bits"),
                                                 ("bits", 0, "bits")])
def test_impossible_header_values_are_refused(field, value, words):
    with pytest.raises(AniFormatError, match=words):
        core.read_header(forge(fake_file(), **{field: value}))


def test_short_header_length_is_refused():
    data = fake_file()
    head = PREAMBLE.pack(MAGIC, 1, HEADER.size - 1) + data[PREAMBLE.size : PREAMBLE.size + HEADER.size - 1]
    with pytest.raises(AniFormatError, match="header length"):
        core.read_header(head + struct.pack("<I", zlib.crc32(head)) + data[PREAMBLE.size + HEADER.size + 4 :])


# -- other formats ----------------------------------------------------------------------------------------

def _cursor() -> bytes:
    """A minimal Windows animated cursor: ``RIFF....ACON`` with an ``anih`` chunk."""
    anih = b"anih" + struct.pack("<I", 36) + struct.pack("<9I", 36, 1, 1, 0, 0, 0, 0, 10, 1)
    body = b"ACON" + anih
    return b"RIFF" + struct.pack("<I", len(body)) + body


OTHER = {
    "cursor": _cursor(),
    "cursor-prefix": b"RIFF\x00\x01\x00\x00ACON",
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00",
    "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01",
    "gif": b"GIF89a\x01\x00\x01\x00\x00\x00\x00",
    "empty": b"",
    "one byte": b"\x89",
    "magic prefix": MAGIC[:7],
    "text": b"hello, this is not an image at all",
    "zeros": bytes(64),
    "lowercase magic": b"\x89ani\r\n\x1a\n" + fake_file()[8:],
}


@pytest.mark.parametrize("name", OTHER)
def test_other_formats_raise_not_ani(name):
    data = OTHER[name]
    assert not core.is_ani(data)
    with pytest.raises(NotAniError) as info:
        core.read_header(data)
    assert isinstance(info.value, AniFormatError) and isinstance(info.value, ValueError)
    assert isinstance(info.value, AniError)
    with pytest.raises(NotAniError):
        core.decode(data)


def test_png_file_on_disk_raises_not_ani(tmp_path):
    path = tmp_path / "picture.ani"  # the extension does not matter, the magic does
    path.write_bytes(OTHER["png"])
    with pytest.raises(NotAniError):
        core.read_header(path)
    with pytest.raises(NotAniError):
        core.decode(path)


def test_is_ani_accepts_the_magic():
    assert core.is_ani(fake_file()) and core.is_ani(MAGIC)


# -- truncation and corruption ----------------------------------------------------------------------------

def test_every_truncation_is_refused(small_file):
    for n in range(len(small_file)):
        with pytest.raises(AniFormatError):
            core.read_header(small_file[:n])
    container.parse(small_file)  # the whole file is fine


@pytest.mark.parametrize("frac", [0.1, 0.5, 0.9, 0.99])
def test_decode_of_a_truncated_file_is_refused(small_file, frac):
    with pytest.raises(AniFormatError):
        core.decode(small_file[: int(len(small_file) * frac)])
    with pytest.raises(AniFormatError):
        core.decode(small_file[:-1])


def test_every_flipped_bit_is_detected(small_file):
    data = bytearray(small_file)
    missed = []
    for i in range(len(data) * 8):
        data[i // 8] ^= 1 << (i % 8)
        try:
            core.read_header(bytes(data))
        except AniFormatError:
            pass
        else:
            missed.append(i)
        data[i // 8] ^= 1 << (i % 8)
    assert not missed, f"flipped bits not detected at bit positions {missed[:20]}"


def test_decode_of_a_flipped_bit_is_refused(small_file):
    rng = np.random.default_rng(0)
    n_bits = len(small_file) * 8
    positions = sorted(set(rng.integers(0, n_bits, 40).tolist()) | {0, 70, n_bits - 1})
    for i in positions:
        data = bytearray(small_file)
        data[i // 8] ^= 1 << (i % 8)
        with pytest.raises(AniFormatError):
            core.decode(bytes(data))


def test_corrupt_payload_with_valid_checksums_raises_format_error_or_decodes(small_file):
    """A hostile file whose CRCs are all recomputed: the payload decoders must
    refuse it with AniFormatError (or decode some picture), never crash otherwise."""
    rng = np.random.default_rng(1)
    pre, secs = prelude(small_file), split_sections(small_file)
    outcomes = {"refused": 0, "decoded": 0}
    for trial in range(60):
        k = trial % len(secs)
        tag, payload = secs[k]
        buf = bytearray(payload)
        mode = trial % 3
        if mode == 0:  # random byte changes
            for pos in rng.integers(0, len(buf), 1 + trial % 4):
                buf[pos] = int(rng.integers(0, 256))
        elif mode == 1:  # truncated payload
            buf = buf[: int(rng.integers(0, len(buf)))]
        else:  # appended bytes
            buf += bytes(rng.integers(0, 256, 1 + trial % 9).astype(np.uint8))
        new = list(secs)
        new[k] = (tag, bytes(buf))
        data = pre + b"".join(section(t, d) for t, d in new) + section(b"END ", b"")
        core.read_header(data)  # the container is intact
        try:
            out = core.decode(data)
        except AniFormatError:
            outcomes["refused"] += 1
        else:
            outcomes["decoded"] += 1
            assert out.shape == (16, 24, 3) and out.dtype == np.uint8
    assert outcomes["refused"] > 0, outcomes


def test_missing_payload_section_is_refused(small_file):
    pre, secs = prelude(small_file), split_sections(small_file)
    for drop in (b"MODL", b"LATS"):
        data = pre + b"".join(section(t, d) for t, d in secs if t != drop) + section(b"END ", b"")
        with pytest.raises(AniFormatError, match=drop.decode()):
            core.decode(data)


def test_unknown_sections_ancillary_skipped_critical_refused(small_file):
    pre, secs = prelude(small_file), split_sections(small_file)
    expected = core.decode(small_file)
    body = b"".join(section(t, d) for t, d in secs)
    ancillary = pre + section(b"zNEW", b"later") + body + section(b"END ", b"")
    assert np.array_equal(core.decode(ancillary), expected)
    critical = pre + section(b"ZNEW", b"needed") + body + section(b"END ", b"")
    assert core.read_header(critical).size == (24, 16)  # the header stays readable
    with pytest.raises(AniFormatError, match="critical section"):
        core.decode(critical)


@pytest.mark.parametrize("field, delta", [("n_latents", 1), ("n_latents", -1), ("n_params", 1), ("channels", -1),
                                          ("width", 1), ("height", -1)])
def test_header_inconsistent_with_the_payload_is_refused(small_file, field, delta):
    header = core.read_header(small_file)
    value = {"n_latents": header.n_latents, "n_params": header.n_params, "channels": header.channels,
             "width": header.width, "height": header.height}[field]
    data = forge(small_file, **{field: value + delta})
    core.read_header(data)  # plausible on its own
    with pytest.raises(AniFormatError):
        core.decode(data)


# -- hostile headers ----------------------------------------------------------------------------------

HOSTILE = [
    dict(width=2**32 - 1),
    dict(height=2**32 - 1),
    dict(width=0),
    dict(height=0),
    dict(width=65536, height=65536),
    dict(width=2**17, height=1),
    dict(n_latents=2**32 - 1),
    dict(n_params=2**32 - 1),
    dict(n_params=container.MAX_PARAMS + 1),
]


@pytest.mark.parametrize("fields", HOSTILE, ids=[",".join(f"{k}={v}" for k, v in f.items()) for f in HOSTILE])
def test_hostile_header_raises_limit_error_before_allocating(small_file, fields):
    data = forge(small_file, **fields)
    # the header CRC is valid: it is the limits that refuse the file
    _, _, hlen = PREAMBLE.unpack_from(data, 0)
    assert struct.unpack_from("<I", data, PREAMBLE.size + hlen)[0] == zlib.crc32(data[: PREAMBLE.size + hlen])
    tracemalloc.start()
    try:
        with pytest.raises(AniLimitError) as info:
            core.read_header(data)
        with pytest.raises(AniLimitError):
            core.decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(info.value, AniFormatError) and isinstance(info.value, ValueError)
    assert peak < 2**20, f"{peak} bytes allocated while refusing a hostile header"


def test_hostile_header_alone_is_refused():
    head = PREAMBLE.pack(MAGIC, 1, HEADER.size) + HEADER.pack(2**31, 2**31, 3, 0, 4, 0, 2**31, 2**31, 75, 5, 0)
    with pytest.raises(AniLimitError):
        core.read_header(head + struct.pack("<I", zlib.crc32(head)))


def test_hostile_section_length_is_refused_without_allocating(small_file):
    pre = prelude(small_file)
    data = pre + SECTION.pack(b"MODL", 2**32 - 1) + b"\x00" * 16
    tracemalloc.start()
    try:
        with pytest.raises(AniFormatError, match="beyond the end"):
            core.read_header(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def test_hostile_word_count_in_a_payload_is_refused(small_file):
    pre, secs = prelude(small_file), split_sections(small_file)
    secs = [(t, struct.pack("<I", 2**32 - 1) + d[4:]) if t == b"LATS" else (t, d) for t, d in secs]
    data = pre + b"".join(section(t, d) for t, d in secs) + section(b"END ", b"")
    with pytest.raises(AniFormatError, match="words"):
        core.decode(data)


# -- reading a header without torch -----------------------------------------------------------------------

BLOCK_TORCH = r"""
import sys

class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is blocked in this test (import of {name})")
        return None

sys.meta_path.insert(0, BlockTorch())
try:
    import torch
except ImportError:
    pass
else:
    raise SystemExit("the blocker did not block torch")

import core

path = sys.argv[1]
h = core.read_header(path)
assert (h.width, h.height, h.mode, h.model, h.bits, h.version) == (24, 16, "RGB", "grid", 4, core.FORMAT_VERSION), h
with open(path, "rb") as fh:
    data = fh.read()
assert core.read_header(data) == h and core.is_ani(data)
try:
    core.read_header(b"RIFF\x00\x00\x00\x00ACON")
except core.NotAniError:
    pass
else:
    raise SystemExit("a cursor was read as .ani")
assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")], "torch was imported"
print("ok", h.n_latents, h.n_params)
"""


def test_read_header_works_with_torch_unimportable(small_file, tmp_path):
    path = tmp_path / "small.ani"
    path.write_bytes(small_file)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    out = subprocess.run([sys.executable, "-c", BLOCK_TORCH, str(path)], capture_output=True, text=True,
                         env=env, cwd=str(tmp_path), timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    header = core.read_header(small_file)
    assert out.stdout.split() == ["ok", str(header.n_latents), str(header.n_params)]
