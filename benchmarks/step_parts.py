"""What the parts of a full-resolution fitting step cost, each beside the
plain-torch way it replaced (issue 8's sixteenth round).

    python benchmarks/step_parts.py kodim15 --threads 1 --reps 12

Times, in milliseconds (median of ``--reps`` runs, the two ways of a part
alternating so that a busy machine slows both alike):

* the upsampling of levels 1-6 to 768x512, forward and backward: torch's
  ``upsample_bilinear2d`` backward against the block transpose of
  :mod:`core.grid.upsample`;
* the rate of all levels (``flat_bits``), forward and backward: autograd
  through the Laplace formula against its closed-form gradient, the exp
  clamp off against on (latents and scale indices spread as in a fit: many
  latents far from a narrow model, whose exp underflows), and the formula for
  any mean and scale against :func:`core.grid.rate.coded_bits`, which reads
  what depends on the coded mean and scale from tables;
* the synthesis (bfloat16 where the CPU has it), forward and backward, with
  the hidden ReLU as a new tensor against in place.

The process keeps the memory it frees (:mod:`core.heap`), as the ``ani``
command does; with ``ANI_KEEP_HEAP=0`` it runs with glibc's defaults, as
issue 8's sixteenth round measured.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def _race(ways: dict, reps: int) -> dict:
    """Median milliseconds of each way, the ways alternating, after one warm-up each."""
    for f in ways.values():
        f()
    times = {k: [] for k in ways}
    for _ in range(reps):
        for k, f in ways.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: 1000 * statistics.median(v) for k, v in times.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", nargs="?", default="kodim15")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=12)
    args = ap.parse_args(argv)

    import torch
    import torch.nn.functional as F

    from core.grid import arch as A
    from core.grid import fit as FIT
    from core.grid import rate as R
    from core.grid.upsample import upsample

    from core.heap import retain_freed_memory

    torch.set_num_threads(args.threads)
    retain_freed_memory()  # as the ``ani`` command and the other benchmarks (``ANI_KEEP_HEAP=0``: not)
    img = np.asarray(Image.open(KODAK / f"{args.image}.png").convert("RGB"))
    h, w = img.shape[:2]
    arch = A.GridArch(A.default_levels(h, w), FIT.WIDTHS, 3)
    shapes = arch.grid_shapes(h, w)
    gen = torch.Generator().manual_seed(0)
    grids = [torch.randn(s, generator=gen).requires_grad_() for s in shapes]

    def up(fn):
        return lambda: sum((fn(y, (h, w)) ** 2).sum() for y in grids[1:]).backward()

    torch_up = lambda y, size: F.interpolate(y[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    print(f"{args.image} {w}x{h}, {args.threads} thread(s), median of {args.reps}; milliseconds")
    res = _race({"torch": up(torch_up), "block transpose": up(upsample)}, args.reps)
    print("upsampling, levels 1-6, forward + backward:", ", ".join(f"{k} {v:.1f}" for k, v in res.items()))

    table = R.ContextTable(shapes)
    n = sum(table.sizes)
    flat = torch.round(torch.randn(n, generator=gen) * 3).requires_grad_()
    ctx = torch.zeros(arch.levels, R.N_PASSES, R.N_CTX_PARAMS)
    ctx[..., -1] = torch.randint(0, 64, (arch.levels, R.N_PASSES), generator=gen).float()
    ctx.requires_grad_()
    coded, fit_exp_min = R.coded_bits, R._EXP_MIN
    autograd = lambda y, mu, sigma, radius: R._laplace(y, mu, sigma, radius, False)[0]

    def general(bits_fn):
        """The rate as before issue 8's twenty-third round: :func:`coded_params`,
        then the Laplace formula for any mean and scale."""
        return lambda y, mu, sigma, lo, hi: bits_fn(y, *R.coded_params(mu, sigma, lo, hi), radius=hi - lo + 1)

    def rate(bits_fn, exp_min):
        def run():
            R.coded_bits, R._EXP_MIN = bits_fn, exp_min
            try:
                R.flat_bits(flat, ctx, table, -8, 7).backward()
            finally:
                R.coded_bits, R._EXP_MIN = coded, fit_exp_min
        return run

    res = _race({"autograd, no clamp": rate(general(autograd), -float("inf")),
                 "autograd, clamp": rate(general(autograd), fit_exp_min),
                 "closed form, clamp": rate(general(R.laplace_bits), fit_exp_min),
                 "coded tables": rate(coded, fit_exp_min)}, args.reps)
    print("rate, all levels, forward + backward:", ", ".join(f"{k} {v:.1f}" for k, v in res.items()))

    layers = [(torch.randn(o, i, generator=gen).mul_(0.3).requires_grad_(), torch.zeros(o).requires_grad_())
              for o, i in arch.layer_shapes()]
    target = torch.from_numpy(img.copy()).float().permute(2, 0, 1) / 255
    in_place = A.hidden_planes

    def new_tensor(latents, layers_, size):
        x0 = x = torch.stack([A._upsample(y, size) for y in latents]).reshape(len(latents), -1)
        for wt, b in layers_[:-1]:
            x = torch.relu(torch.addmm(b[:, None], wt, x))
        return x, x0

    def synth(hidden):
        def run():
            A.hidden_planes = hidden
            try:
                with FIT.synthesis_precision(torch.device("cpu")):
                    out = A.synthesize_planes(grids, layers, (h, w))
                torch.mean((out.float() - target) ** 2).backward()
            finally:
                A.hidden_planes = in_place
        return run

    res = _race({"ReLU new tensor": synth(new_tensor), "ReLU in place": synth(in_place)}, args.reps)
    print("synthesis, forward + backward:", ", ".join(f"{k} {v:.1f}" for k, v in res.items()))


if __name__ == "__main__":
    main()
