"""Batch conversion throughput: the local pool vs. a Dask cluster, in images per minute.

Converts the same folder of Kodak centre crops (default 8 images of 256x256,
``effort=1``, default bits/quality) four ways and times each batch as a whole:

* local, ``jobs=1``: ``core.convert.convert`` in this process;
* local, ``jobs=2``: two spawned worker processes (process start and torch
  import included, as ``ani convert --jobs 2`` pays them);
* Dask, 1 and 2 workers: ``core.convert.dask_batch.convert`` on a
  ``LocalCluster`` (loopback, default mode: input bytes sent by this process,
  outputs written here). The cluster's start is timed apart; the batch time
  includes the workers' first torch import and the version check.

Torch threads per fit: ``cores // processes``, as the product chooses, or
``--threads N`` for the in-process batch and the Dask workers (the local pool
always uses ``cores // 2``). Each Dask batch's outputs are compared byte for
byte with the local batch of the same number of processes (same threads per
fit, so identical files are expected). Last, the transport cost of the
default mode is measured alone, on the 2-worker cluster: tasks without a fit
that receive an input of the crops' mean PNG size, or of the full Kodak
PNGs', and return an output of the mean ``.ani`` size.

    nice -n 5 python benchmarks/bench_dask.py --threads 1       # writes benchmarks/results/dask.md
    python benchmarks/bench_dask.py --images 4 --crop 128 --out /tmp/dask.md
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KODAK = ROOT.parent / "shared" / "data" / "kodak"


def load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def crops(folder: Path, n: int, size: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(1, n + 1):
        with Image.open(KODAK / f"kodim{i:02d}.png") as im:
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            im.convert("RGB").crop((left, top, left + size, top + size)).save(folder / f"kodim{i:02d}.png")


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.ani"))}


class Clock:
    """``on_result`` callback: when each result arrived, and each image's own time."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.seconds: list[float] = []

    def __call__(self, result) -> None:
        self.times.append(time.perf_counter())
        self.seconds.append(result.seconds)

    def steady(self) -> float:
        span = self.times[-1] - self.times[0]
        return 60 * (len(self.times) - 1) / span if span > 0 else float("nan")


def echo(data: bytes, size: int) -> bytes:
    """A task without a fit: what the transport of the default mode costs."""
    return bytes(data[:size])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="Kodak images kodim01.. (default 8)")
    parser.add_argument("--crop", type=int, default=256, help="centre crop, pixels a side (default 256)")
    parser.add_argument("--effort", type=int, default=1, help="encoder effort (default 1)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per fit for the in-process local batch and the Dask workers "
                        "(default 0: cores // processes, as the product does; the local pool always uses that)")
    parser.add_argument("--transport-tasks", type=int, default=200, help="tasks of the transport test (default 200)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dask.md"), help="report file")
    args = parser.parse_args(argv)

    import distributed
    import torch

    import core
    from core.convert import convert, cpu_count, dask_batch

    cores = cpu_count()

    def threads(processes: int) -> int:
        return args.threads or max(1, cores // processes)

    if threads(2) != max(1, cores // 2):
        print(f"note: the local pool of 2 processes uses {max(1, cores // 2)} torch threads per fit, "
              f"not --threads {args.threads}", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="bench-dask-"))
    rows, outs = [], {}
    load_before = load()
    try:
        src = work / "src"
        crops(src, args.images, args.crop)
        in_bytes = sum(p.stat().st_size for p in src.glob("*.png")) / args.images
        full_png = np.mean([(KODAK / f"kodim{i:02d}.png").stat().st_size for i in range(1, args.images + 1)])

        for jobs in (1, 2):
            out = work / f"local{jobs}"
            torch.set_num_threads(threads(jobs))  # the in-process batch (jobs=1)
            t = time.perf_counter()
            clock = Clock()
            s = convert([src], out, effort=args.effort, jobs=jobs, on_result=clock)
            wall = time.perf_counter() - t
            assert len(s.converted) == args.images, s
            outs[("local", jobs)] = files(out)
            rows.append((f"local `ani convert --jobs {jobs}`", jobs, "-", wall, clock, load()))
            print(rows[-1], file=sys.stderr)

        transport = None
        for jobs in (1, 2):
            out = work / f"dask{jobs}"
            t = time.perf_counter()
            with dask_batch.connect(dask_batch.LOCAL, jobs=jobs) as client:
                start = time.perf_counter() - t
                t = time.perf_counter()
                clock = Clock()
                s = dask_batch.convert([src], out, client=client, effort=args.effort, threads=threads(jobs),
                                       on_result=clock)
                wall = time.perf_counter() - t
                assert len(s.converted) == args.images, s
                if jobs == 2:
                    out_size = int(np.mean([len(v) for v in files(out).values()]))
                    transport = [(size, *measure_transport(client, distributed, int(size), out_size,
                                                           args.transport_tasks))
                                 for size in (in_bytes, full_png)]
            outs[("dask", jobs)] = files(out)
            rows.append((f"Dask `--scheduler local --jobs {jobs}`", jobs, f"{start:.1f}", wall, clock, load()))
            print(rows[-1], file=sys.stderr)
        load_after = load()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    same = {jobs: outs[("dask", jobs)] == outs[("local", jobs)] for jobs in (1, 2)}
    ani_bytes = np.mean([len(v) for v in outs[("dask", 2)].values()])
    lines = [
        "# Batch conversion throughput: local pool vs. Dask",
        "",
        f"{args.images} Kodak centre crops of {args.crop}x{args.crop} (kodim01..{args.images:02d}), "
        f"`effort={args.effort}`, default bits and quality; mean input {in_bytes / 1024:.0f} KiB (PNG), "
        f"mean output {ani_bytes:.0f} bytes. Each batch timed once as a whole; torch threads per fit: "
        f"{threads(1)} with one process, {max(1, cores // 2)} with two.",
        "",
        "| path | processes | cluster start (s) | batch (s) | images/min (batch) | images/min after the first "
        "result | median seconds per image (in the worker) | load average after (1/5/15 min) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, jobs, start, wall, clock, ld in rows:
        lines.append(f"| {name} | {jobs} | {start} | {wall:.1f} | {60 * args.images / wall:.1f} | "
                     f"{clock.steady():.1f} | {statistics.median(clock.seconds):.2f} | {ld} |")
    lines += [
        "",
        "*Batch*: from the call to the last output written, including (local pool) the start of its processes "
        "and (Dask) the workers' first torch import. *After the first result*: (images - 1) / (time from the "
        "first result to the last), the rate once every process works. *Seconds per image*: the fit as the "
        "process that ran it measured it; it grows when processes compete for the cores.",
    ]
    lines += [
        "",
        f"Outputs of the Dask batches identical, byte for byte, to the local batch with as many processes: "
        f"1 worker: {'yes' if same[1] else 'NO'}, 2 workers: {'yes' if same[2] else 'NO'}.",
        "",
    ]
    if transport is not None:
        lines += [
            "Transport alone (default mode, 2 workers, tasks without a fit that receive an input of the given "
            f"size and return {ani_bytes:.0f} bytes, all submitted at once):",
            "",
            "| input per task | tasks | seconds | ms per task | tasks/s |",
            "|---|---|---|---|---|",
        ]
        for size, n, seconds in transport:
            lines.append(f"| {size / 1024:.0f} KiB | {n} | {seconds:.2f} | {1000 * seconds / n:.1f} | "
                         f"{n / seconds:.0f} |")
        lines.append("")
    lines += [
        f"Machine: {platform.platform()}, {platform.machine()}, {cores} CPU cores, shared with other work "
        f"while measured (load average before: {load_before}; after: {load_after}), Python "
        f"{platform.python_version()}, torch {torch.__version__}, dask.distributed {distributed.__version__}, "
        f"ani-codec {core.__version__}.",
        "",
        f"Command: `nice -n 5 python benchmarks/bench_dask.py"
        + ("" if (args.images, args.crop, args.effort) == (8, 256, 1)
           else f" --images {args.images} --crop {args.crop} --effort {args.effort}")
        + (f" --threads {args.threads}" if args.threads else "") + "`",
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


def measure_transport(client, distributed, in_size: int, out_size: int, n: int) -> tuple[int, float]:
    """Seconds for ``n`` no-fit tasks carrying ``in_size`` bytes in and ``out_size`` out."""
    rng = np.random.default_rng(0)
    payloads = [rng.integers(0, 256, in_size, dtype=np.uint8).tobytes() for _ in range(8)]
    client.submit(echo, b"warm-up", 1).result()
    t = time.perf_counter()
    futures = [client.submit(echo, payloads[i % 8], out_size, key=f"echo-{uuid.uuid4().hex}") for i in range(n)]
    for future in distributed.as_completed(futures, loop=client.loop):
        future.result()
    return n, time.perf_counter() - t


if __name__ == "__main__":
    sys.exit(main())
