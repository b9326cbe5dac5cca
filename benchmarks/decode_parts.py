"""How long decoding an ``.ani`` file takes, whole and by part (issue 8's 24th round).

    python -m benchmarks.decode_parts FILE.ani [FILE.ani ...] --threads 1 --reps 15

For each file, in milliseconds, the median and the fastest of ``--reps``
calls after one warm-up: the whole decode (:func:`core.decode`, bytes to
pixels), the entropy decoding of the model and latents
(:func:`core.grid.decode.load_model`) and the render
(:func:`core.grid.decode.render`). To compare two versions of the code, run it
once with each on the ``PYTHONPATH`` (a checkout of the older commit, e.g.
``git worktree add /tmp/base REV``), alternating, on an idle machine: the
figures of one busy machine swing by a third from run to run.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


def _times(fn, reps: int) -> tuple[float, float]:
    """Median and fastest milliseconds of ``reps`` calls of ``fn``, after one."""
    fn()
    ms = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ms), min(ms)


def parts(data: bytes, reps: int) -> dict[str, tuple[float, float]]:
    """``{"decode" | "entropy" | "render": (median ms, fastest ms)}`` of one grid file."""
    import core
    from core.container import parse
    from core.grid.decode import load_model, render

    header, sections = parse(data)
    if header.model != "grid":
        raise SystemExit(f"decode_parts times grid images; this file holds a {header.model!r} model")
    _, weights, latents = load_model(header, sections)
    size = (header.width, header.height)
    return {
        "decode": _times(lambda: core.decode(data), reps),
        "entropy": _times(lambda: load_model(header, sections), reps),
        "render": _times(lambda: render(weights, latents, size), reps),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--reps", type=int, default=15, help="timed calls per part (default 15)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    for path in args.files:
        got = parts(path.read_bytes(), args.reps)
        print(f"{path.name}: " + ", ".join(f"{k} {med:.1f} ms (fastest {low:.1f})" for k, (med, low) in got.items()))


if __name__ == "__main__":
    main()
