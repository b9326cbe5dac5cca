"""The siren and mfn families: round trips, Once-for-All sub-networks stored
and selected, extraction, progressive (truncated) supernet files, options.

Fits are tiny (24x24 images, a (3, 16) supernet, effort 1 or 2) and each
runs once per session.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

pytest.importorskip("torch")

import core  # noqa: E402
from core import container  # noqa: E402
from core.inr.layout import InrArch, elastic_choices  # noqa: E402

FAMILIES = {
    "siren": dict(model="siren"),
    "mfn-fourier": dict(model="mfn", filter="fourier"),
    "mfn-gabor": dict(model="mfn", filter="gabor"),
}
SUPERNET = (3, 16)


@pytest.fixture(scope="session")
def inr_image(synth):
    return synth(3, w=24, h=24, seed=4)


@pytest.fixture(scope="session")
def supernets(inr_image):
    """One ``subnet='all'`` file per family."""
    return {name: core.encode(inr_image, effort=2, supernet=SUPERNET, subnet="all", seed=1, **kw)
            for name, kw in FAMILIES.items()}


def _decode_quiet(data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", core.AniTruncatedWarning)
        return core.decode(data, **kw)


# -- round trips ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_round_trips(supernets, inr_image, metrics, family):
    psnr, flat_image = metrics
    data = supernets[family]
    header = core.read_header(data)
    assert header.model == FAMILIES[family]["model"] and header.size == (24, 24) and header.mode == "RGB"
    assert header.flags & container.FLAG_PROGRESSIVE and not header.truncated
    out = core.decode(data)
    assert out.shape == inr_image.shape and out.dtype == np.uint8
    assert psnr(inr_image, out) > psnr(inr_image, flat_image(inr_image)) + 3
    assert np.array_equal(core.decode(data), out)  # deterministic on the CPU


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_other_modes_round_trip(synth, metrics, mode):
    psnr, flat_image = metrics
    image = synth(1 if mode == "L" else 4, w=16, h=12)
    data = core.encode(image, model="siren", effort=2, supernet=(2, 16), elastic="none")
    out = core.decode(data)
    assert out.shape == image.shape and core.read_header(data).mode == mode
    assert psnr(image, out) > psnr(image, flat_image(image)) + 3


def test_same_seed_gives_identical_bytes(inr_image):
    kw = dict(model="mfn", effort=1, supernet=(2, 8), seed=5)
    assert core.encode(inr_image, **kw) == core.encode(inr_image, **kw)


def test_decoding_at_another_size(supernets):
    out = core.decode(supernets["siren"], size=(40, 30))
    assert out.shape == (30, 40, 3)


# -- sub-networks ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_stored_subnet_decodes_and_extracts_to_the_same_pixels(supernets, family):
    data = supernets[family]
    info = core.describe(data)
    depths, widths = elastic_choices(*SUPERNET, "depth+width")
    assert info["depths"] == list(depths) and info["widths"] == list(widths)
    subnets = [(s["depth"], s["width"]) for s in info["subnets"]]
    assert sorted(subnets) == sorted((d, w) for d in depths for w in widths)
    params = [s["params"] for s in info["subnets"]]
    assert params == sorted(params)  # stored smallest first
    images = {}
    for sub in subnets:
        images[sub] = core.decode(data, subnet=sub)
        small = core.extract(data, sub)
        assert len(small) < len(data)
        assert np.array_equal(core.decode(small), images[sub])
        one = core.describe(small)["subnets"]
        assert [(s["depth"], s["width"]) for s in one] == [sub]
        assert not core.read_header(small).flags & container.FLAG_PROGRESSIVE
    assert len({im.tobytes() for im in images.values()}) == len(images)  # each is its own network
    assert np.array_equal(core.decode(data), images[subnets[-1]])


def test_named_subnets_at_decode(supernets):
    data = supernets["siren"]
    arch_order = [(s["depth"], s["width"]) for s in core.describe(data)["subnets"]]
    assert np.array_equal(core.decode(data, subnet="full"), core.decode(data, subnet=max(arch_order)))
    assert np.array_equal(core.decode(data, subnet="small"), core.decode(data, subnet=(2, 4)))
    assert np.array_equal(core.decode(data, subnet="medium"), core.decode(data, subnet=(2, 8)))


@pytest.mark.parametrize("bad", [(4, 16), (2, 5), "huge", "all", (2,)])
def test_unknown_subnet_at_decode_is_refused(supernets, bad):
    with pytest.raises(core.AniOptionError, match="subnet"):
        core.decode(supernets["siren"], subnet=bad)


def test_subnet_stored_at_save_time_is_a_smaller_file(inr_image):
    kw = dict(model="siren", effort=1, supernet=SUPERNET, seed=2)
    full = core.encode(inr_image, subnet="full", **kw)
    one = core.encode(inr_image, subnet=(2, 8), **kw)
    small = core.encode(inr_image, subnet="small", **kw)
    assert len(small) < len(one) < len(full)
    assert [(s["depth"], s["width"]) for s in core.describe(one)["subnets"]] == [(2, 8)]
    assert core.decode(one).shape == (24, 24, 3)
    with pytest.raises(core.AniOptionError, match="subnet"):
        core.decode(one, subnet=(3, 16))  # not in this file
    # the same supernet fit: the stored (2, 8) is the one "all" holds
    everything = core.encode(inr_image, subnet="all", **kw)
    assert core.extract(everything, (2, 8)) == one


def test_first_and_last_layer_bits_are_stored_and_used(inr_image):
    lo = core.encode(inr_image, model="siren", effort=1, supernet=(2, 8), elastic="none", first_bits=4, last_bits=3)
    hi = core.encode(inr_image, model="siren", effort=1, supernet=(2, 8), elastic="none", first_bits=12, last_bits=12)
    a, b = core.describe(lo), core.describe(hi)
    assert (a["first_bits"], a["last_bits"], b["first_bits"], b["last_bits"]) == (4, 3, 12, 12)
    assert len(lo) < len(hi)
    from core.inr.bitstream import read_ints
    from core.inr.layout import TAG_ARCH

    header, sections = container.parse(lo)
    arch, _ = InrArch.unpack(sections[TAG_ARCH], header.bits, 3, header.n_params)
    ints = read_ints(arch, sections, 0)
    for t, q in zip(arch.tensors, ints):  # LSQ integers lie in the signed range of their role's bits
        b = arch.bits_of(t.role)
        assert q.min() >= -(2 ** (b - 1)) and q.max() <= 2 ** (b - 1) - 1, t.name


# -- progressive files ----------------------------------------------------------------------------------

def test_every_prefix_decodes_as_its_largest_complete_subnet_or_is_refused(supernets):
    data = supernets["siren"]
    info = core.describe(data)["subnets"]
    ends = [s["bytes"] for s in info]
    reference = {(s["depth"], s["width"]): core.decode(data, subnet=(s["depth"], s["width"])) for s in info}
    cuts = sorted(set(range(0, len(data), 13)) | {e for e in ends} | {e - 1 for e in ends} | {len(data) - 1})
    decoded = 0
    for n in cuts:
        prefix = data[:n]
        complete = [(s["depth"], s["width"]) for s, e in zip(info, ends) if e <= n]
        if not complete:
            with pytest.raises(core.AniFormatError, match="truncated" if n >= 8 else "not an .ani"):
                core.decode(prefix)
            continue
        with pytest.warns(core.AniTruncatedWarning) as rec:
            out = core.decode(prefix)
        assert rec[0].message.subnet == complete[-1]
        assert str(complete[-1]) in str(rec[0].message)
        assert np.array_equal(out, reference[complete[-1]]), n
        assert core.read_header(prefix).truncated
        decoded += 1
    assert decoded >= len(info) - 1


def test_a_truncated_supernet_refuses_a_subnet_it_lacks(supernets):
    data = supernets["mfn-fourier"]
    info = core.describe(data)["subnets"]
    prefix = data[: info[2]["bytes"]]
    with pytest.raises(core.AniFormatError, match="not complete"):
        core.decode(prefix, subnet=(info[-1]["depth"], info[-1]["width"]))
    with pytest.warns(core.AniTruncatedWarning):
        assert core.decode(prefix, subnet=(info[1]["depth"], info[1]["width"])).shape == (24, 24, 3)
    assert [s["complete"] for s in core.describe(prefix)["subnets"]] == [True] * 3 + [False] * (len(info) - 3)


def test_other_truncated_files_are_still_refused(inr_image, small_file):
    one = core.encode(inr_image, model="siren", effort=1, supernet=(2, 8), subnet="full")
    for data in (one, small_file):
        for n in range(len(data) - 1, 0, -max(1, len(data) // 40)):
            with pytest.raises(core.AniFormatError):
                core.read_header(data[:n])


def test_a_corrupt_length_in_a_complete_progressive_file_is_not_taken_for_truncation(supernets):
    data = bytearray(supernets["siren"])
    header = core.read_header(bytes(data))
    last_chunk_end = core.describe(bytes(data))["subnets"][-1]["bytes"]
    # the END marker follows the last chunk: give it a huge length (and leave its CRC wrong)
    data[last_chunk_end + 4 : last_chunk_end + 8] = (10**6).to_bytes(4, "little")
    assert header.file_size == len(data)
    with pytest.raises(core.AniFormatError):
        core.decode(bytes(data))


# -- options --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, words", [
    (dict(first_bits=6), ["first_bits", "siren"]),
    (dict(model="siren", filter="gabor"), ["filter", "mfn"]),
    (dict(model="siren", supernet=(3, 30)), ["supernet", "multiple of 4"]),
    (dict(model="siren", supernet=(9, 16)), ["supernet", "1..8"]),
    (dict(model="siren", supernet="big"), ["supernet", "(depth, width)"]),
    (dict(model="mfn", subnet=(5, 16)), ["subnet", "depth in [2, 3, 4]"]),
    (dict(model="mfn", subnet=(2, 20)), ["subnet", "width in [16, 32, 48, 64]"]),
    (dict(model="mfn", subnet="tiny"), ["subnet", "all"]),
    (dict(model="mfn", elastic="both"), ["elastic", "depth+width"]),
    (dict(model="mfn", filter="wavelet"), ["filter", "gabor"]),
    (dict(model="siren", last_bits=13), ["last_bits", "2..12"]),
    (dict(subnet="all"), ["subnet", "full"]),
])
def test_invalid_inr_options_are_refused(kw, words):
    with pytest.raises(core.AniOptionError) as info:
        core.EncodeOptions(**kw)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_inr_option_defaults_and_normalisation():
    from core import options as opt

    o = core.EncodeOptions(model="siren", subnet=[2, "16"], supernet=[2, 16])
    assert o.subnet == (2, 4 * 4) and o.supernet == (2, 16)
    d = core.EncodeOptions(model="mfn")
    assert d.resolved_supernet() == opt.DEFAULT_SUPERNET and d.resolved_filter() == opt.DEFAULT_FILTER
    assert d.resolved_layer_bits() == (opt.DEFAULT_FIRST_BITS, opt.DEFAULT_LAST_BITS)
    assert d.elastic_choices() == ((2, 3, 4), (16, 32, 48, 64))
    assert core.EncodeOptions(model="mfn", elastic="none").elastic_choices() == ((4,), (64,))


# -- adapters -------------------------------------------------------------------------------------------

def test_cli_info_lists_subnets_and_decode_selects_one(supernets, tmp_path, capsys):
    from core import cli

    path = tmp_path / "s.ani"
    path.write_bytes(supernets["siren"])
    assert cli.main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    subs = info["network"]["subnets"]
    assert len(subs) == 8 and subs[0]["params"] < subs[-1]["params"] and subs[-1]["bytes"] < len(supernets["siren"])
    assert cli.main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "2x4:" in text and "3x16:" in text and "subnets:" in text
    out = tmp_path / "o.png"
    assert cli.main(["decode", str(path), str(out), "--subnet", "2x8"]) == 0
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(out)), core.decode(supernets["siren"], subnet=(2, 8)))
    cut = tmp_path / "cut.ani"
    cut.write_bytes(supernets["siren"][: subs[3]["bytes"] + 2])
    assert cli.main(["decode", str(cut), str(tmp_path / "c.png")]) == 0
    err = capsys.readouterr().err
    assert "note" in err and f"({subs[3]['depth']}, {subs[3]['width']})" in err
    assert cli.main(["info", str(cut)]) == 0
    assert "missing (truncated)" in capsys.readouterr().out


def test_cli_encode_options(inr_image, tmp_path):
    from PIL import Image

    from core import cli

    src = tmp_path / "in.png"
    Image.fromarray(inr_image).save(src)
    dst = tmp_path / "o.ani"
    assert cli.main(["encode", str(src), str(dst), "-q", "--model", "mfn", "--filter", "gabor", "--supernet", "2x8",
                     "--elastic", "width", "--subnet", "2x4", "--effort", "1", "--first-bits", "7"]) == 0
    info = core.describe(dst)
    assert info["network"] == "mfn-gabor" and info["first_bits"] == 7
    assert [(s["depth"], s["width"]) for s in info["subnets"]] == [(2, 4)]
    assert cli.main(["encode", str(src), str(tmp_path / "x.ani"), "--first-bits", "7"]) == 2  # grid: refused


def test_pillow_and_imageio_select_a_subnet(supernets, tmp_path):
    pytest.importorskip("PIL")
    import pillow_ani
    from PIL import Image

    data = supernets["mfn-gabor"]
    path = tmp_path / "g.ani"
    path.write_bytes(data)
    want = core.decode(data, subnet=(2, 8))
    with Image.open(path) as im:
        im.set_subnet((2, 8))
        assert np.array_equal(np.asarray(im), want)
    pillow_ani.register(subnet=(2, 8))
    try:
        with Image.open(path) as im:
            assert np.array_equal(np.asarray(im), want)
    finally:
        pillow_ani.register(subnet=None)
    cut = tmp_path / "cut.ani"
    cut.write_bytes(data[: core.describe(data)["subnets"][1]["bytes"]])
    with Image.open(cut) as im, pytest.warns(core.AniTruncatedWarning):
        im.load()
    assert im.info["ani_truncated_subnet"] == (core.describe(data)["subnets"][1]["depth"],
                                               core.describe(data)["subnets"][1]["width"])
    iio = pytest.importorskip("imageio.v3")
    import imageio_ani  # noqa: F401

    assert np.array_equal(iio.imread(path, subnet=(2, 8)), want)
