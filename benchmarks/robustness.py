"""Two measurements behind ``docs/security.md``.

``decode-cost``: the cost of decoding a small *valid* file that declares a
large image. The file (a flat grey picture: all-zero latents and weights,
built directly, without a fit) is written, then decoded in a fresh process
with one torch thread after a small decode, timing the decode and the rise of
the peak resident memory.

``threads``: encode one seeded image with 1, 2 and 4 torch threads and report
each file's size and hash; the same thread count gives the same bytes, a
different one usually does not.

    python benchmarks/robustness.py decode-cost --side 4096
    python benchmarks/robustness.py threads
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec
DECODE_IN_A_FRESH_PROCESS = r"""
import re, sys, time
import torch
torch.set_num_threads(1)
import core
def peak():
    return int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
data = open(sys.argv[1], "rb").read()
core.decode(open(sys.argv[2], "rb").read())  # a small decode first, as in a process that has decoded before
before = peak()
start = time.perf_counter()
out = core.decode(data)
seconds = time.perf_counter() - start
print(seconds, peak() - before, out.shape, int(out.min()), int(out.max()))
"""


def flat_file(side: int) -> bytes:
    """A valid file of a ``side`` x ``side`` mid-grey RGB image, a few hundred bytes."""
    from core import container
    from core.grid.arch import GridArch, default_levels
    from core.grid.bitstream import GridModel, write_latents, write_model
    from core.grid.context import N_CTX_PARAMS, N_PASSES

    arch = GridArch(default_levels(side, side), (16, 16), 3)
    weights = [(np.zeros((o, i), np.int64), 0.01, np.zeros(o, np.int64), 0.01) for o, i in arch.layer_shapes()]
    ctx = np.zeros((arch.levels, N_PASSES, N_CTX_PARAMS), np.int16)  # scale index 0: the narrowest model
    model = GridModel(arch, 4, weights, ctx, [np.zeros(s, np.int64) for s in arch.grid_shapes(side, side)])
    return container.pack(width=side, height=side, channels=3, model_code=0, bits=4,
                          n_latents=arch.n_latents(side, side), n_params=arch.n_weights(), quality=0, effort=1,
                          sections=[(b"MODL", write_model(model)), (b"LATS", write_latents(model))])


def decode_cost(side: int) -> None:
    data = flat_file(side)
    with tempfile.TemporaryDirectory() as tmp:
        path, small = Path(tmp) / "flat.ani", Path(tmp) / "small.ani"
        path.write_bytes(data)
        small.write_bytes(flat_file(32))
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        out = subprocess.run([sys.executable, "-c", DECODE_IN_A_FRESH_PROCESS, str(path), str(small)], capture_output=True,
                             text=True, env=env, check=True)
    seconds, rss, *_ = out.stdout.split(maxsplit=2)
    print(f"{len(data)}-byte file declaring {side}x{side} pixels: decode {float(seconds):.1f} s, "
          f"peak resident memory +{int(rss) / 2**20:.0f} MiB ({int(rss) / side**2:.0f} bytes per pixel); "
          f"output {out.stdout.split(maxsplit=2)[2].strip()}")


def threads() -> None:
    import torch

    import core

    y, x = np.mgrid[0:48, 0:64]
    rng = np.random.default_rng(0)
    image = np.clip(np.stack([128 + 90 * np.sin(x / (3 + c)) * np.cos(y / (4 + c)) for c in range(3)], -1)
                    + rng.normal(0, 4, (48, 64, 3)), 0, 255).astype(np.uint8)
    for n in (1, 2, 4, 1):
        torch.set_num_threads(n)
        data = core.encode(image, effort=1, seed=0)
        print(f"{n} thread(s): {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    cost = sub.add_parser("decode-cost")
    cost.add_argument("--side", type=int, default=4096)
    sub.add_parser("threads")
    args = p.parse_args()
    decode_cost(args.side) if args.what == "decode-cost" else threads()


if __name__ == "__main__":
    main()
