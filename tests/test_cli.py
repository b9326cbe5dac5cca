"""The ``ani`` command: encode, decode, info, run, and its error handling.

Images are tiny seeded synthetic PNGs; every fit uses effort=1. Most calls run
``core.cli.main`` in-process; a few go through ``python -m core`` to check
exit codes and that no traceback reaches the user.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

import core  # noqa: E402
from core import cli  # noqa: E402
from core.convert import read_image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
W, H = 24, 16


def smooth_image(channels: int = 3, seed: int = 0, w: int = W, h: int = H) -> np.ndarray:
    """A seeded, smooth-ish synthetic image (gradients plus a little noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    planes = []
    for c in range(channels):
        base = 128 + 90 * np.sin(x / (3.0 + c) + c) * np.cos(y / (4.0 + c))
        planes.append(base + rng.normal(0, 4, size=(h, w)))
    a = np.clip(np.stack(planes, axis=-1), 0, 255).astype(np.uint8)
    return a[:, :, 0] if channels == 1 else a


def save_png(path: Path, array: np.ndarray, **kwargs) -> Path:
    Image.fromarray(array).save(path, **kwargs)
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m core ARGS`` from the repository root."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """One ``ani encode`` through the CLI, shared by the decode and info tests.

    The input carries an ICC profile and EXIF, which must reach the file.
    """
    d = tmp_path_factory.mktemp("cli")
    exif = Image.Exif()
    exif[0x010E] = "ani test image"  # ImageDescription
    icc = b"\x00\x00\x01\x00fake-icc-profile-for-tests" + bytes(range(64))
    src = save_png(d / "in.png", smooth_image(3), icc_profile=icc, exif=exif.tobytes())
    out = d / "in.ani"
    assert cli.main(["encode", str(src), str(out), "--effort", "1", "--quality", "60", "--bits", "5", "-q"]) == 0
    return {"dir": d, "src": src, "ani": out, "icc": icc}


# --------------------------------------------------------------------------- round trip


def test_rounding_and_temperature_flags_reach_the_fit(encoded, tmp_path):
    flags = ["--effort", "1", "--rounding", "ssl", "--ssl-a", "1.5", "--tau-max", "0.9", "--tau-decay", "3", "-q"]
    out = tmp_path / "flags.ani"
    assert cli.main(["encode", str(encoded["src"]), str(out), *flags]) == 0
    with Image.open(encoded["src"]) as im:
        pixels = np.asarray(im.convert("RGB"))
    same = core.encode(pixels, effort=1, rounding="ssl", ssl_a=1.5, tau_max=0.9, tau_decay=3)
    other = core.encode(pixels, effort=1, rounding="ssl", ssl_a=1.5, tau_max=0.3, tau_decay=3)

    def coded(data):  # the fitted sections (the CLI also stores the input's ICC profile and EXIF)
        return {tag: body for tag, body in core.container.parse(data)[1].items() if tag in (b"MODL", b"LATS")}

    assert coded(out.read_bytes()) == coded(same) != coded(other)


def test_encode_writes_header_with_options(encoded):
    header = core.read_header(encoded["ani"])
    assert (header.width, header.height, header.mode) == (W, H, "RGB")
    assert header.bits == 5 and header.quality == 60 and header.effort == 1
    assert header.metadata["icc_profile"] == encoded["icc"]
    assert "exif" in header.metadata


def test_info_text_and_json(encoded, capsys):
    assert cli.main(["info", str(encoded["ani"])]) == 0
    text = capsys.readouterr().out
    assert f"{W}x{H}" in text and "RGB" in text and "bpp" in text

    assert cli.main(["info", "--json", str(encoded["ani"])]) == 0
    info = json.loads(capsys.readouterr().out)
    size = encoded["ani"].stat().st_size
    assert info["width"] == W and info["height"] == H and info["mode"] == "RGB"
    assert info["bits"] == 5 and info["model"] == "grid" and info["version"] == core.FORMAT_VERSION
    assert info["file_size"] == size
    assert info["bpp"] == pytest.approx(size * 8 / (W * H), rel=1e-5)
    assert info["metadata"]["icc_profile"] == len(encoded["icc"])


def test_info_json_several_files_is_a_list(encoded, capsys):
    assert cli.main(["info", "--json", str(encoded["ani"]), str(encoded["ani"])]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_decode_round_trip_keeps_size_mode_and_metadata(encoded, tmp_path):
    out = tmp_path / "out.png"
    assert cli.main(["decode", str(encoded["ani"]), str(out)]) == 0
    with Image.open(out) as im:
        assert im.size == (W, H) and im.mode == "RGB"
        assert im.info.get("icc_profile") == encoded["icc"]
        assert im.getexif().get(0x010E) == "ani test image"
        pixels = np.asarray(im)
    assert np.array_equal(pixels, core.decode(encoded["ani"]))
    # a fitted image, not noise: close to the input
    mse = np.mean((pixels.astype(float) - np.asarray(Image.open(encoded["src"])).astype(float)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 15


@pytest.mark.parametrize("size, expected", [("48x32", (48, 32)), ("12x", (12, 8)), ("x32", (48, 32)),
                                            ("7x5", (7, 5))])
def test_decode_size(encoded, tmp_path, size, expected):
    out = tmp_path / "out.png"
    assert cli.main(["decode", str(encoded["ani"]), str(out), "--size", size]) == 0
    with Image.open(out) as im:
        assert im.size == expected


def test_decode_refuses_existing_output_unless_force(encoded, tmp_path, capsys):
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    assert cli.main(["decode", str(encoded["ani"]), str(out)]) == 1
    assert "--force" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert cli.main(["decode", str(encoded["ani"]), str(out), "--force"]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")


def test_encode_never_overwrites_its_input(encoded, tmp_path, capsys):
    src = tmp_path / "x.png"
    src.write_bytes(encoded["src"].read_bytes())
    before = src.read_bytes()
    assert cli.main(["encode", str(src), str(src), "--force", "--effort", "1"]) == 1
    assert "input" in capsys.readouterr().err
    assert src.read_bytes() == before


def test_encode_refuses_existing_output(encoded, tmp_path, capsys):
    out = tmp_path / "y.ani"
    out.write_bytes(b"old")
    assert cli.main(["encode", str(encoded["src"]), str(out), "--effort", "1"]) == 1
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"old"


def test_decode_writes_no_partial_file_on_error(tmp_path):
    bad = tmp_path / "bad.ani"
    bad.write_bytes(b"\x89ANI\r\n\x1a\n" + b"\x00" * 10)
    assert cli.main(["decode", str(bad), str(tmp_path / "o.png")]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.ani"]


# --------------------------------------------------------------------------- input modes


def test_read_image_converts_modes(tmp_path):
    rgb = smooth_image(3)
    # palette with transparency -> RGBA
    p = Image.fromarray(rgb).quantize(8)
    p.info["transparency"] = 0
    p.save(tmp_path / "p.png", transparency=0)
    a, _ = read_image(tmp_path / "p.png")
    assert a.shape == (H, W, 4) and a.dtype == np.uint8
    # palette without transparency -> RGB
    Image.fromarray(rgb).quantize(8).save(tmp_path / "p2.png")
    assert read_image(tmp_path / "p2.png")[0].shape == (H, W, 3)
    # bilevel -> L
    Image.fromarray(rgb).convert("1").save(tmp_path / "b.png")
    a, _ = read_image(tmp_path / "b.png")
    assert a.shape == (H, W) and set(np.unique(a)) <= {0, 255}
    # LA stays LA
    Image.fromarray(smooth_image(2), "LA").save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png")[0].shape == (H, W, 2)
    # CMYK -> RGB
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg")
    assert read_image(tmp_path / "c.jpg")[0].shape == (H, W, 3)
    # 16-bit grey -> 8-bit L on the full range
    g16 = (np.arange(W * H, dtype=np.uint16).reshape(H, W) * 170).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    a, _ = read_image(tmp_path / "g16.png")
    assert a.dtype == np.uint8 and a.shape == (H, W) and a.max() > 200


def test_read_image_keeps_xmp(tmp_path):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>ani</x:xmpmeta>")
    save_png(tmp_path / "x.png", smooth_image(3), pnginfo=info)
    _, meta = read_image(tmp_path / "x.png")
    assert meta["xmp"] == b"<x:xmpmeta>ani</x:xmpmeta>"


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["encode", "{missing}", "{out}"], 1, ["No such file"]),
        (["encode", "{text}", "{out}"], 1, ["not an image"]),
        (["encode", "{png}", "{out}", "--bits", "9"], 2, ["bits", "2..8", "9"]),
        (["encode", "{png}", "{out}", "--quality", "high"], 2, ["quality", "0..100", "high"]),
        (["encode", "{png}", "{out}", "--rounding", "bogus"], 2, ["rounding", "bogus"]),
        (["encode", "{png}", "{out}", "--effort", "0"], 2, ["effort", "1..9"]),
        (["encode", "{png}", "{out}", "--device", "tpu"], 2, ["device", "tpu"]),
        (["encode", "{png}", "{out}", "--model", "nope"], 2, ["model", "nope"]),
        (["encode", "{png}", "{out}", "--tau-max", "0"], 2, ["tau_max", "0.01..1"]),
        (["encode", "{png}", "{out}", "--ssl-a", "x"], 2, ["ssl_a", "'x'"]),
        (["encode", "{png}", "{out}", "--tau-decay", "-1"], 2, ["tau_decay", "0..100"]),
        (["convert", "{ani}", "--to", "png", "--out", "{tmp}", "--tau-max", "0.3"], 2, ["--to ani"]),
        (["info", "{png}"], 1, ["not an .ani file"]),
        (["info", "{missing}"], 1, ["No such file"]),
        (["decode", "{png}", "{out2}"], 1, ["not an .ani file"]),
        (["decode", "{ani}", "{out2}", "--size", "0x4"], 2, ["size"]),
        (["decode", "{ani}", "{out2}", "--size", "big"], 2, ["size"]),
        (["decode", "{ani}", "{tmp}/o.unknownext"], 1, ["extension"]),
        (["convert", "{png}", "--to", "gif", "--out", "{tmp}"], 2, ["--to"]),
        (["convert", "{png}", "--to", "ani", "--out", "{tmp}", "--bits", "1"], 2, ["bits"]),
        (["frobnicate"], 2, ["invalid choice"]),
    ],
)
def test_errors_are_one_line_with_exit_code(encoded, tmp_path, capsys, args, code, words):
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture")
    names = {
        "missing": tmp_path / "missing.png", "text": text, "png": encoded["src"], "ani": encoded["ani"],
        "out": tmp_path / "o.ani", "out2": tmp_path / "o.png", "tmp": tmp_path,
    }
    argv = [a.format(**names) for a in args]
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for word in words:
        assert word in err, err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last.startswith("ani")  # "ani: error: ..." or argparse's "ani <cmd>: error: ..."
    assert not (tmp_path / "o.ani").exists()


def test_python_m_core_errors_without_traceback(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    r = run_cli("encode", str(text), str(tmp_path / "o.ani"))
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("ani: error:")
    r = run_cli("encode", str(text), str(tmp_path / "o.ani"), "--bits", "12")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "bits" in r.stderr
    r = run_cli("--version")
    assert r.returncode == 0 and core.__version__ in r.stdout


def test_size_parser():
    assert cli.parse_size("640x480") == (640, 480)
    assert cli.parse_size("640x") == (640, None) == cli.parse_size("640")
    assert cli.parse_size("x480") == (None, 480)
    for bad in ("", "x", "0x10", "axb", "-3x4", "3x4x5"):
        with pytest.raises(Exception):
            cli.parse_size(bad)


def test_subnet_values():
    assert cli._subnet("full") == "full"
    assert cli._subnet("3,64") == (3, 64) == cli._subnet("3x64")
    assert cli._subnet(None) is None


# --------------------------------------------------------------------------- run


def test_run_passes_script_and_arguments(tmp_path, monkeypatch):
    calls = []
    fake = type(sys)("core.runscript")
    fake.main = lambda argv: calls.append(list(argv)) or 3
    monkeypatch.setitem(sys.modules, "core.runscript", fake)
    monkeypatch.setattr(core, "runscript", fake, raising=False)
    script = tmp_path / "s.py"
    script.write_text("print('hi')\n")
    assert cli.main(["run", str(script), "--flag", "x"]) == 3
    assert calls == [[str(script), "--flag", "x"]]
