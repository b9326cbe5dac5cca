"""The Pillow plugin, through Pillow's public API on small Kodak crops.

Every fit uses effort=1 on images of at most 24x16 pixels, and the main file is
fitted once per module. Pillow's registries are snapshotted before and restored
after every test.
"""
from __future__ import annotations

import dataclasses
import io
import struct
import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest

pytest.importorskip("PIL")
from PIL import Image, ImageCms, UnidentifiedImageError  # noqa: E402

import core  # noqa: E402
import pillow_ani  # noqa: E402
from pillow_ani import AniImageError  # noqa: E402
from plugin_support import (  # noqa: E402
    cursor_bytes, kodak_crop, restore_pillow, section_data, snapshot_pillow, subprocess_env,
)

ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:format="image/x-ani"/></rdf:RDF></x:xmpmeta>')
MAKE = 0x010F  # EXIF tag "Make"


def make_exif(make: str = "ANI test camera") -> Image.Exif:
    exif = Image.Exif()
    exif[MAKE] = make
    return exif


@pytest.fixture(autouse=True)
def pillow_registry():
    snap = snapshot_pillow()
    yield
    restore_pillow(snap)


@pytest.fixture(scope="module")
def rgb_file(tmp_path_factory):
    """A Kodak crop as a JPEG with ICC, EXIF and XMP, opened and saved to ``.ani``
    with a plain ``save(path, bits=4)``: the metadata comes from ``im.info``."""
    folder = tmp_path_factory.mktemp("pillow_ani")
    jpeg = folder / "kodim23.jpg"
    Image.fromarray(kodak_crop()).save(jpeg, quality=95, icc_profile=ICC, exif=make_exif(), xmp=XMP)
    path = folder / "kodim23.ani"
    with Image.open(jpeg) as src:
        src.save(path, bits=4, effort=1)
    return path


def small(mode: str, size=(12, 8)) -> Image.Image:
    return Image.fromarray(kodak_crop("kodim03", (400, 300, 400 + size[0], 300 + size[1]))).convert(mode)


# -- registration -----------------------------------------------------------------------------------

def test_import_registers_everything_without_torch_or_touching_others(rgb_file):
    code = """
import sys
from PIL import Image
Image.init()
before = {name: dict(getattr(Image, name)) for name in ("OPEN", "SAVE", "SAVE_ALL", "EXTENSION", "MIME")}
ids = list(Image.ID)
import pillow_ani
for name, table in before.items():
    now = getattr(Image, name)
    assert all(now[key] == value for key, value in table.items()), name
assert Image.ID == ids + ["ANI"], Image.ID
assert Image.EXTENSION[".ani"] == "ANI" and Image.MIME["ANI"] == "image/x-ani"
assert "ANI" in Image.OPEN and "ANI" in Image.SAVE and "ANI" in Image.SAVE_ALL
im = Image.open(sys.argv[1])
assert (im.format, im.mode, im.size) == ("ANI", "RGB", (24, 16)), (im.format, im.mode, im.size)
assert im.info["icc_profile"] and im.getexif()
assert "torch" not in sys.modules, "importing pillow_ani or opening a file imported torch"
im.load()
assert "torch" in sys.modules
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code, str(rgb_file)], capture_output=True, text=True,
                         env=subprocess_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_register_is_idempotent_and_unregister_restores():
    def tables():
        return {name: dict(getattr(Image, name)) for name in ("OPEN", "SAVE", "SAVE_ALL", "EXTENSION", "MIME")}

    before, ids = tables(), [i for i in Image.ID if i != "ANI"]
    pillow_ani.register()
    pillow_ani.register()
    assert tables() == before and Image.ID.count("ANI") == 1
    pillow_ani.unregister()
    assert "ANI" not in Image.ID and ".ani" not in Image.EXTENSION
    assert all("ANI" not in table for table in (Image.OPEN, Image.SAVE, Image.SAVE_ALL, Image.MIME))
    assert Image.ID == ids
    for name, table in tables().items():
        assert {k: v for k, v in before[name].items() if k not in ("ANI", ".ani")} == table
    pillow_ani.register()
    assert tables() == before


def _cursor_accept(prefix: bytes) -> bool:
    return prefix[:4] == b"RIFF" and prefix[8:12] == b"ACON"


def _open_cursor(fp, filename):
    """Stands in for another plugin, one that reads Windows animated cursors."""
    from PIL import ImageFile

    class AconImageFile(ImageFile.ImageFile):
        format = "ACONTEST"

        def _open(self):
            self._mode, self._size = "RGBA", (16, 16)

    return AconImageFile(fp, filename)


def test_register_leaves_a_foreign_ani_extension_alone(rgb_file, tmp_path):
    pillow_ani.unregister()
    Image.register_open("ACONTEST", _open_cursor, _cursor_accept)
    Image.register_extension("ACONTEST", ".ani")
    with pytest.warns(RuntimeWarning, match="extension is registered to Pillow format ACONTEST"):
        pillow_ani.register()
    assert Image.EXTENSION[".ani"] == "ACONTEST"
    assert Image.OPEN["ANI"][0] is pillow_ani.AniImageFile
    with Image.open(rgb_file) as im:  # still recognised by its signature
        assert im.format == "ANI"
    cursor = tmp_path / "pointer.ani"
    cursor.write_bytes(cursor_bytes())
    with Image.open(cursor) as im:
        assert im.format == "ACONTEST"


def test_register_leaves_a_foreign_format_id_alone():
    pillow_ani.unregister()
    Image.register_open("ANI", _open_cursor, _cursor_accept)
    with pytest.warns(RuntimeWarning, match="format id ANI is taken"):
        pillow_ani.register()
    assert Image.OPEN["ANI"][0] is _open_cursor
    assert "ANI" not in Image.SAVE and ".ani" not in Image.EXTENSION


# -- open and load ------------------------------------------------------------------------------------

def test_open_reads_the_header_and_load_renders(rgb_file):
    with Image.open(rgb_file) as im:
        assert (im.format, im.mode, im.size) == ("ANI", "RGB", (24, 16))
        assert im.get_format_mimetype() == "image/x-ani"
        assert im.ani_header == core.read_header(rgb_file)
        assert im.ani_header.bits == 4
        im.load()
        assert im.fp is None
        np.testing.assert_array_equal(np.asarray(im), core.decode(rgb_file))


def test_open_from_file_objects(rgb_file):
    expected = core.decode(rgb_file)
    with open(rgb_file, "rb") as fh, Image.open(fh) as im:
        np.testing.assert_array_equal(np.asarray(im), expected)
    with Image.open(io.BytesIO(rgb_file.read_bytes())) as im:
        np.testing.assert_array_equal(np.asarray(im), expected)


def test_incremental_parser(rgb_file):
    """ImageFile.Parser feeds partial data: a truncated .ani is an OSError, so it waits for more."""
    from PIL import ImageFile

    parser = ImageFile.Parser()
    data = rgb_file.read_bytes()
    for start in range(0, len(data), 64):
        parser.feed(data[start:start + 64])
    im = parser.close()
    assert (im.format, im.size) == ("ANI", (24, 16))
    np.testing.assert_array_equal(np.asarray(im), core.decode(data))


def test_metadata_survives_open_and_save(rgb_file):
    with Image.open(rgb_file) as im:
        assert im.info["icc_profile"] == ICC
        assert im.info["xmp"] == XMP
        assert im.getexif()[MAKE] == "ANI test camera"


def test_draft_renders_directly_at_the_reduced_size(rgb_file):
    with Image.open(rgb_file) as im:
        assert im.draft(None, (30, 30)) is None and im.size == (24, 16)  # never enlarges
        assert im.draft("RGB", (12, 6)) == ("RGB", (0, 0, 12, 8))  # covers 12x6, keeps the aspect ratio
        assert im.size == (12, 8)
        np.testing.assert_array_equal(np.asarray(im), core.decode(rgb_file, size=(12, 8)))
        assert im.draft(None, (6, 4)) is None  # loaded: no effect


def test_thumbnail_uses_draft(rgb_file):
    with Image.open(rgb_file) as im:
        im.thumbnail((6, 6))  # draft((12, 12)) renders 18x12, then Pillow resizes to 6x4
        assert im.size == (6, 4)
        reference = Image.fromarray(core.decode(rgb_file, size=(18, 12)))
        reference.thumbnail((6, 6))
        np.testing.assert_array_equal(np.asarray(im), np.asarray(reference))


def test_read_defaults_from_register(rgb_file):
    pillow_ani.register(scale=0.5)
    with Image.open(rgb_file) as im:
        assert im.size == (12, 8)
        np.testing.assert_array_equal(np.asarray(im), core.decode(rgb_file, size=(12, 8)))
    pillow_ani.register(scale=None, size=(30, 20), subnet="full", device="cpu")
    with Image.open(rgb_file) as im:
        assert im.size == (30, 20)
        np.testing.assert_array_equal(np.asarray(im), core.decode(rgb_file, size=(30, 20)))
    pillow_ani.register(size=None, subnet="huge")
    with Image.open(rgb_file) as im, pytest.raises(core.AniOptionError, match="subnet"):
        im.load()


@pytest.mark.parametrize("options, match", [
    ({"bogus": 1}, "unknown read option"),
    ({"scale": 0}, "scale"),
    ({"size": (0, 5)}, "size"),
    ({"size": (4, 4), "scale": 2}, "either size or scale"),
    ({"device": "tpu"}, "device"),
])
def test_invalid_read_defaults(options, match):
    with pytest.raises(core.AniOptionError, match=match):
        pillow_ani.register(**options)


def test_decompression_bomb_limit_is_honoured(rgb_file):
    Image.MAX_IMAGE_PIXELS = 300  # the file holds 24x16 = 384 pixels
    with pytest.warns(Image.DecompressionBombWarning):
        Image.open(rgb_file).close()
    Image.MAX_IMAGE_PIXELS = 150
    with pytest.raises(Image.DecompressionBombError):
        Image.open(rgb_file)
    Image.MAX_IMAGE_PIXELS = 1000
    pillow_ani.register(scale=4)  # renders 96x64: the limit applies to the rendered size
    with pytest.raises(Image.DecompressionBombError):
        Image.open(rgb_file)


# -- errors when reading ------------------------------------------------------------------------------

def _damaged(data: bytes, how: str) -> bytes:
    if how == "truncated-preamble":
        return data[:10]
    if how == "truncated-section":
        return data[: len(data) // 2]
    if how == "missing-end":
        return data[:-12]
    if how == "flipped-byte":  # inside the latents' data, whatever the file's layout (its CRC catches it)
        at = section_data(data, b"LATS")
        mid = (at.start + at.stop) // 2
        return data[:mid] + bytes([data[mid] ^ 0x40]) + data[mid + 1:]
    if how == "huge-size":  # a consistent header (valid checksum) declaring 100000 x 16 pixels
        hlen = struct.unpack_from("<H", data, 10)[0]
        head = bytearray(data[: 12 + hlen])
        struct.pack_into("<I", head, 12, 100_000)
        return bytes(head) + struct.pack("<I", zlib.crc32(bytes(head))) + data[12 + hlen + 4:]
    raise AssertionError(how)


@pytest.mark.parametrize("how, match", [
    ("truncated-preamble", "truncated"),
    ("truncated-section", "truncated"),
    ("missing-end", "truncated"),
    ("flipped-byte", "checksum"),
    ("huge-size", "100000x16"),
])
def test_damaged_files_raise_a_clear_error(rgb_file, how, match):
    with pytest.raises(AniImageError, match=match) as info:
        Image.open(io.BytesIO(_damaged(rgb_file.read_bytes(), how)))
    assert isinstance(info.value, OSError) and isinstance(info.value, core.AniFormatError)


def test_a_windows_cursor_is_not_claimed(tmp_path):
    cursor = tmp_path / "pointer.ani"
    cursor.write_bytes(cursor_bytes())
    assert not core.is_ani(cursor_bytes())
    with pytest.raises(UnidentifiedImageError):  # Pillow has no cursor reader: nobody claims it
        Image.open(cursor)
    with pytest.raises(UnidentifiedImageError):
        Image.open(cursor, formats=["ANI"])
    Image.register_open("ACONTEST", _open_cursor, _cursor_accept)  # a plugin that does read cursors
    with Image.open(cursor) as im:
        assert im.format == "ACONTEST"


def test_another_format_with_the_ani_extension_opens_as_itself(tmp_path):
    path = tmp_path / "really_a_png.ani"
    small("RGB").save(path, format="PNG")
    with Image.open(path) as im:
        assert im.format == "PNG"


# -- save ---------------------------------------------------------------------------------------------

def test_every_option_reaches_the_encoder():
    """The plugin's bytes equal core.encode's with the same options (fits are deterministic)."""
    options = dict(model="grid", bits=3, quality=40, rounding="ssl", subnet="full", effort=1, device="cpu", seed=7,
                   ssl_a=1.7, tau_max=0.6, tau_decay=3.0)
    inr = dict(options, model="siren", subnet="small", supernet=(2, 8), elastic="depth", first_bits=6, last_bits=5)
    assert set(inr) | {"filter"} == {f.name for f in dataclasses.fields(core.EncodeOptions)}
    src = small("RGB", (16, 12))
    buffer = io.BytesIO()
    src.save(buffer, format="ANI", **inr)
    assert buffer.getvalue() == core.encode(np.asarray(src), **inr)
    assert core.describe(buffer.getvalue())["last_bits"] == 5
    calls = []
    buffer = io.BytesIO()
    src.save(buffer, format="ANI", progress=lambda done, total: calls.append((done, total)),
             optimize=True, dpi=(72, 72),  # Pillow's generic hints: accepted, ignored
             **options)
    assert buffer.getvalue() == core.encode(np.asarray(src), **options)
    header = core.read_header(buffer.getvalue())
    assert (header.bits, header.quality, header.effort, header.model) == (3, 40, 1, "grid")
    assert calls and calls[-1][0] == calls[-1][1]


@pytest.mark.parametrize("name, value", [
    ("model", "nope"), ("bits", 9), ("quality", 101), ("rounding", "bogus"), ("subnet", "huge"),
    ("effort", 0), ("device", "tpu"), ("seed", -1), ("ssl_a", 0), ("tau_max", 2), ("tau_decay", -1),
])
def test_invalid_option_values_raise_and_leave_no_file(tmp_path, name, value):
    path = tmp_path / "bad.ani"
    with pytest.raises(core.AniOptionError, match=name):
        small("RGB").save(path, **{name: value})
    assert not path.exists()


def test_unknown_option_raises_and_leaves_no_file(tmp_path):
    path = tmp_path / "bad.ani"
    with pytest.raises(core.AniOptionError, match="unknown save option.*bitz"):
        small("RGB").save(path, bitz=4)
    assert not path.exists()


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA"])
def test_stored_modes_round_trip_with_explicit_metadata(mode):
    buffer = io.BytesIO()
    small(mode).save(buffer, format="ANI", effort=1, exif=make_exif(mode), xmp=XMP.decode())
    with Image.open(buffer) as im:
        assert im.mode == mode and im.ani_header.mode == mode
        assert im.getexif()[MAKE] == mode and im.info["xmp"] == XMP
        assert np.asarray(im).shape == ((8, 12) if mode == "L" else (8, 12, len(mode)))


def _paletted(transparent: bool) -> Image.Image:
    im = small("RGB").quantize(8)
    if transparent:
        im.info["transparency"] = 0
    return im


@pytest.mark.parametrize("make, stored", [
    (lambda: small("1"), "L"),
    (lambda: _paletted(False), "RGB"),
    (lambda: _paletted(True), "RGBA"),
    (lambda: small("PA"), "RGBA"),
    (lambda: small("CMYK"), "RGB"),
], ids=["1", "P", "P-transparency", "PA", "CMYK"])
def test_other_modes_are_converted(make, stored):
    buffer = io.BytesIO()
    make().save(buffer, format="ANI", effort=1)
    with Image.open(buffer) as im:
        assert im.mode == stored


def test_converting_drops_an_icc_profile_of_another_colour_space():
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    buffer = io.BytesIO()
    with pytest.warns(UserWarning, match="dropping the Lab ICC profile"):
        small("CMYK", (6, 4)).save(buffer, format="ANI", effort=1, icc_profile=lab)
    with Image.open(buffer) as im:
        assert im.mode == "RGB" and "icc_profile" not in im.info


@pytest.mark.parametrize("mode", ["I;16", "I", "F", "LAB"])
def test_modes_without_an_8_bit_equivalent_are_refused(tmp_path, mode):
    path = tmp_path / "deep.ani"
    with pytest.raises(OSError, match=f"cannot write mode {mode} as ANI"):
        Image.new(mode, (4, 4)).save(path)
    assert not path.exists()


def test_one_image_per_file(tmp_path):
    frames = [small("RGB"), small("L").convert("RGB")]
    with pytest.raises(core.AniOptionError, match="one image"):
        frames[0].save(io.BytesIO(), format="ANI", append_images=frames[1:])
    gif = tmp_path / "two.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    with Image.open(gif) as im, pytest.raises(core.AniOptionError, match="one image"):
        im.save(io.BytesIO(), format="ANI", save_all=True)
    buffer = io.BytesIO()
    small("L", (6, 4)).save(buffer, format="ANI", save_all=True, effort=1)  # a single frame is fine
    assert core.read_header(buffer.getvalue()).size == (6, 4)


def test_warnings_are_not_raised_for_a_plain_round_trip(rgb_file, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Image.open(rgb_file) as im:
            im.load()
