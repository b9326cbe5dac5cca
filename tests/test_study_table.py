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
