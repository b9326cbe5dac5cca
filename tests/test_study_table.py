"""benchmarks/study_table.py: fit-study JSON lines against JPEG and against each other."""
import json
import math

from benchmarks import study_table
from test_kodak_bench import _row, _write


def _study(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_half_the_bits_reads_as_minus_fifty_percent(tmp_path):
    anchor = tmp_path / "k.csv"
    _write(anchor, [_row("jpeg", f"q={q}", img, b, p) for img in ("kodim01", "kodim02")
                    for q, b, p in ((10, 0.3, 26.0), (30, 0.6, 29.0), (60, 1.2, 32.0), (90, 2.4, 35.0))])
    rows = []
    for tag, scale in (("base", 1.0), ("half", 0.5)):
        for img in ("kodim01", "kodim02"):
            for q, b, p in ((10, 0.4, 26.0), (25, 0.8, 29.0), (45, 1.6, 32.0), (70, 3.2, 35.0)):
                rows.append(dict(tag=tag, image=img, quality=q, bpp=b * scale, psnr=p))
    rows.append(dict(tag="short", image="kodim01", quality=10, bpp=0.1, psnr=25.0))
    text = study_table.table(study_table.read([_study(tmp_path / "s.jsonl", rows)]), anchor, versus="base")
    line = next(l for l in text.splitlines() if l.startswith("| half | -"))
    assert float(line.split("|")[2]) == -50.0
    assert "| short | 1 | - (1 qualities)" in text
    # against JPEG: base needs 4/3 of JPEG's bits at equal PSNR in this made-up data
    base = next(l for l in text.splitlines() if l.startswith("| base | 2 |"))
    cubic = float(base.split("|")[3].split("/")[0])
    assert math.isclose(cubic, (0.8 / 0.6 - 1) * 100, abs_tol=0.5)


def test_objective_is_mse_plus_lambda_rate():
    from core.grid.fit import quality_to_lambda

    j = study_table.objective(45, 0.5, 30.0)
    assert math.isclose(j, 1e-3 + quality_to_lambda(45) * 0.5)


def test_point_table_reads_each_fit_against_the_curve_of_its_image(tmp_path):
    anchor = tmp_path / "k.csv"
    _write(anchor, [_row("ani_default", f"q={q}", img, b, p) for img in ("kodim01", "kodim02")
                    for q, b, p in ((10, 0.2, 25.0), (45, 0.8, 30.0), (90, 1.6, 32.0))])
    rows = [
        dict(tag="v", image="kodim01", quality=45, bpp=0.4, psnr=30.0),  # half the bits at 30 dB
        dict(tag="v", image="kodim02", quality=45, bpp=0.8, psnr=31.0),  # the curve needs 0.8 * sqrt(2) at 31 dB
        dict(tag="v", image="kodim01", quality=90, bpp=3.2, psnr=34.0),  # beyond the curve: along its end segment
    ]
    text = study_table.point_table(study_table.read([_study(tmp_path / "s.jsonl", rows)]), anchor, "ani_default")
    q45 = next(l for l in text.splitlines() if l.startswith("| v | 45 |")).split("|")
    assert float(q45[3]) == round((-50.0 + 100 * (1 / math.sqrt(2) - 1)) / 2, 1)
    assert q45[5].strip() == "2/2" and q45[6].strip() == "0"
    q90 = next(l for l in text.splitlines() if l.startswith("| v | 90 |")).split("|")
    # 2 dB past the top point at 1 bit per 2 dB: 3.2 bpp is what the line needs there
    assert abs(float(q90[3])) < 0.05 and q90[6].strip() == "1" and q90[7].strip().endswith("0.0*")


def test_pareto_drops_points_beaten_by_cheaper_ones():
    assert study_table.pareto([(2.0, 30.0), (1.0, 29.0), (2.2, 29.5), (3.0, 31.0)]) == [(1.0, 29.0), (2.0, 30.0), (3.0, 31.0)]


def test_j_table_reads_each_fit_against_the_fit_it_replaces(tmp_path):
    anchor = tmp_path / "k.csv"
    _write(anchor, [_row("ani_default", "q=45", "kodim01", 0.8, 30.0), _row("ani_default", "q=45", "kodim02", 0.5, 32.0)])
    rows = [
        dict(tag="v", image="kodim01", quality=45, bpp=0.8, psnr=30.0),  # the same fit
        dict(tag="v", image="kodim02", quality=45, bpp=0.25, psnr=32.0),  # half the bits
        dict(tag="v", image="kodim02", quality=90, bpp=1.0, psnr=35.0),  # no fit to compare with
    ]
    text = study_table.j_table(study_table.read([_study(tmp_path / "s.jsonl", rows)]), anchor, "ani_default")
    j = study_table.objective
    half = 100 * (j(45, 0.25, 32.0) / j(45, 0.5, 32.0) - 1)
    line = next(l for l in text.splitlines() if l.startswith("| v | 45 |")).split("|")
    assert float(line[3]) == round(half / 2, 1)
    assert f"kodim01 +0.0, kodim02 {half:+.1f}" in line[5]
    assert "| v | 90 |" not in text
