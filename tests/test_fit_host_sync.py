"""The grid fit's loop reads nothing back to the host per step (issue 8: on
CUDA the loop must not wait for the device every step).

Every way our code can read a tensor's value on the host (``item``,
``float()``, ``int()``, ``bool()``, ``tolist``, ``numpy``, ``cpu``) is
counted while ``core`` code calls it; a fit of twice the steps must make
exactly as many such calls (those of the set-up and of the export after the
loop), so none happens per step."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.grid import fit as F
from core.options import EncodeOptions

from plugin_support import kodak_crop

CORE = str(Path(F.__file__).resolve().parents[1])
READS = ("item", "__float__", "__int__", "__bool__", "__index__", "tolist", "numpy", "cpu")


def _count_reads(monkeypatch, calls: list) -> None:
    for name in READS:
        orig = getattr(torch.Tensor, name)

        def wrapper(self, *args, _orig=orig, _name=name, **kwargs):
            caller = sys._getframe(1)
            if str(Path(caller.f_code.co_filename).resolve()).startswith(CORE):
                calls.append(f"{_name} at {caller.f_code.co_filename}:{caller.f_lineno}")
            return _orig(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)


def _reads(monkeypatch, opts, **fit_kwargs) -> list[list[str]]:
    """Core's host reads during a fit of a Kodak crop at 10 and at 20 steps."""
    image = kodak_crop("kodim23", (300, 200, 340, 248))
    out = []
    for steps in (10, 20):
        calls: list[str] = []
        with monkeypatch.context() as m:
            m.setitem(F.EFFORT_STEPS, opts.effort, steps)
            _count_reads(m, calls)
            fitted = F.fit_grid(image, opts, **fit_kwargs)
        assert fitted.stats["steps"] == steps
        out.append(calls)
    return out


@pytest.mark.parametrize("rounding", ["linear", "softround", "ste"])
def test_host_reads_do_not_grow_with_steps(monkeypatch, rounding):
    short, long = _reads(monkeypatch, EncodeOptions(quality=40, effort=1, rounding=rounding))
    assert len(short) == len(long), "host reads per step:\n" + "\n".join(sorted(set(long) - set(short)) or long)


def test_the_counter_sees_a_host_read_per_step(monkeypatch):
    """The check above can fail: with a ``trace`` the loop reads the MSE and
    the bits every step (``.item()`` in core/grid/fit.py), and that is seen."""
    short, long = _reads(monkeypatch, EncodeOptions(quality=40, effort=1), trace=lambda *a: None)
    assert len(long) - len(short) == 2 * 10
