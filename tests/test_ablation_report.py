"""The rounding ablation's report (benchmarks/ablation_rounding.py) on made-up
rows: BD-rates against the anchors, the convergence summary, the files it
writes. No fit runs here."""
from __future__ import annotations

import argparse
import csv
import math

import pytest


ablation = pytest.importorskip("benchmarks.ablation_rounding")


def _write(path, fields, rows):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fields)
        w.writeheader()
        w.writerows(rows)


def test_method_specs_parse_to_name_and_overrides():
    assert ablation.parse_method("ssl") == ("ssl", {})
    assert ablation.parse_method("ssl:tau_max=0.5,ssl_a=1") == ("ssl", {"tau_max": 0.5, "ssl_a": 1.0})


def test_report_gives_bd_rates_against_ste_and_noise(tmp_path):
    pytest.importorskip("matplotlib")
    # per image: noise needs 20 % fewer bits than ste at every PSNR, "half" half the bits of ste
    scale = {"ste": 1.0, "noise": 0.8, "half": 0.5}
    rows, curves = [], []
    for image, base in (("kodimA", 1.0), ("kodimB", 1.5)):
        for q, (bpp, psnr) in zip((20.0, 40.0, 60.0), ((0.5, 25.0), (1.0, 28.0), (2.0, 31.0))):
            for method, s in scale.items():
                loss = s * base / q
                rows.append(dict(image=image, quality=q, method=method, crop=64, effort=1, steps=100,
                                 bytes=1, bpp=bpp * base * s, psnr=psnr, final_loss=loss, fit_s=1.0))
                for step in range(0, 100, 10):
                    curves.append(dict(image=image, quality=q, method=method, step=step, steps=100,
                                       mse=0, bits=0, loss=loss * (1 + (99 - step) / 99)))
                curves.append(dict(image=image, quality=q, method=method, step=99, steps=100, mse=0, bits=0,
                                   loss=loss))
    out = tmp_path / "rounding"
    _write(out.with_suffix(".csv"), ablation.FIELDS, rows)
    _write(tmp_path / "rounding_curves.csv", ablation.CURVE_FIELDS, curves)
    table = {e["method"]: e for e in ablation.bd_table(rows)}
    assert table["ste"]["vs_ste_mean"] == pytest.approx(0.0, abs=1e-9)
    assert table["noise"]["vs_ste_mean"] == pytest.approx(-20.0, abs=1e-6)
    assert table["half"]["vs_ste_mean"] == pytest.approx(-50.0, abs=1e-6)
    assert table["half"]["vs_noise_mean"] == pytest.approx(-37.5, abs=1e-6)
    assert table["half"]["vs_ste_wins"] == 2 and table["half"]["vs_ste_n"] == 2
    conv = ablation.convergence(curves, rows)
    fractions, rel = conv["half"][20.0]
    assert rel[-1] == pytest.approx(1.0) and rel[0] == pytest.approx(2.0)
    assert conv["ste"][20.0][1][-1] == pytest.approx(2.0)  # twice the best final loss
    ablation.report(argparse.Namespace(out=str(out), threads=1, notes=None))
    md = out.with_suffix(".md").read_text()
    assert "Best by mean BD-rate against `ste`: `half`." in md
    assert "| `half` | -50.0 % (2/2) | -50.0 .. -50.0 % | -50.0 % | -37.5 % (2/2) | -37.5 % |" in md
    assert out.with_suffix(".png").stat().st_size > 10000
    assert not math.isnan(table["half"]["vs_ste_avg_curve"])
