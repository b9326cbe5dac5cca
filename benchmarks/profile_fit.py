"""Where a fitting step's time goes (issue #8's first question).

    python benchmarks/profile_fit.py kodim15 --steps 40 --threads 1

Runs a short fit at full resolution (no half-resolution phase) under the
torch profiler and prints the operators by self CPU time, then times the
rate term alone (forward + backward), in process
CPU time so that the figures hold up when other processes share the machine.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", nargs="?", default="kodim15")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rows", type=int, default=25)
    args = ap.parse_args(argv)

    import torch
    from torch.profiler import ProfilerActivity, profile

    from core.grid import fit as F
    from core.grid.arch import GridArch, default_levels
    from core.grid.context import N_CTX_PARAMS, N_PASSES
    from core.grid.rate import ContextTable, flat_bits
    from core.options import EncodeOptions

    torch.set_num_threads(args.threads)
    img = np.asarray(Image.open(KODAK / f"{args.image}.png").convert("RGB"))
    F.EFFORT_STEPS[5] = args.steps
    F.coarse_fraction = lambda q: 0.0  # full resolution only: exactly args.steps steps
    F.COARSE_END = F.BUDGET_COARSE = 0.0
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        F.fit_grid(img, EncodeOptions(quality=35, effort=5))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))

    h, w = img.shape[:2]
    arch = GridArch(default_levels(h, w), F.WIDTHS, 3)
    shapes = arch.grid_shapes(h, w)
    gen = torch.Generator().manual_seed(0)
    flat = torch.round(torch.randn(sum(a * b for a, b in shapes), generator=gen) * 2).requires_grad_()
    table = ContextTable(shapes)
    ctx = torch.zeros(arch.levels, N_PASSES, N_CTX_PARAMS)
    ctx[:, :, N_CTX_PARAMS - 1] = 24.0
    for i in range(6):
        if i == 1:
            t0 = time.process_time()
        flat_bits(flat, ctx, table, -8, 7).backward()
    print(f"rate term forward+backward: {(time.process_time() - t0) / 5 * 1000:.0f} ms CPU")

if __name__ == "__main__":
    main()
