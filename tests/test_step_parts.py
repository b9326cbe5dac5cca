"""``benchmarks/step_parts.py`` runs on a real Kodak image and reports each
part's two (or three) ways, and leaves the patched module state as it was."""
import re

from core.grid import arch as A
from core.grid import rate as R


def test_step_parts_reports_every_way_and_restores_the_code(capsys, monkeypatch):
    from benchmarks.step_parts import main

    monkeypatch.setenv("ANI_KEEP_HEAP", "0")  # the test process's allocator stays as it is (core.heap)
    before = (R.coded_bits, R._EXP_MIN, A.hidden_planes)
    main(["kodim23", "--reps", "1"])
    out = capsys.readouterr().out
    assert (R.coded_bits, R._EXP_MIN, A.hidden_planes) == before
    for line, ways in (("upsampling", ["torch", "block transpose"]),
                       ("rate", ["autograd, no clamp", "autograd, clamp", "closed form, clamp", "coded tables"]),
                       ("synthesis", ["ReLU new tensor", "ReLU in place"])):
        row = next(l for l in out.splitlines() if l.startswith(line))
        for way in ways:
            assert re.search(re.escape(way) + r" \d+\.\d", row), (line, way, row)
