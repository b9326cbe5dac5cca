"""Is the grid fit's loop bound by the GPU or by the host? (issue #8, CUDA target)

    python benchmarks/cuda_fit.py kodim23 --steps 100 200 --json out.json
    python benchmarks/cuda_fit.py kodim23 --set CUDA_FILL_UNINITIALIZED=true   # a fit constant changed

Needs a CUDA device. For each step count it runs a fit of a Kodak image at
quality 45 with the default effort's schedule scaled to that many steps and
reports, for the whole loop:

* wall seconds per step (the loop ends with a device synchronisation);
* GPU busy fraction: the summed duration of the device's kernels and copies
  (torch profiler) over the wall time of the same fit. Near 1 the GPU is the
  bottleneck; well below 1 the host's launching of kernels is;
* kernels launched per step;
* synchronising calls (``torch.cuda.set_sync_debug_mode("warn")``): the
  count at the two step counts must be equal, i.e. none per step;
* whether two fits with the same seed write the same bytes.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def _fit(img, steps: int, quality: float, effort: int):
    from core.grid import fit as F
    from core.options import EncodeOptions

    old = F.EFFORT_STEPS[effort]
    F.EFFORT_STEPS[effort] = steps
    try:
        return F.fit_grid(img, EncodeOptions(quality=quality, effort=effort, device="cuda"))
    finally:
        F.EFFORT_STEPS[effort] = old


def _loop_steps(img, steps, quality, effort) -> int:
    return _fit(img, steps, quality, effort).stats["steps"]


def measure(img, steps: int, quality: float, effort: int) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    _fit(img, steps, quality, effort)  # warm-up: kernels, allocator, cuBLAS handles
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fitted = _fit(img, steps, quality, effort)
    wall = time.perf_counter() - t0
    loop = fitted.stats["fit_seconds"]
    n = fitted.stats["steps"]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            _fit(img, steps, quality, effort)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message).lower()]
    nondet = sorted({str(w.message).split(" does not have")[0] for w in caught if "deterministic" in str(w.message)})

    # device activity only: with the host's events too the profile of a few
    # hundred steps did not finish within a 10-minute call
    print(f"  [{steps} steps] timed fit {wall:.1f} s; profiling", flush=True)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        t1 = time.perf_counter()
        _fit(img, steps, quality, effort)
        torch.cuda.synchronize()
        prof_wall = time.perf_counter() - t1
    device_us, kernels = 0.0, 0
    for evt in prof.events():
        if getattr(evt, "device_type", None) is not None and evt.device_type.name == "CUDA":
            device_us += evt.device_time if hasattr(evt, "device_time") else evt.cuda_time
            kernels += 1
    top = sorted(
        prof.key_averages(),
        key=lambda e: -getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0)),
    )[:12]
    print(f"  [{steps} steps] profiled fit {prof_wall:.1f} s", flush=True)
    again = _fit(img, steps, quality, effort)
    return {
        "same_bytes_twice": again.sections == fitted.sections,
        "steps": n,
        "quality": quality,
        "fit_loop_seconds": loop,
        "encode_seconds": wall,
        "ms_per_step": 1000 * loop / n,
        "gpu_busy_fraction": device_us / 1e6 / prof_wall,
        "profiled_wall_seconds": prof_wall,
        "kernels_per_step": kernels / n,
        "sync_warnings": len(syncs),
        "sync_kinds": sorted(set(syncs)),
        "nondeterministic_ops": nondet,
        "psnr": fitted.stats["psnr"],
        "top_device_ops": [
            (e.key, e.count, getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0)) / 1e3)
            for e in top
        ],
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", nargs="?", default="kodim23")
    ap.add_argument("--image-dir", type=Path, default=KODAK)
    ap.add_argument("--steps", nargs="+", type=int, default=[100, 200])
    ap.add_argument("--quality", type=float, default=45)
    ap.add_argument("--effort", type=int, default=5)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="set a constant of core.grid.fit (JSON value), e.g. CUDA_FILL_UNINITIALIZED=true")
    args = ap.parse_args(argv)

    import torch

    from study_fit import set_constants  # this script's neighbour (run as python benchmarks/cuda_fit.py)

    set_constants(args.set)

    if not torch.cuda.is_available():
        raise SystemExit("cuda_fit: no CUDA device")
    img = np.asarray(Image.open(args.image_dir / f"{args.image}.png").convert("RGB"))
    report = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "image": args.image,
        "set": args.set,
        "runs": [],
    }
    for steps in args.steps:  # each run reported as soon as measured
        r = measure(img, steps, args.quality, args.effort)
        report["runs"].append(r)
        if args.json:
            args.json.write_text(json.dumps(report, indent=1))
        print(f"{r['steps']:5d} steps: {r['ms_per_step']:.2f} ms/step, GPU busy {r['gpu_busy_fraction']:.2f}, "
              f"{r['kernels_per_step']:.0f} kernels/step, {r['sync_warnings']} synchronising calls, "
              f"{r['psnr']:.2f} dB, same bytes twice: {r['same_bytes_twice']}")
        for k in r["sync_kinds"]:
            print("   sync:", k)
        for k in r["nondeterministic_ops"]:
            print("   not deterministic:", k)
        for key, count, ms in r["top_device_ops"]:
            print(f"   {ms:9.1f} ms  {count:6d}x  {key[:90]}", flush=True)


if __name__ == "__main__":
    main()
