"""One fit of the grid model with its tuning constants overridden, for studies.

    python benchmarks/study_fit.py kodim23 --quality 55 --set LR_NETS=0.003
    python benchmarks/study_fit.py kodim23 --crop 256 --lam 0 --steps 800 --set COARSE_END=0
    python benchmarks/study_fit.py kodim23 --quality 35 --option rounding=softround
    python benchmarks/study_fit.py kodim01 --quality 10 25 45 70 90 --set FREEZE=0.85 \
        --tag freeze0.85 --jsonl study.jsonl      # then: python -m benchmarks.study_table study.jsonl

Prints PSNR, whole-file bpp, fit time (wall and process CPU: the CPU time is
the figure to compare when other processes share the machine) and steps. ``--set NAME=VALUE`` sets a
module constant of ``core.grid.fit`` (JSON values); ``--lam`` replaces the
quality->lambda map; ``--steps`` replaces the effort's step budget (``EFFORT_STEPS``:
the step count of an 85 %-coarse fit, see ``core.grid.fit.schedule``); ``--option
NAME=VALUE`` sets an encode option. Several ``--quality`` values fit one after
the other; ``--jsonl`` appends one JSON line per fit (tag, image, quality,
bpp, PSNR, times, steps) for :mod:`benchmarks.study_table`. The process keeps
the memory a fit frees, as the ``ani`` command does (:mod:`core.heap`;
``ANI_KEEP_HEAP=0`` in the environment: not).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def set_constants(items) -> None:
    """Apply ``NAME=VALUE`` items (JSON values; lists become tuples) to the
    module constants of ``core.grid.fit``; an unknown name exits."""
    from core.grid import fit as F

    for item in items:
        name, _, value = item.partition("=")
        if not hasattr(F, name):
            raise SystemExit(f"core.grid.fit has no constant {name}")
        v = json.loads(value)
        setattr(F, name, tuple(v) if isinstance(v, list) else v)


def parse_options(items) -> dict:
    """``NAME=VALUE`` encode options as keywords (JSON values, else the string)."""
    options = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            options[name] = json.loads(value)
        except json.JSONDecodeError:
            options[name] = value
    return options


def load_image(name: str, crop: int = 0) -> tuple[Path, np.ndarray]:
    """The path of a Kodak name (e.g. ``kodim23``) or of a file, and its RGB
    pixels, the ``crop`` x ``crop`` centre if ``crop`` is given."""
    path = Path(name) if Path(name).is_file() else KODAK / f"{name}.png"
    img = np.asarray(Image.open(path).convert("RGB"))
    if crop:
        h, w = img.shape[:2]
        img = np.ascontiguousarray(img[(h - crop) // 2 : (h + crop) // 2, (w - crop) // 2 : (w + crop) // 2])
    return path, img


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", help="Kodak name, e.g. kodim23, or a path")
    ap.add_argument("--quality", type=float, nargs="+", default=[75])
    ap.add_argument("--effort", type=int, default=5)
    ap.add_argument("--crop", type=int, default=0, help="centre crop of this side (0: whole image)")
    ap.add_argument("--lam", type=float, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                    help="an encode option, e.g. rounding=ssl or tau_max=0.5 (JSON values, else a string)")
    ap.add_argument("--tag", default="", help="name of this variant in the --jsonl rows")
    ap.add_argument("--jsonl", type=Path, default=None, help="append one JSON line per fit to this file")
    ap.add_argument("--trace", type=Path, default=None,
                    help="write the fit's loss terms to this JSON file, per quality: as trained (every step) and "
                         "true (hard-rounded latents, stored context model; every --trace-every steps)")
    ap.add_argument("--trace-every", type=int, default=25)
    args = ap.parse_args(argv)

    import torch

    from core.grid import fit as F
    from core.options import EncodeOptions

    from core.heap import retain_freed_memory

    torch.set_num_threads(args.threads)
    retain_freed_memory()  # as the ``ani`` command and the benchmark (``ANI_KEEP_HEAP=0``: not)
    set_constants(args.set)
    if args.lam is not None:
        F.quality_to_lambda = lambda q: args.lam
    if args.steps is not None:
        F.EFFORT_STEPS[args.effort] = args.steps
    _, img = load_image(args.image, args.crop)
    options = parse_options(args.option)
    traces = {}
    for quality in args.quality:
        hard, trained = [], []
        if args.trace is not None:
            traces[f"{quality:g}"] = {"hard": hard, "trained": trained}
        t0, c0 = time.perf_counter(), time.process_time()
        fitted = F.fit_grid(img, EncodeOptions(quality=quality, effort=args.effort, **options),
                            trace=None if args.trace is None else (lambda s, m, b: trained.append((s, m, b))),
                            hard_trace=None if args.trace is None else (lambda s, m, b: hard.append((s, m, b))),
                            hard_every=args.trace_every)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        # container overhead: preamble + header + CRC (40 bytes) and 12 bytes per section incl. END
        size = 40 + sum(len(d) + 12 for _, d in fitted.sections) + 12
        bpp = size * 8 / (img.shape[0] * img.shape[1])
        print(f"{args.image} q={quality:g} {' '.join(args.set + args.option)}: psnr {fitted.stats['psnr']:.2f} dB, "
              f"bpp {bpp:.4f}, fit {seconds:.1f} s (CPU {cpu:.1f} s), steps {fitted.stats['steps']}"
              + "".join(f", {k} {v:.6g}" for k, v in fitted.stats.items() if k.startswith(("rdo_", "polish_"))), flush=True)
        if args.jsonl is not None:
            row = {"tag": args.tag, "image": Path(args.image).stem, "crop": args.crop, "quality": quality, "bpp": bpp,
                   "psnr": fitted.stats["psnr"], "wall_s": seconds, "cpu_s": cpu, "steps": fitted.stats["steps"]}
            with open(args.jsonl, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    if args.trace is not None:
        args.trace.write_text(json.dumps({"image": Path(args.image).stem, "pixels": int(img.shape[0] * img.shape[1]),
                                          "traces": traces}))

if __name__ == "__main__":
    main()
