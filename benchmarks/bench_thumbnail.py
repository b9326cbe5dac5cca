"""Thumbnail of an ``.ani`` file: full decode + resize vs. rendering at the reduced size.

``Image.thumbnail`` calls ``draft()``, which the Pillow plugin answers by sampling
the network directly on a smaller grid. This script encodes one Kodak image once
(low effort: the fit is not what is measured), then times, as whole operations
(open + render + resize), several runs each, and reports medians:

* full:  ``Image.open(f); im.load(); im.thumbnail(size)`` (renders every pixel, then resizes)
* draft: ``Image.open(f); im.thumbnail(size)`` (renders at about twice the thumbnail size)

It also reports each thumbnail's PSNR against the thumbnail of the original PNG,
to show that the shortcut costs no quality.

    python benchmarks/bench_thumbnail.py                      # kodim01, 128 px, 7 runs
    python benchmarks/bench_thumbnail.py --image kodim05 --runs 3
    python benchmarks/bench_thumbnail.py --ani /tmp/kodim01.ani   # encode once, reuse later
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pillow_ani  # noqa: E402,F401  (registers ANI with Pillow)
from PIL import Image  # noqa: E402

import core  # noqa: E402

KODAK = ROOT.parent / "shared" / "data" / "kodak"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def timed(fn, runs: int) -> tuple[float, list[float], Image.Image]:
    times, result = [], None
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="kodim01", help="Kodak image name (default kodim01)")
    parser.add_argument("--effort", type=int, default=1, help="encoder effort (default 1: the fit is not measured)")
    parser.add_argument("--thumb", type=int, default=128, help="thumbnail bound in pixels (default 128)")
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each method (default 7)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: stable timings on a shared machine; 0 keeps torch's default)")
    parser.add_argument("--ani", type=Path, help="reuse this encoding if the file exists, else write it there")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "thumbnail.md")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)  # a benchmark script, not a library call: a process-wide setting is fine
    with Image.open(KODAK / f"{args.image}.png") as im:
        original = im.convert("RGB")
    if args.ani is not None and args.ani.is_file():
        data, encoded = args.ani.read_bytes(), f"read from `{args.ani.name}` (encoded earlier with the same script)"
        assert core.read_header(data).size == original.size, "--ani holds another image"
    else:
        t = time.perf_counter()
        data = core.encode(np.asarray(original), effort=args.effort)
        encoded = f"encoded once with `effort={args.effort}` (default bits/quality) in {time.perf_counter() - t:.1f} s"
        if args.ani is not None:
            args.ani.write_bytes(data)
    size = (args.thumb, args.thumb)
    reference = original.copy()
    reference.thumbnail(size)

    def full() -> Image.Image:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            im.thumbnail(size)
            return im.copy()

    def draft() -> Image.Image:
        with Image.open(io.BytesIO(data)) as im:
            im.thumbnail(size)
            return im.copy()

    with Image.open(io.BytesIO(data)) as probe:
        probe.draft(None, (size[0] * 2, size[1] * 2))  # what thumbnail() asks for (reducing_gap=2)
        render_size = probe.size
    full(), draft()  # warm up (torch import, first-call allocations)
    full_s, full_runs, full_im = timed(full, args.runs)
    draft_s, draft_runs, draft_im = timed(draft, args.runs)
    fixed_s, fixed_runs, _ = timed(lambda: core.decode(data, size=(1, 1)), args.runs)
    assert full_im.size == draft_im.size == reference.size

    rows = [
        ("full decode + resize", f"{original.width}x{original.height}", full_s, full_runs,
         psnr(np.asarray(full_im), np.asarray(reference))),
        ("draft (thumbnail)", f"{render_size[0]}x{render_size[1]}", draft_s, draft_runs,
         psnr(np.asarray(draft_im), np.asarray(reference))),
    ]
    lines = [
        "# Thumbnail of an .ani: full decode + resize vs. draft rendering",
        "",
        f"Image: `{args.image}.png` ({original.width}x{original.height}), {encoded}: {len(data)} bytes, "
        f"{len(data) * 8 / (original.width * original.height):.3f} bpp.",
        f"Thumbnail bound {args.thumb}x{args.thumb} -> {reference.width}x{reference.height}. Each method timed as "
        f"a whole (open + render + resize), {args.runs} runs after one warm-up, median reported.",
        "",
        "| method | rendered at | median (ms) | runs (ms) | PSNR vs. thumbnail of the PNG (dB) |",
        "|---|---|---|---|---|",
    ]
    for name, rendered, median, runs, quality in rows:
        lines.append(f"| {name} | {rendered} | {median * 1e3:.1f} | {', '.join(f'{r * 1e3:.0f}' for r in runs)} "
                     f"| {quality:.2f} |")
    lines.append(f"| fixed cost: `core.decode(data, size=(1, 1))` | 1x1 | {fixed_s * 1e3:.1f} | "
                 f"{', '.join(f'{r * 1e3:.0f}' for r in fixed_runs)} | - |")
    lines += [
        "",
        f"Speed-up of draft over full: {full_s / draft_s:.1f}x. The fixed cost (container checks and entropy "
        "decoding of the parameters, independent of the render size) bounds it; rendering alone: "
        f"{(full_s - fixed_s) * 1e3:.0f} ms full vs. {(draft_s - fixed_s) * 1e3:.0f} ms draft "
        "(the resize included in both).",
        "",
        f"Machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores "
        f"(shared with other work while measured), Python {platform.python_version()}, torch {torch.__version__} "
        f"(torch threads: {torch.get_num_threads()}), Pillow {Image.__version__}. Decoding runs on the CPU.",
        "",
        f"Command: `{' '.join(['python benchmarks/bench_thumbnail.py', *(sys.argv[1:] if argv is None else argv)])}`",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
