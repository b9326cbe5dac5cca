"""The core codec on arrays and bytes: round trips in every mode, decoding at
another size, the quality trade-off, the rate estimate against the bytes
written, determinism, and the golden file.

Images are tiny seeded synthetic ones (``conftest.synthetic_image``); fits use
effort 1 or 2 so the whole file runs in seconds on a CPU.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

import core  # noqa: E402
from core import container  # noqa: E402

from make_golden import (  # noqa: E402
    GOLDEN_ANI, GOLDEN_LARGE_ANI, GOLDEN_LARGE_PNG, GOLDEN_LARGE_SIZE, GOLDEN_OPTIONS, GOLDEN_PNG, GOLDEN_SIZE,
    GOLDEN_V1_ANI, GOLDEN_V1_PNG, GOLDEN_V2_ANI, GOLDEN_V2_PNG, golden_image,
)


def box_downscale(a: np.ndarray, k: int) -> np.ndarray:
    """Mean over k x k blocks (float), for (H, W) or (H, W, C)."""
    h, w = a.shape[0] // k, a.shape[1] // k
    a = a[: h * k, : w * k].astype(np.float64)
    return a.reshape(h, k, w, k, *a.shape[2:]).mean(axis=(1, 3))


# -- round trip ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_round_trip_every_mode(encoded_modes, metrics, mode):
    psnr, flat_image = metrics
    image, data = encoded_modes[mode]
    header = core.read_header(data)
    assert header.mode == mode and header.size == (image.shape[1], image.shape[0])
    assert header.channels == (1 if image.ndim == 2 else image.shape[2])
    out = core.decode(data)
    assert out.shape == image.shape and out.dtype == np.uint8
    # far better than the best constant image (the per-channel mean colour)
    assert psnr(image, out) > psnr(image, flat_image(image)) + 6, (psnr(image, out), psnr(image, flat_image(image)))
    assert psnr(image, out) > 20


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_alpha_is_coded(encoded_modes, metrics, mode):
    psnr, flat_image = metrics
    image, data = encoded_modes[mode]
    out = core.decode(data)
    alpha, alpha_out = image[:, :, -1], out[:, :, -1]
    # the decoded alpha follows the source alpha, not a constant and not a colour channel
    assert psnr(alpha, alpha_out) > psnr(alpha, flat_image(alpha)) + 6
    assert np.std(alpha_out) > 0.5 * np.std(alpha)
    for c in range(image.shape[2] - 1):
        assert psnr(alpha, alpha_out) > psnr(alpha, out[:, :, c]) + 6


def test_decode_accepts_a_path_and_bytes_like(encoded_modes, tmp_path):
    _, data = encoded_modes["RGB"]
    path = tmp_path / "x.ani"
    path.write_bytes(data)
    ref = core.decode(data)
    assert np.array_equal(core.decode(path), ref)
    assert np.array_equal(core.decode(str(path)), ref)
    assert np.array_equal(core.decode(bytearray(data)), ref)
    assert np.array_equal(core.decode(memoryview(data)), ref)
    assert core.read_header(path) == core.read_header(data)


def test_metadata_is_stored_verbatim(synth):
    meta = {"icc_profile": b"\x00\x01icc" * 10, "exif": b"Exif\x00\x00MM", "xmp": b"<x:xmpmeta/>"}
    data = core.encode(synth(3, w=12, h=8), effort=1, metadata=meta)
    assert core.read_header(data).metadata == meta
    assert core.decode(data).shape == (8, 12, 3)


def test_encode_takes_an_options_object(synth):
    image = synth(3, w=12, h=8)
    opts = core.EncodeOptions(effort=1, seed=3, quality=60, bits=5)
    data = core.encode(image, opts)
    assert data == core.encode(image, effort=1, seed=3, quality=60, bits=5)
    header = core.read_header(data)
    assert (header.bits, header.quality, header.effort) == (5, 60, 1)
    with pytest.raises(core.AniOptionError, match="not both"):
        core.encode(image, opts, effort=2)


def test_progress_callback_counts_to_the_total(synth):
    calls = []
    core.encode(synth(1, w=12, h=8), effort=1, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1] and [d for d, _ in calls] == list(range(1, len(calls) + 1))


# -- decode at another size ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
@pytest.mark.parametrize("size", [(48, 32), (12, 8), (30, 7), (1, 1)])
def test_decode_at_another_size_has_that_shape(encoded_modes, mode, size):
    image, data = encoded_modes[mode]
    out = core.decode(data, size=size)
    w, h = size
    assert out.shape == (h, w) + image.shape[2:] and out.dtype == np.uint8


def test_downsized_render_is_close_to_a_box_downscale(encoded_modes):
    _, data = encoded_modes["RGB"]
    full = core.decode(data).astype(np.float64)
    half = core.decode(data, size=(12, 8)).astype(np.float64)
    diff = np.abs(half - box_downscale(full, 2))
    # sampling the network at block centres is not the block mean, but close to it
    assert diff.mean() < 6 and np.percentile(diff, 95) < 20, (diff.mean(), np.percentile(diff, 95))


def test_upsized_render_box_downscales_to_the_stored_size(encoded_modes):
    _, data = encoded_modes["RGB"]
    full = core.decode(data).astype(np.float64)
    double = core.decode(data, size=(48, 32)).astype(np.float64)
    diff = np.abs(box_downscale(double, 2) - full)
    assert diff.mean() < 6 and np.percentile(diff, 95) < 20, (diff.mean(), np.percentile(diff, 95))


def test_decode_at_the_stored_size_equals_the_default(encoded_modes):
    _, data = encoded_modes["RGBA"]
    assert np.array_equal(core.decode(data, size=(24, 16)), core.decode(data))


@pytest.mark.parametrize("size", ["48x32", (48,), (48, 32, 1), (48.5, 32), ("a", "b"), 48])
def test_decode_rejects_a_malformed_size(small_file, size):
    with pytest.raises(core.AniOptionError, match="size"):
        core.decode(small_file, size=size)


@pytest.mark.parametrize("size", [(0, 5), (5, 0), (-1, 3), (2**17, 4)])
def test_decode_rejects_an_out_of_range_size_as_an_option_error(small_file, size):
    with pytest.raises(core.AniOptionError, match="size"):
        core.decode(small_file, size=size)


def test_decode_rejects_an_out_of_range_size(small_file):
    # whatever its class, it is a ValueError and refused before rendering
    for size in [(0, 5), (2**17, 4), (2**15, 2**15)]:
        with pytest.raises(ValueError):
            core.decode(small_file, size=size)


def test_decode_rejects_an_unknown_subnet(small_file):
    with pytest.raises(core.AniOptionError, match="subnet"):
        core.decode(small_file, subnet="tiny")


# -- rate and quality ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def quality_pair(synth):
    image = synth(3, w=32, h=32, seed=1)
    return image, {q: core.encode(image, effort=2, quality=q, seed=0) for q in (10, 90)}


def test_higher_quality_gives_more_bytes_and_higher_psnr(quality_pair, metrics):
    psnr, _ = metrics
    image, files = quality_pair
    low, high = files[10], files[90]
    assert len(high) > len(low), (len(low), len(high))
    p_low, p_high = psnr(image, core.decode(low)), psnr(image, core.decode(high))
    assert p_high > p_low + 1.0, (p_low, p_high)
    assert core.read_header(low).quality == 10 and core.read_header(high).quality == 90


@pytest.fixture(scope="session")
def rate_image(synth):
    return synth(3, w=64, h=64, seed=2)


def _rate_case(effort, quality):
    return pytest.param(effort, quality, id=f"effort{effort}-q{quality}")


@pytest.mark.parametrize(
    "effort, quality",
    [_rate_case(1, 10), _rate_case(1, 50), _rate_case(1, 90), _rate_case(2, 90), _rate_case(1, 30), _rate_case(5, 50)],
)
def test_estimated_rate_matches_the_bytes_written(rate_image, effort, quality):
    from core.grid.fit import fit_grid

    fitted = fit_grid(rate_image, core.EncodeOptions(effort=effort, quality=quality, seed=0, device="cpu"))
    estimated = fitted.stats["estimated_latent_bits"]
    written = fitted.stats["latent_section_bytes"] * 8
    assert written > 1000, "image too small: the coder's few bytes of overhead would dominate"
    # beyond the estimate, the section holds a fixed overhead: its 32-bit word count and up to two
    # words of the range coder's final state (SOAP's effort-1 fit at quality 10 wrote 1184 bits for an
    # estimate of 1125: 59 bits, 5.2 %)
    overhead = 96
    assert -0.05 * estimated <= written - estimated <= 0.05 * estimated + overhead, (
        estimated, written, (written - estimated) / estimated)


def test_a_five_pass_image_round_trips_at_its_estimated_rate():
    """136x124: level 0 has at least SUBLATTICE_MIN latents, so format version 3
    codes its even lattice in three passes; the fit's rate model and the coder
    agree on them, and the file decodes to the fit's pixels."""
    from benchmarks.file_anatomy import anatomy
    from core.grid.fit import fit_grid

    image = golden_image(GOLDEN_LARGE_SIZE)
    fitted = fit_grid(image, core.EncodeOptions(effort=1, quality=50, seed=0, device="cpu"))
    estimated, written = fitted.stats["estimated_latent_bits"], fitted.stats["latent_section_bytes"] * 8
    assert -0.05 * estimated <= written - estimated <= 0.05 * estimated + 96, (estimated, written)
    data = core.encode(image, effort=1, quality=50, seed=0)
    level0 = [p for p in anatomy(data)["passes"] if p["level"] == 0]
    assert [p["pass"] for p in level0] == [0, 1, 2, 3, 4] and all(p["latents"] for p in level0)


# -- determinism --------------------------------------------------------------------------------------

def test_same_input_options_and_seed_give_identical_bytes(encoded_modes):
    image, data = encoded_modes["RGBA"]
    again = core.encode(image.copy(), effort=2, seed=0)
    assert again == data


def test_a_different_seed_gives_different_bytes(encoded_modes):
    image, data = encoded_modes["RGBA"]
    other = core.encode(image, effort=2, seed=1)
    assert other != data
    assert core.read_header(other).size == core.read_header(data).size


@pytest.mark.parametrize("shape", [(1, 2**16 + 1), (2**16 + 1, 1, 3), (2**14 + 1, 2**14, 4)])
def test_encode_refuses_an_over_large_array_as_an_input_error_before_copying(shape):
    # a broadcast view: the check must refuse it before anything image-sized is allocated
    array = np.broadcast_to(np.zeros((1,) * len(shape), np.uint8), shape)
    with pytest.raises(core.AniOptionError, match="too large") as info:
        core.encode(array, effort=1)
    assert not isinstance(info.value, core.AniFormatError)  # an input, not a damaged file
    assert str(shape[0]) in str(info.value) and str(shape[1]) in str(info.value)


def test_encode_does_not_modify_its_input(synth):
    image = synth(3, w=12, h=8)
    before = image.copy()
    core.encode(image, effort=1)
    assert np.array_equal(image, before)


# -- golden file --------------------------------------------------------------------------------------

@pytest.mark.parametrize("ani,png,version,size", [
    (GOLDEN_ANI, GOLDEN_PNG, core.FORMAT_VERSION, GOLDEN_SIZE),
    (GOLDEN_LARGE_ANI, GOLDEN_LARGE_PNG, core.FORMAT_VERSION, GOLDEN_LARGE_SIZE),
    (GOLDEN_V2_ANI, GOLDEN_V2_PNG, 2, GOLDEN_SIZE),
    (GOLDEN_V1_ANI, GOLDEN_V1_PNG, 1, GOLDEN_SIZE),
])
def test_golden_file_decodes_to_the_expected_pixels(ani, png, version, size):
    Image = pytest.importorskip("PIL.Image")  # the golden pixels are a PNG; Pillow is a test dependency

    data = ani.read_bytes()
    assert core.read_header(data).version == version
    with Image.open(png) as im:
        expected = np.asarray(im.convert("RGB"))
    out = core.decode(data)
    assert out.shape == expected.shape == (size[1], size[0], 3)
    mismatch = np.argwhere(out != expected)
    assert mismatch.size == 0, (
        f"{len(mismatch)} values differ from {png.name}, first at {mismatch[:5].tolist()}; "
        "if the format or decoder changed on purpose, run python tests/make_golden.py"
    )


def test_golden_file_header():
    data = GOLDEN_ANI.read_bytes()
    header = core.read_header(data)
    assert data.startswith(container.MAGIC) and not data.startswith(b"RIFF")
    assert (header.width, header.height) == GOLDEN_SIZE and header.size == GOLDEN_SIZE
    assert header.mode == "RGB" and header.channels == 3
    assert header.model == "grid" and header.model_code == 0
    assert header.version == core.FORMAT_VERSION
    assert header.bits == GOLDEN_OPTIONS["bits"]
    assert header.quality == GOLDEN_OPTIONS["quality"] and header.effort == GOLDEN_OPTIONS["effort"]
    assert header.file_size == len(data)
    assert header.bpp == pytest.approx(len(data) * 8 / (GOLDEN_SIZE[0] * GOLDEN_SIZE[1]))
    assert header.metadata == {}
    # the parameter counts agree with the stored architecture
    from core.grid.arch import GridArch

    _, sections = container.parse(data)
    arch, _ = GridArch.unpack(sections[b"MODL"])
    assert arch.channels == 3
    assert header.n_params == arch.n_weights() > 0
    assert header.n_latents == arch.n_latents(GOLDEN_SIZE[1], GOLDEN_SIZE[0]) > 0
    assert set(sections) == {b"MODL", b"LATS"}


def test_golden_file_is_a_fair_picture_of_its_source(metrics):
    psnr, flat_image = metrics
    source = golden_image()
    out = core.decode(GOLDEN_ANI.read_bytes())
    # a 40-step fit of a textured image: only a sanity check that the pixels are the picture's
    assert psnr(source, out) > psnr(source, flat_image(source)) + 3
