"""Variants of the rounding refinement (:mod:`core.grid.rdo`) on the same fit.

    python -m benchmarks.rdo_sweeps kodim23 --quality 10 45 90 [--threads 1] [--jsonl S.jsonl]

Each fit runs once; where it would refine its latents (after the last step),
every variant below starts from the same rounded latents, synthesis and context
model, so their objectives compare exactly (no seed or schedule noise). A
variant is a number of levels (the finest first) and of sweeps over them, the
context model refitted between sweeps for ``mid`` steps (0: not) and after the
last for the fit's own ``CTX_FIT_STEPS``. Printed and written per fit: the
objective ``J = MSE + lambda * latent bits / pixels`` (the stored, quantised
context model; the model section left out, the same for all) of each variant
relative to ``l3`` (round 11's refinement), and its seconds. The fit itself then
goes on with its own setting (``RDO_LEVELS``, :func:`core.grid.fit.rdo_sweeps`).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"

#: (name, levels, sweeps, context refit steps between sweeps)
VARIANTS = [("none", 0, 0, 0), ("l3", 3, 1, 0), ("l7", 7, 1, 0), ("l3x2", 3, 2, 60), ("l7x2", 7, 2, 60),
            ("l7x2_r0", 7, 2, 0),
            ("l7x3_r0", 7, 3, 0)]


def objective(ints, ctx, sizes, shapes, layers, target, table, lo, hi, lam) -> float:
    from core.grid.arch import synthesize
    from core.grid.context import CTX_FRAC
    from core.grid.context_fit import quantize_ctx
    from core.grid.rate import flat_bits, level_grids

    _, height, width = target.shape
    out = synthesize(level_grids(ints, sizes, shapes), layers, (height, width))
    mse = float(((out - target.permute(1, 2, 0)) ** 2).mean())
    bits = float(flat_bits(ints, quantize_ctx(ctx) / CTX_FRAC, table, lo, hi))
    return mse + lam * bits / (height * width)


def compare(ints, sizes, shapes, layers, target, ctx, table, lo, hi, lam, variants=VARIANTS) -> dict:
    """Each variant's objective and seconds, from the same starting point
    (the arguments of :func:`core.grid.rdo.refine` as the fit passes them)."""
    from core.grid.context_fit import CTX_FIT_STEPS, fit_context
    from core.grid.fit import ctx_gain
    from core.grid.rdo import refine

    gain = ctx_gain(ctx.device)  # the fit's parametrisation of the context model

    def refit(q, c, steps):
        best, _ = fit_context(q, c / gain, gain, table, lo, hi, steps=steps)
        return best * gain

    out = {}
    for name, levels, sweeps, mid in variants:
        t0 = time.perf_counter()
        q, c = ints, ctx
        for sweep in range(sweeps):
            q, _ = refine(q, sizes, shapes, layers, target, c, table, lo, hi, lam, levels)
            if sweep == sweeps - 1:
                c = refit(q, c, CTX_FIT_STEPS)
            elif mid:
                c = refit(q, c, mid)
        j = objective(q, c, sizes, shapes, layers, target, table, lo, hi, lam)
        out[name] = {"j": j, "seconds": time.perf_counter() - t0}
    return out


def run(image: np.ndarray, quality: float, effort: int = 5) -> dict:
    """Fit ``image`` and compare the variants where the fit refines."""
    from core.grid import fit as F
    from core.options import EncodeOptions

    seen = {}
    own = F.refine

    def spy(*args):
        if not seen:  # the first sweep's call: the fit's own rounded latents
            seen.update(compare(*args[:-1]))
        return own(*args)

    F.refine = spy
    try:
        F.fit_grid(image, EncodeOptions(quality=quality, effort=effort))
    finally:
        F.refine = own
    return seen


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", help="Kodak name, e.g. kodim23, or a path")
    ap.add_argument("--quality", type=float, nargs="+", default=[45])
    ap.add_argument("--effort", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--jsonl", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    path = Path(args.image) if Path(args.image).is_file() else KODAK / f"{args.image}.png"
    img = np.asarray(Image.open(path).convert("RGB"))
    for quality in args.quality:
        res = run(img, quality, args.effort)
        base = res[VARIANTS[1][0]]["j"]
        print(f"{path.stem} q={quality:g}: " + ", ".join(
            f"{k} {(v['j'] / base - 1) * 100:+.2f} % ({v['seconds']:.1f} s)" for k, v in res.items()), flush=True)
        if args.jsonl is not None:
            with open(args.jsonl, "a") as fh:
                fh.write(json.dumps({"image": path.stem, "quality": quality, **res}) + "\n")


if __name__ == "__main__":
    main()
