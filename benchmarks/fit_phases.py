"""Where a whole default fit's time goes, by phase (issue 8: "profile first").

    python -m benchmarks.fit_phases kodim23 --quality 45 --threads 2
    python -m benchmarks.fit_phases kodim23 --quality 45 --threads 2 --set CPU_BF16=false

Runs one real fit (``core.grid.fit.fit_grid``, the default options unless
``--option``/``--set`` say otherwise, as :mod:`benchmarks.study_fit`) and
prints the wall seconds spent in each part, timed around the functions the fit
calls: the synthesis's forward (``synthesize_planes``), the rate's forward
(``flat_bits``), the backward of the fit's loss, the context model's fits
(``fit_context``, their own backward included), the rounding refinement after
the last step (``refine``), the output layer's polish, the export, writing and
verifying the sections, and the rest (optimiser steps, rounding, quantizers,
schedules: the total minus the timed parts).

Wall clock rather than the torch profiler: on the 2-core Intel machine of issue
8's twenty-second round the profiler made the synthesis's forward and backward
take 241 ms instead of 94 ms, spread unevenly over the operators. The process
keeps the memory a fit frees, as the ``ani`` command does (:mod:`core.heap`).
"""
from __future__ import annotations

import argparse
import contextlib
import time
from collections import Counter, defaultdict

#: the functions of ``core.grid.fit`` that are timed, and the part each counts for
PARTS = {
    "synthesize_planes": "synthesis forward",
    "flat_bits": "rate forward",
    "fit_context": "context model fits",
    "refine": "rounding refinement",
    "polish_output": "output layer polish",
    "_export": "export",
    "write_model": "write and verify",
    "write_latents": "write and verify",
    "_verify": "write and verify",
    "render": "write and verify",
}
BACKWARD = "loss backward"
REST = "rest (optimisers, rounding, quantizers)"


@contextlib.contextmanager
def timed_phases():
    """Patch the fit's functions and ``torch.Tensor.backward`` to add their wall
    time to a dict ``{part: seconds}`` (yielded with a ``Counter`` of calls);
    restored on exit. A backward inside a timed part (the context fits') counts
    for that part only."""
    import torch

    from core.grid import fit as F

    seconds: dict[str, float] = defaultdict(float)
    calls: Counter = Counter()
    depth = [0]
    saved = {name: getattr(F, name) for name in PARTS}
    backward = torch.Tensor.backward

    def timed(name, fn):
        def run(*args, **kwargs):
            t = time.perf_counter()
            depth[0] += 1
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    seconds[PARTS[name]] += time.perf_counter() - t
                    calls[PARTS[name]] += 1
        return run

    def timed_backward(self, *args, **kwargs):
        if depth[0]:
            return backward(self, *args, **kwargs)
        t = time.perf_counter()
        try:
            return backward(self, *args, **kwargs)
        finally:
            seconds[BACKWARD] += time.perf_counter() - t
            calls[BACKWARD] += 1

    try:
        for name, fn in saved.items():
            setattr(F, name, timed(name, fn))
        torch.Tensor.backward = timed_backward
        yield seconds, calls
    finally:
        for name, fn in saved.items():
            setattr(F, name, fn)
        torch.Tensor.backward = backward


def table(seconds: dict, calls: Counter, total: float) -> str:
    """The parts as a markdown table, largest first, the rest last."""
    rows = dict(seconds)
    rows[REST] = total - sum(seconds.values())
    lines = ["| part | seconds | share | calls |", "|---|---|---|---|"]
    for part, s in sorted(rows.items(), key=lambda kv: (kv[0] == REST, -kv[1])):
        lines.append(f"| {part} | {s:.1f} | {100 * s / total:.1f} % | {calls.get(part, '-')} |")
    lines.append(f"| **total** | **{total:.1f}** | 100 % | |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", nargs="?", default="kodim23", help="Kodak name, e.g. kodim23, or a path")
    ap.add_argument("--quality", type=float, default=45)
    ap.add_argument("--effort", type=int, default=5)
    ap.add_argument("--steps", type=int, default=None, help="replaces the effort's step budget")
    ap.add_argument("--crop", type=int, default=0, help="centre crop of this side (0: whole image)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a constant of core.grid.fit (JSON value), as in study_fit.py")
    ap.add_argument("--option", action="append", default=[], metavar="NAME=VALUE", help="an encode option")
    args = ap.parse_args(argv)

    import torch

    from benchmarks.study_fit import load_image, parse_options, set_constants
    from core.grid import fit as F
    from core.heap import retain_freed_memory
    from core.options import EncodeOptions

    torch.set_num_threads(args.threads)
    retain_freed_memory()
    path, img = load_image(args.image, args.crop)
    opts = EncodeOptions(quality=args.quality, effort=args.effort, **parse_options(args.option))
    budget = dict(F.EFFORT_STEPS)
    names = [item.partition("=")[0] for item in args.set]
    constants = {name: getattr(F, name) for name in names if hasattr(F, name)}  # restored after the fit
    try:
        set_constants(args.set)
        if args.steps is not None:
            F.EFFORT_STEPS[args.effort] = args.steps
        with timed_phases() as (seconds, calls):
            t = time.perf_counter()
            fitted = F.fit_grid(img, opts)
            total = time.perf_counter() - t
    finally:
        F.EFFORT_STEPS.clear()
        F.EFFORT_STEPS.update(budget)
        for name, value in constants.items():
            setattr(F, name, value)
    st = fitted.stats
    print(f"{path.stem} {img.shape[1]}x{img.shape[0]}, quality {args.quality:g}, effort {args.effort}, "
          f"{args.threads} thread(s), {st['steps']} steps, {st['psnr']:.2f} dB"
          + (f", {' '.join(args.set)}" if args.set else ""))
    print(table(seconds, calls, total))


if __name__ == "__main__":
    main()
