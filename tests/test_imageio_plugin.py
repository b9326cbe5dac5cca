"""The imageio plugin, through imageio's public v3 and v2 APIs on small Kodak crops.

Every fit uses effort=1 on images of at most 24x16 pixels; the main file is
fitted once per module. imageio's plugin and extension tables are snapshotted
before and restored after every test.
"""
from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("imageio")
import imageio  # noqa: E402
import imageio.v2 as iio2  # noqa: E402
import imageio.v3 as iio  # noqa: E402
from imageio.config import PluginConfig, known_extensions, known_plugins  # noqa: E402
from imageio.core.request import InitializationError  # noqa: E402
from imageio.core.v3_plugin_api import ImageProperties, PluginV3  # noqa: E402

import core  # noqa: E402
import imageio_ani  # noqa: E402
from imageio_ani.plugin import AniImageError  # noqa: E402
from plugin_support import (  # noqa: E402
    cursor_bytes, kodak_crop, restore_imageio, same_imageio, section_data, snapshot_imageio, subprocess_env,
)

ICC = b"\x00\x00\x02\x00fake icc profile, stored verbatim"
EXIF = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x00\x00"
XMP = b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>"


@pytest.fixture(autouse=True)
def imageio_registry():
    snap = snapshot_imageio()
    yield
    restore_imageio(snap)
    assert same_imageio(snapshot_imageio(), snap)


@pytest.fixture(scope="module")
def image():
    return kodak_crop("kodim23")


@pytest.fixture(scope="module")
def ani_file(tmp_path_factory, image):
    """``iio.imwrite("x.ani", img, bits=4, ...)`` once, with metadata."""
    path = tmp_path_factory.mktemp("imageio_ani") / "kodim23.ani"
    iio.imwrite(path, image, bits=4, effort=1, icc_profile=ICC, exif=EXIF, xmp=XMP)
    return path


def small(channels: int = 3) -> np.ndarray:
    crop = kodak_crop("kodim03", (400, 300, 412, 308))
    if channels == 1:
        return crop[:, :, 1]
    if channels == 2:
        return np.dstack([crop[:, :, 1], np.full(crop.shape[:2], 200, np.uint8)])
    if channels == 4:
        return np.dstack([crop, np.full(crop.shape[:2], 128, np.uint8)])
    return crop


# -- registration -------------------------------------------------------------------------------------

def test_registered_first_for_the_ani_extension():
    assert known_extensions[".ani"][0].priority[0] == "ani"
    assert next(iter(known_plugins)) == "ani"
    assert known_plugins["ani"].plugin_class.__name__ == "AniPlugin"


def test_register_is_idempotent_and_unregister_restores():
    snap = snapshot_imageio()
    imageio_ani.register()
    imageio_ani.register()
    assert same_imageio(snapshot_imageio(), snap)
    imageio_ani.unregister()
    assert "ani" not in known_plugins and ".ani" not in known_extensions
    others = snapshot_imageio()
    assert [k for k, _ in others["plugins"]] == [k for k, _ in snap["plugins"] if k != "ani"]
    imageio_ani.register()
    assert same_imageio(snapshot_imageio(), snap)


def test_register_leaves_a_foreign_plugin_named_ani_alone():
    imageio_ani.unregister()
    foreign = PluginConfig(name="ani", class_name="CursorPlugin", module_name=__name__)
    known_plugins["ani"] = foreign
    with pytest.warns(RuntimeWarning, match="already registered"):
        imageio_ani.register()
    assert known_plugins["ani"] is foreign and ".ani" not in known_extensions
    imageio_ani.unregister()  # not ours: left in place
    assert known_plugins["ani"] is foreign


def test_import_does_not_import_torch_and_reads_properties(ani_file):
    code = """
import sys
import imageio.v3 as iio
import imageio_ani
props, meta = iio.improps(sys.argv[1]), iio.immeta(sys.argv[1])
assert props.shape == (16, 24, 3) and meta["bits"] == 4, (props, meta)
assert "torch" not in sys.modules, "improps/immeta imported torch"
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code, str(ani_file)], capture_output=True, text=True,
                         env=subprocess_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# -- reading ------------------------------------------------------------------------------------------

def test_imwrite_bits_4_writes_our_format_not_a_palette(ani_file, image):
    data = ani_file.read_bytes()
    assert core.is_ani(data)
    header = core.read_header(data)
    assert (header.bits, header.mode, header.size, header.effort) == (4, "RGB", (24, 16), 1)
    # the very bytes of core.encode on the unquantized pixels: no palette step on the way
    metadata = {"icc_profile": ICC, "exif": EXIF, "xmp": XMP}
    assert data == core.encode(image, bits=4, effort=1, metadata=metadata)


def test_imread_and_friends(ani_file):
    expected = core.decode(ani_file)
    np.testing.assert_array_equal(iio.imread(ani_file), expected)
    np.testing.assert_array_equal(iio.imread(str(ani_file), plugin="ani"), expected)
    np.testing.assert_array_equal(iio.imread(ani_file, index=...), expected[None])
    np.testing.assert_array_equal(iio.imread(ani_file, size=(12, 8)), core.decode(ani_file, size=(12, 8)))
    assert [frame.shape for frame in iio.imiter(ani_file)] == [(16, 24, 3)]
    with open(ani_file, "rb") as fh:
        np.testing.assert_array_equal(iio.imread(fh), expected)
    with pytest.raises(ValueError, match="one image"):
        iio.imread(ani_file, index=1)


def test_v2_api(ani_file, tmp_path):
    expected = core.decode(ani_file)
    np.testing.assert_array_equal(iio2.imread(ani_file), expected)
    np.testing.assert_array_equal(iio2.imread(ani_file, format="ani"), expected)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # imageio.imread announces the v3 switch
        np.testing.assert_array_equal(imageio.imread(ani_file), expected)
    out = tmp_path / "v2.ani"
    iio2.imwrite(out, small(1), bits=3, effort=1)
    header = core.read_header(out)
    assert (header.mode, header.bits) == ("L", 3)


def test_improps_and_immeta(ani_file):
    assert iio.improps(ani_file) == ImageProperties(shape=(16, 24, 3), dtype=np.dtype(np.uint8))
    batch = iio.improps(ani_file, index=...)
    assert (batch.shape, batch.is_batch, batch.n_images) == ((1, 16, 24, 3), True, 1)
    assert iio.improps(ani_file, size=(12, 8)).shape == (8, 12, 3)
    meta = iio.immeta(ani_file)
    header = core.read_header(ani_file)
    assert meta["mode"] == "RGB" and (meta["width"], meta["height"]) == (24, 16)
    assert (meta["bits"], meta["model"], meta["file_size"]) == (4, "grid", header.file_size)
    assert (meta["icc_profile"], meta["exif"], meta["xmp"]) == (ICC, EXIF, XMP)


def test_bytes_in_and_out_and_every_option_reaches_the_encoder():
    options = dict(model="grid", bits=3, quality=40, rounding="ssl", subnet="full", effort=1, device="cpu", seed=5,
                   ssl_a=1.7, tau_max=0.6, tau_decay=3.0)
    inr = dict(options, model="mfn", subnet=(2, 4), supernet=(2, 8), elastic="width", filter="gabor",
               first_bits=6, last_bits=5)
    assert set(inr) == {f.name for f in dataclasses.fields(core.EncodeOptions)}
    img = small(4)
    encoded = iio.imwrite("<bytes>", img, extension=".ani", **inr)
    assert encoded == core.encode(img, **inr)
    assert core.describe(encoded)["first_bits"] == 6
    encoded = iio.imwrite("<bytes>", img, extension=".ani", **options)
    assert encoded == core.encode(img, **options)
    assert core.read_header(encoded).mode == "RGBA"
    np.testing.assert_array_equal(iio.imread(encoded), core.decode(encoded))
    np.testing.assert_array_equal(iio.imread(encoded, plugin="ani"), core.decode(encoded))
    np.testing.assert_array_equal(iio.imread(encoded, extension=".ani"), core.decode(encoded))


def test_grey_alpha_given_as_a_list_of_one_image():
    encoded = iio.imwrite("<bytes>", [small(2)], extension=".ani", effort=1)
    assert core.read_header(encoded).mode == "LA"
    assert iio.imread(encoded).shape == (8, 12, 2)


# -- errors -------------------------------------------------------------------------------------------

def test_unknown_option_raises_and_writes_nothing(tmp_path):
    path = tmp_path / "bad.ani"
    with pytest.raises(core.AniOptionError, match="bitz"):
        iio.imwrite(path, small(), bitz=4)
    with pytest.raises(core.AniOptionError, match="bits"):
        iio.imwrite(path, small(), bits=12)
    with pytest.raises(core.AniOptionError, match="tau_max"):
        iio.imwrite(path, small(), rounding="sga", tau_max=0)
    assert not path.exists()


@pytest.mark.parametrize("bad, match", [
    (np.zeros((8, 12, 3), np.uint16), "uint16"),
    (np.zeros((8, 12, 3), np.float32), "float32"),
    (np.zeros((2, 8, 12, 3), np.uint8), "batch of 2"),
    ([np.zeros((8, 12), np.uint8)] * 2, "list of 2"),
    (np.zeros((8, 12, 5), np.uint8), "shape"),
])
def test_unsupported_arrays_are_refused(tmp_path, bad, match):
    path = tmp_path / "bad.ani"
    with pytest.raises(core.AniOptionError, match=match):
        iio.imwrite(path, bad)
    assert not path.exists()


def test_writing_another_extension_is_not_claimed(tmp_path):
    with pytest.raises(OSError, match="can not handle"):
        iio.imwrite(tmp_path / "x.png", small(), plugin="ani")
    with pytest.raises(OSError) as info:
        iio.imwrite("<bytes>", small(), plugin="ani")
    assert "extension='.ani'" in str(info.value.__cause__)


def test_a_file_that_is_not_ours_raises_not_my_format(tmp_path):
    png = tmp_path / "x.png"
    iio.imwrite(png, small())
    with pytest.raises(OSError, match="can not handle") as info:  # imopen's wording for InitializationError
        iio.imread(png, plugin="ani")
    assert isinstance(info.value.__cause__, InitializationError)
    assert iio.imread(png).shape == (8, 12, 3)  # other plugins still get it


class OneWayStream(io.RawIOBase):
    """A file object that cannot seek, like a pipe."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, buffer):
        return self._data.readinto(buffer)


def test_a_stream_that_cannot_seek_is_left_to_other_plugins():
    png = iio.imwrite("<bytes>", small(), extension=".png")
    assert next(iter(known_plugins)) == "ani"  # tried first, must not consume the stream
    np.testing.assert_array_equal(iio.imread(io.BufferedReader(OneWayStream(png))), small())


class CursorPlugin(PluginV3):
    """Stands in for another plugin, one that reads Windows animated cursors."""

    def __init__(self, request):
        super().__init__(request)
        if request.firstbytes[:4] != b"RIFF" or request.firstbytes[8:12] != b"ACON":
            raise InitializationError("not a cursor")

    def read(self, **kwargs):
        return np.zeros((16, 16, 4), np.uint8)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # imageio's legacy plugins, tried in turn
def test_a_windows_cursor_is_left_to_other_plugins(tmp_path):
    cursor = tmp_path / "pointer.ani"
    cursor.write_bytes(cursor_bytes())
    with pytest.raises(OSError, match="can not handle") as info:
        iio.imread(cursor, plugin="ani")
    assert isinstance(info.value.__cause__, InitializationError)
    with pytest.raises(OSError, match="Could not find a backend"):  # nobody reads cursors: not our error
        iio.imread(cursor)
    known_plugins["cursor-test"] = PluginConfig(name="cursor-test", class_name="CursorPlugin", module_name=__name__)
    assert iio.imread(cursor).shape == (16, 16, 4)


@pytest.mark.parametrize("cut", [10, 60, -12])
def test_damaged_files_raise_a_clear_error(ani_file, tmp_path, cut):
    damaged = tmp_path / "damaged.ani"
    damaged.write_bytes(ani_file.read_bytes()[:cut])
    with pytest.raises(AniImageError, match="truncated") as info:
        iio.imread(damaged)
    assert isinstance(info.value, OSError) and isinstance(info.value, core.AniFormatError)
    with pytest.raises(AniImageError, match="truncated"):
        iio.improps(damaged)


def test_flipped_byte_is_detected(ani_file):
    data = bytearray(ani_file.read_bytes())
    at = section_data(bytes(data), b"LATS")  # not a section's length field, which would read as truncation
    data[(at.start + at.stop) // 2] ^= 0x40
    with pytest.raises(AniImageError, match="checksum"):
        iio.imread(bytes(data))
