"""``benchmarks/fit_phases.py`` times a real fit by part, the parts adding up to
the whole, and leaves the fit's functions, torch's backward and the constants it
was asked to change as they were."""
import re

import torch

from core.grid import fit as F


def test_fit_phases_reports_the_parts_of_a_real_fit_and_restores_everything(capsys, monkeypatch):
    from benchmarks.fit_phases import PARTS, main

    monkeypatch.setenv("ANI_KEEP_HEAP", "0")  # the test process's allocator stays as it is (core.heap)
    functions = {name: getattr(F, name) for name in PARTS}
    backward, budget, bf16 = torch.Tensor.backward, dict(F.EFFORT_STEPS), F.CPU_BF16
    main(["kodim23", "--crop", "64", "--steps", "24", "--threads", "1", "--set", "CPU_BF16=false"])
    out = capsys.readouterr().out
    assert {name: getattr(F, name) for name in PARTS} == functions
    assert torch.Tensor.backward is backward and F.EFFORT_STEPS == budget and F.CPU_BF16 is bf16
    assert "24 steps" in out and "CPU_BF16=false" in out
    rows = dict(re.findall(r"^\| ([^|*]+?) \| (\d+\.\d) \|", out, re.M))
    for part in ("synthesis forward", "rate forward", "loss backward", "context model fits", "rounding refinement"):
        assert part in rows, (part, out)
    total = float(re.search(r"\*\*total\*\* \| \*\*(\d+\.\d)\*\*", out).group(1))
    assert abs(sum(map(float, rows.values())) - total) <= 0.05 * len(rows) + 0.05
    calls = dict(re.findall(r"^\| (loss backward|synthesis forward) \| [\d.]+ \| [\d.]+ % \| (\d+) \|", out, re.M))
    assert int(calls["loss backward"]) == 24  # one per step; the context fits' own are theirs
