"""The Kodak benchmark: summary maths on a synthetic CSV, resume, and a tiny real run."""
import csv
import math
import re

import numpy as np
import pytest

from benchmarks import codecs as C
from benchmarks import kodak, report
from benchmarks.measure import machine, measure, timed
from core import heap


def _row(codec, setting, image, bpp, psnr, **extra):
    row = dict(codec=codec, setting=setting, image=image, width=768, height=512, bytes=round(bpp * 768 * 512 / 8),
               bpp=bpp, psnr=psnr, ms_ssim=0.9, encode_s=0.01, decode_s=0.002, encode_peak_mib=1.0,
               decode_peak_mib=1.0, options="", run="r1")
    row.update(extra)
    return row


def _write(path, rows):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, kodak.FIELDS)
        w.writeheader()
        w.writerows(rows)


PSNRS = (28.0, 31.0, 34.0, 37.0)


def _synthetic(tmp_path):
    """jpeg: ln bpp = P/6 - 6 on both images; 'half': half of jpeg's bpp at every PSNR;
    ani_x: the same as jpeg on img1, and on img2 only reaching 0.3 bpp."""
    rows = []
    for img, shift in (("img1", 0.0), ("img2", 1.0)):
        for k, p in enumerate(PSNRS):
            bpp = math.exp((p + shift) / 6 - 6)
            rows.append(_row("jpeg", f"q={k}", img, bpp, p + shift, decode_s=0.002))
            rows.append(_row("webp", f"q={k}", img, bpp / 2, p + shift, decode_s=0.004))
            rows.append(_row("avif", f"q={k}", img, bpp / 4, p + shift, decode_s=0.003))
            rows.append(_row("ani_x", f"q={k}", img, bpp / 8, p + shift, decode_s=0.06, options="effort=1"))
    path = tmp_path / "k.csv"
    _write(path, rows)
    return path


def test_bd_rates_and_matrix_from_a_synthetic_csv(tmp_path):
    path = _synthetic(tmp_path)
    codecs, superseded, runs = report.load(path)
    assert superseded == 0 and runs == {"r1"}
    jpeg, webp, ani = codecs["jpeg"], codecs["webp"], codecs["ani_x"]
    assert jpeg.complete() == ["img1", "img2"]
    for method in ("cubic", "pchip"):
        assert report.pair(jpeg, webp, method) == (pytest.approx(-50.0, abs=1e-6), 2)
        assert report.pair(webp, ani, method)[0] == pytest.approx(-75.0, abs=1e-6)
        assert report.pair(ani, jpeg, method)[0] == pytest.approx(700.0, abs=1e-6)
    text = report.summary(path)
    assert re.search(r"\| webp \| -50\.0 \| -50\.0 \| \+[\d.]+ \|", text)
    assert "| ani_x | -87.5 | -87.5 |" in text
    # matrix row ani_x against column avif: 1/8 against 1/4 = -50 %
    matrix = text.split("## BD-rate matrix (cubic")[1].split("##")[0]
    ani_row = [l for l in matrix.splitlines() if l.startswith("| ani_x |")][0].split("|")[2:-1]
    assert [c.strip() for c in ani_row] == ["-87.5", "-75.0", "-50.0", "0"]
    # the targets: BD-rate better than WebP's, decode 0.06 s = 20x AVIF's 3 ms
    assert "BD-rate against JPEG -87.5 % against WebP's -50.0 %" in text and "**met**" in text
    assert "20.0x AVIF's 3.0 ms (target <= 10x): **not met**" in text


def test_psnr_at_bpp_and_images_out_of_range(tmp_path):
    path = _synthetic(tmp_path)
    codecs, _, _ = report.load(path)
    jpeg = codecs["jpeg"]
    # img1 at 0.5 bpp: ln 0.5 = P/6 - 6 -> P = 6 (6 + ln 0.5), but linear in log bpp between
    # settings is exact here since P is linear in ln bpp
    p1 = 6 * (6 + math.log(0.5))
    p2 = p1  # img2 is the same line shifted along it
    mean, n, total = report.at_bpp(jpeg, 0.5)
    assert (mean, n, total) == (pytest.approx((p1 + p2) / 2), 2, 2)
    # 0.1 bpp: img1's lowest point is exp(28/6 - 6) = 0.264 bpp -> out of range on both
    mean, n, total = report.at_bpp(jpeg, 0.1)
    assert math.isnan(mean) and (n, total) == (0, 2)
    # 1.4 bpp: img1 tops out at exp(37/6-6) = 1.18, img2 at exp(38/6-6) = 1.40 -> one image short
    mean, n, _ = report.at_bpp(jpeg, 1.3)
    assert math.isnan(mean) and n == 1
    # the table: 0.25 bpp is below both images' curves; 6 (6 + ln b) at 0.5, 0.75 and 1 bpp
    assert "| jpeg | 2 | NaN [0] | 31.84 | 34.27 | 36.00 |" in report.summary(path)


def test_incomplete_images_and_superseded_rows(tmp_path):
    path = _synthetic(tmp_path)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    # drop one ani setting on img2: ani counts img1 only
    rows = [r for r in rows if not (r["codec"] == "ani_x" and r["image"] == "img2" and r["setting"] == "q=3")]
    # measure one jpeg row again with other options: the later one counts
    again = dict(rows[0], psnr="99", options="changed", run="r2")
    _write(path, rows + [again])
    codecs, superseded, runs = report.load(path)
    assert codecs["ani_x"].complete() == ["img1"]
    assert superseded == 1 and runs == {"r1", "r2"}
    assert codecs["jpeg"].points["img1"]["q=0"]["psnr"] == 99.0
    assert report.pair(codecs["webp"], codecs["ani_x"], "cubic")[1] == 1
    assert "1 rows were measured more than once" in report.summary(path)


def test_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    path = _synthetic(tmp_path)
    report.write(path)
    png = path.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![RD curves](k.png)" in path.with_suffix(".md").read_text()


def test_parse_images():
    avail = [f"kodim{i:02d}" for i in range(1, 25)]
    assert kodak.parse_images(None, avail) == avail
    assert kodak.parse_images(["3-5", "kodim01", "1", "7,9"], avail) == [
        "kodim03", "kodim04", "kodim05", "kodim01", "kodim07", "kodim09"]
    with pytest.raises(SystemExit, match="no image 'kodim25'"):
        kodak.parse_images(["25"], avail)


def test_repair_tail(tmp_path):
    p = tmp_path / "x.csv"
    p.write_bytes(b"a,b\n1,2\n3,")
    assert kodak.repair_tail(p) and p.read_bytes() == b"a,b\n1,2\n"
    assert not kodak.repair_tail(p)


def test_measure_sees_an_allocation():
    size = 64 * 2**20
    result, seconds, peak = measure(lambda: np.ones(size // 8))
    assert result.nbytes == size and seconds > 0
    assert peak >= 0.9 * size / 2**20
    calls = []
    _, median, _ = timed(lambda: calls.append(1), 3)
    assert len(calls) == 3 and median >= 0


def test_machine_description():
    info = machine()
    assert info["cpu_count"] and info["python"] and info["Pillow"]


def _tiny_images(tmp_path):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:48]
    img = np.stack([x * 5, y * 5, (x + y) * 2], -1) + rng.normal(0, 6, (48, 48, 3))
    from PIL import Image

    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(d / "tiny01.png")
    return d


def test_tiny_real_run_every_codec_and_resume(tmp_path, monkeypatch):
    monkeypatch.setitem(C.PRESETS, "test", {"effort": 1})
    images = _tiny_images(tmp_path)
    out = tmp_path / "res" / "k"
    said = []
    codecs = kodak.select_codecs(["classical", "ani_test"], [], [20, 80], threads=1, say=said.append)
    names = [c.name for c in codecs]
    assert names[0] == "jpeg" and names[-1] == "ani_test"
    assert all(n in names or any(n in s for s in said) for n in C.CLASSICAL)  # run, or skipped with a reason
    added = kodak.run(["tiny01"], codecs, out, images, repeats=1, ani_encode_repeats=1, threads=1, argv=[],
                      say=said.append)
    rows = kodak.read_rows(out.with_suffix(".csv"))
    assert added == len(rows) == sum(len(c.settings) for c in codecs)
    by = {(r["codec"], r["setting"]): r for r in rows}
    jpeg = by[("jpeg", "q=50")]
    assert int(jpeg["bytes"]) * 8 / (48 * 48) == pytest.approx(float(jpeg["bpp"]), rel=1e-6)
    assert 20 < float(jpeg["psnr"]) < 60 and jpeg["ms_ssim"] == "nan"  # 48 px is below MS-SSIM's 176
    ani = by[("ani_test", "q=80")]
    assert "effort=1" in ani["options"] and float(ani["psnr"]) > float(by[("ani_test", "q=20")]["psnr"])
    assert float(ani["bpp"]) > float(by[("ani_test", "q=20")]["bpp"])
    # resume: nothing to do; after cutting the last row mid-line, only that row is measured again
    assert kodak.run(["tiny01"], codecs, out, images, 1, 1, 1, [], say=said.append) == 0
    csv_path = out.with_suffix(".csv")
    data = csv_path.read_bytes()
    csv_path.write_bytes(data[: data.rstrip(b"\n").rfind(b"\n") + 10])
    assert kodak.run(["tiny01"], codecs, out, images, 1, 1, 1, [], say=said.append) == 1
    assert len(kodak.read_rows(csv_path)) == len(rows)
    assert any("partly written" in s for s in said)
    # the summary and the run description
    report.write(csv_path, with_plot=False)
    md = out.with_suffix(".md").read_text()
    assert "| ani_test | 1 |" in md and "## Machine and runs" in md and "threads 1" in md
    # the run description records whether the process keeps freed heap memory (kodak.main sets it)
    assert f"freed heap memory kept (core.heap) {'yes' if heap.retained() else 'no'};" in md


def test_cli_summary_only_and_errors(tmp_path, capsys):
    path = _synthetic(tmp_path)
    assert kodak.main(["--out", str(tmp_path / "k"), "--summary-only", "--no-plot"]) == 0
    assert "BD-rate against JPEG" in (tmp_path / "k.md").read_text()
    with pytest.raises(SystemExit, match="no results"):
        kodak.main(["--out", str(tmp_path / "none"), "--summary-only"])
    other = tmp_path / "other.csv"
    other.write_text("image,quality\nkodim01,5\n")
    with pytest.raises(SystemExit, match="give another --out"):
        kodak.read_rows(other)
    with pytest.raises(ValueError, match="unknown preset"):
        C.preset_options("nope")
    assert path.exists()


def test_targets_say_when_ani_and_avif_come_from_different_runs(tmp_path):
    path = _synthetic(tmp_path)
    assert "different runs" not in "\n".join(report.targets(report.load(path)[0]))
    with open(path, newline="") as fh:
        rows = [dict(r, run="r2") if r["codec"].startswith("ani_") else r for r in csv.DictReader(fh)]
    _write(path, rows)
    assert "(target <= 10x, timed in different runs)" in "\n".join(report.targets(report.load(path)[0]))


def test_one_run_at_a_time_per_csv(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    images = _tiny_images(tmp_path)
    out = tmp_path / "k"
    codecs = kodak.select_codecs(["jpeg"], [], [], threads=1)
    with open(out.with_suffix(".csv"), "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(SystemExit, match="another run is writing"):
            kodak.run(["tiny01"], codecs, out, images, 1, 1, 1, [], say=lambda s: None)
    assert kodak.run(["tiny01"], codecs, out, images, 1, 1, 1, [], say=lambda s: None) == 19


def test_merge_two_halves(tmp_path):
    """Two runs on the halves of the images, started in the same second, merge
    into one CSV: rows added once, a colliding run id renamed in rows and
    descriptions, the summary covers both, and the target's rows win."""
    import json

    a, b = tmp_path / "a", tmp_path / "b"
    _write(a.with_suffix(".csv"), [_row("jpeg", "q=1", "img1", 0.5, 30.0, run="t0"),
                                   _row("jpeg", "q=2", "img1", 1.0, 33.0, run="t0")])
    _write(b.with_suffix(".csv"), [_row("jpeg", "q=1", "img1", 0.6, 29.0, run="t0"),  # A has it: left out
                                   _row("jpeg", "q=1", "img2", 0.4, 28.0, run="t0"),
                                   _row("jpeg", "q=2", "img2", 0.9, 31.0, run="t0")])
    a.with_suffix(".runs.json").write_text(json.dumps({"t0": {"argv": ["--images", "1"]}}))
    b.with_suffix(".runs.json").write_text(json.dumps({"t0": {"argv": ["--images", "2"]}}))
    assert kodak.main(["--out", str(a), "--merge", str(b), "--no-plot"]) == 0
    rows = kodak.read_rows(a.with_suffix(".csv"))
    assert len(rows) == 4
    by = {(r["image"], r["setting"]): r for r in rows}
    assert by[("img1", "q=1")]["psnr"] == "30.0" and by[("img1", "q=1")]["run"] == "t0"
    assert by[("img2", "q=1")]["run"] == by[("img2", "q=2")]["run"] == "t0+1"
    runs = json.loads(a.with_suffix(".runs.json").read_text())
    assert runs == {"t0": {"argv": ["--images", "1"]}, "t0+1": {"argv": ["--images", "2"]}}
    assert "Images: 2 complete" in a.with_suffix(".md").read_text()
    # merging again adds nothing; merging a CSV into itself or a missing one is refused
    assert kodak.main(["--out", str(a), "--merge", str(b), "--no-plot"]) == 0
    assert len(kodak.read_rows(a.with_suffix(".csv"))) == 4
    with pytest.raises(SystemExit, match="the --out CSV itself"):
        kodak.main(["--out", str(a), "--merge", str(a)])
    with pytest.raises(SystemExit, match="no such CSV"):
        kodak.main(["--out", str(a), "--merge", str(tmp_path / "none")])
