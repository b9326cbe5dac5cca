"""The fit keeps the best synthesis it saw after the freeze (core/grid/keep_best.py)."""
import math

import numpy as np
import torch

from core.grid import fit as F
from core.grid.arch import synthesize
from core.grid.keep_best import KeepBest
from core.grid.bitstream import read_latents, read_model
from core.container import parse
from core.codec import encode
from core.options import EncodeOptions
from plugin_support import kodak_crop


def test_restore_puts_back_the_parameters_of_the_lowest_loss():
    a, b = torch.zeros(3), torch.zeros(2, 2)
    best = KeepBest([a, b])
    seen = {}
    for k, loss in enumerate([5.0, 3.0, 4.0, 2.5, 2.6, 7.0]):
        with torch.no_grad():
            a.fill_(k)
            b.fill_(-k)
        seen[loss] = k
        best.offer(torch.tensor(loss))
    with torch.no_grad():
        a.fill_(99)
    best.restore()
    assert torch.equal(a, torch.full((3,), 3.0)) and torch.equal(b, torch.full((2, 2), -3.0))
    assert float(best.loss) == 2.5


def test_snapshots_are_copies_and_ties_keep_the_first():
    a = torch.ones(4, requires_grad=True)
    best = KeepBest([a])
    best.offer(torch.tensor(1.0))
    with torch.no_grad():
        a.add_(1)
    best.offer(torch.tensor(1.0))  # not lower: the first stays
    best.restore()
    assert torch.equal(a.detach(), torch.ones(4)) and a.requires_grad


def _file_mse(data, image):
    """MSE of the stored network's float render (before the 8-bit rounding of a decode)."""
    header, sections = parse(data)
    size = (header.height, header.width)
    arch, weights, ctx = read_model(sections[b"MODL"], header.bits, header.channels, header.n_params, size)
    grids = read_latents(sections[b"LATS"], arch, ctx, header.bits, *size)
    layers = [(torch.from_numpy(w * np.float32(ws)).float(), torch.from_numpy(b * np.float32(bs)).float())
              for w, ws, b, bs in weights]
    out = synthesize([torch.from_numpy(g).float() for g in grids], layers, size)
    return float(torch.mean((out - torch.from_numpy(image / 255.0).float()) ** 2))


def test_a_fit_never_ends_worse_than_its_last_step(monkeypatch):
    # the same fit with and without keeping the best: the loop is the same (the
    # tracker only reads), so the kept synthesis renders at least as well as the
    # last step's (float32 scoring, no refinement or polish to move anything after)
    image = kodak_crop("kodim05", box=(200, 100, 264, 148))
    monkeypatch.setattr(F, "CPU_BF16", False)
    monkeypatch.setattr(F, "RDO_LEVELS", 0)
    monkeypatch.setattr(F, "POLISH", False)
    opts = EncodeOptions(quality=60, effort=2)
    mse = {}
    for keep in (False, True):
        monkeypatch.setattr(F, "KEEP_BEST", keep)
        mse[keep] = _file_mse(encode(image, opts), image)
    assert mse[True] <= mse[False] * (1 + 1e-6), mse
    assert mse[True] < mse[False], mse  # here the last step is not the best
    assert 10 * math.log10(1 / mse[True]) > 20
