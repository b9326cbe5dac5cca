"""benchmarks/per_image.py: BD-rate image by image between two codecs."""
import pytest

from benchmarks import per_image
from test_kodak_bench import _row, _write

QS = ((10, 0.3, 26.0), (30, 0.6, 29.0), (60, 1.2, 32.0), (90, 2.4, 35.0))


def test_each_image_gets_its_own_bd_rate_and_the_spread_is_summarised(tmp_path, capsys):
    path = tmp_path / "k.csv"
    rows = [_row("old", f"q={q}", img, b, p) for img in ("kodim01", "kodim02") for q, b, p in QS]
    # kodim01 needs half the bits, kodim02 the same; kodim03 has no old rows, so it is left out
    rows += [_row("new", f"q={q}", "kodim01", b / 2, p) for q, b, p in QS]
    rows += [_row("new", f"q={q}", img, b, p) for img in ("kodim02", "kodim03") for q, b, p in QS]
    _write(path, rows)
    per_image.main([str(path), "old", "new"])
    out = capsys.readouterr().out
    assert "| kodim01 | -50.0 | -50.0 |" in out
    assert "| kodim02 | +0.0 | +0.0 |" in out
    assert "kodim03" not in out
    assert "cubic: mean -25.0 %, median -25.0 %, 1 of 2 images better, range -50.0 .. +0.0 %" in out
    # the Kodak-average curves of kodim01 and kodim02: three quarters of the bits at every PSNR
    assert "Kodak-average curves: -25.0 % cubic, -25.0 % pchip" in out


def test_psnr_max_cuts_every_overlap(tmp_path, capsys):
    # new needs half the bits up to 29 dB and the same from 32: cut at 29, it is better by more
    path = tmp_path / "k.csv"
    rows = [_row("old", f"q={q}", "kodim01", b, p) for q, b, p in QS]
    rows += [_row("new", f"q={q}", "kodim01", b / 2 if p <= 29 else b, p) for q, b, p in QS]
    _write(path, rows)

    def bd(*extra):
        per_image.main([str(path), "old", "new", *extra])
        last = capsys.readouterr().out.strip().splitlines()[-1]
        return last, float(last.split(":")[1].split("%")[0])

    (whole_line, whole), (cut_line, cut) = bd(), bd("--psnr-max", "29")
    assert cut < whole - 10 and cut < -40
    assert cut_line.endswith("PSNR overlap cut at 29 dB") and "cut" not in whole_line


def test_the_test_codec_may_come_from_another_csv(tmp_path, capsys):
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    _write(old, [_row("ani", f"q={q}", "kodim01", b, p) for q, b, p in QS])
    _write(new, [_row("ani", f"q={q}", "kodim01", b * 0.8, p) for q, b, p in QS])
    per_image.main([str(old), "ani", "ani", "--test-csv", str(new)])
    assert "| kodim01 | -20.0 | -20.0 |" in capsys.readouterr().out


def test_an_unknown_codec_is_named(tmp_path):
    path = tmp_path / "k.csv"
    _write(path, [_row("old", f"q={q}", "kodim01", b, p) for q, b, p in QS])
    with pytest.raises(SystemExit, match="no rows of codec 'nope'.*have: old"):
        per_image.main([str(path), "old", "nope"])
