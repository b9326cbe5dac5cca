"""Issue #4 benchmark: the siren and mfn families (LSQ, Once-for-All) on
256x256 centre crops of Kodak images (full images would cost too much CPU
time for the number of fits here).

Four parts, rows in one CSV (``part`` column):

* ``lsq``: a plain (``elastic="none"``) network of shape ``--shape`` trained
  with LSQ at 2, 3, 4, 6, 8 bits (first and output layer at 8 bits, biases
  at 10), and at 4 bits with the first and output layer at 4 bits too
  (``lsq4-all``), against the float32 network of the same shape trained for
  the same steps (``--lsq-models``; the other models at 4 bits only). PSNR of
  the 8-bit decode; bpp of the whole file, and of the parameter stream alone
  (the coded integers; float32: 32 bits a parameter).
* ``ofa``: one supernet fit (``subnet="all"``, elastic depth and width,
  sandwich rule) against separately trained networks of the same shapes, all
  at 4 bits and the same number of steps (``--ofa-models``); each
  sub-network's PSNR is decoded from the one supernet file, its bpp is that
  of the file ``core.extract`` cuts out of it.
* ``side``: siren and mfn (4-bit ``--shape``, from the ``lsq`` part), and
  grid (at ``--grid-qualities``), next to Pillow JPEG at the same bpp (a
  quality 1..95 sweep in the same run, linear in log bpp), with fit times.
* ``decode``: decode time of every sub-network of one default (4, 64) siren
  supernet file of the full first image.

    nice -n 5 python benchmarks/bench_inr.py --out benchmarks/results/inr

Rows already in the CSV are skipped, so an interrupted run resumes; the
Markdown summary is rewritten from the whole CSV at the end of every run.
The script sets torch to 1 thread (the machine has 2 cores shared with other jobs); the library never does.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KODAK = ROOT.parent / "shared" / "data" / "kodak"
FIELDS = ["part", "image", "model", "config", "depth", "width", "bits", "steps", "bytes", "bpp", "param_bpp",
          "psnr", "jpeg_psnr_at_bpp", "fit_s"]
LSQ_BITS = (2, 3, 4, 6, 8)


def psnr(a, b) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 10 * math.log10(255**2 / mse) if mse > 0 else float("inf")


def crop(name: str, size: int) -> np.ndarray:
    im = np.asarray(Image.open(KODAK / f"{name}.png").convert("RGB"))
    h, w = im.shape[:2]
    return np.ascontiguousarray(im[(h - size) // 2 : (h + size) // 2, (w - size) // 2 : (w + size) // 2])


def jpeg_at(image: np.ndarray, bpp: float) -> float:
    """Pillow JPEG's PSNR at ``bpp`` on this image (the issue-2 benchmark's sweep)."""
    from bench_codec import interp_log, jpeg_curve  # noqa: PLC0415 - a sibling script

    return interp_log(jpeg_curve(image), bpp)


def param_bytes(data: bytes) -> int:
    """Bytes of the coded network integers: the chunk sections' data."""
    from core import container

    _, sections = container.parse(data)
    return sum(len(v) for k, v in sections.items() if k[:2] == b"NP")


class Table:
    def __init__(self, path: Path):
        self.path = path
        self.rows = []
        if path.exists():
            with open(path, newline="") as fh:
                self.rows = list(csv.DictReader(fh))
        self.done = {(r["part"], r["image"], r["model"], r["config"]) for r in self.rows}

    def has(self, *key) -> bool:
        return tuple(str(k) for k in key) in self.done

    def add(self, **row) -> None:
        row = {k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()}
        self.rows.append({k: row.get(k, "") for k in FIELDS})
        self.done.add((row["part"], row["image"], row["model"], row["config"]))
        new = not self.path.exists()
        with open(self.path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=FIELDS)
            if new:
                w.writeheader()
            w.writerow({k: row.get(k, "") for k in FIELDS})
        print(" ".join(f"{k}={row.get(k, '')}" for k in FIELDS if row.get(k, "") != ""), flush=True)


def encode_row(image, n_pix, **kw):
    import core

    t0 = time.perf_counter()
    data = core.encode(image, **kw)
    fit_s = time.perf_counter() - t0
    return data, fit_s, len(data) * 8 / n_pix


def run_lsq(tab, name, image, args, model, extra):
    import core
    from core.inr import fit as F
    from core.inr.layout import KIND_FOURIER, KIND_SIREN, InrArch

    d, w = args.shape
    n_pix = image.shape[0] * image.shape[1]
    effort_steps = F.EFFORT_STEPS[args.effort]
    if not tab.has("lsq", name, model, "float32"):
        kind = KIND_SIREN if model == "siren" else KIND_FOURIER
        arch = InrArch(kind, 3, (d,), (w,), 4, 8, 8, F.BIAS_BITS)
        t0 = time.perf_counter()
        trained = F.train(image, arch, effort_steps, quantize=False)
        fit_s = time.perf_counter() - t0
        n = arch.n_params()
        tab.add(part="lsq", image=name, model=model, config="float32", depth=d, width=w, bits=32, steps=effort_steps,
                bytes=4 * n, bpp=32 * n / n_pix, param_bpp=32 * n / n_pix,
                psnr=F.float_psnr(trained, image, (d, w)), fit_s=fit_s)
    for bits in (LSQ_BITS if model in args.lsq_models else (4,)):
        cfg = f"lsq{bits}"
        if tab.has("lsq", name, model, cfg):
            continue
        data, fit_s, bpp = encode_row(image, n_pix, model=model, bits=bits, supernet=(d, w), elastic="none",
                                      effort=args.effort, **extra)
        tab.add(part="lsq", image=name, model=model, config=cfg, depth=d, width=w, bits=bits, steps=effort_steps,
                bytes=len(data), bpp=bpp, param_bpp=param_bytes(data) * 8 / n_pix,
                psnr=psnr(image, core.decode(data)), fit_s=fit_s)
    if model in args.lsq_models and not tab.has("lsq", name, model, "lsq4-all"):
        # every layer at 4 bits (biases stay at 10): the paper's "4 bits = 8x smaller" setting
        data, fit_s, bpp = encode_row(image, n_pix, model=model, bits=4, first_bits=4, last_bits=4, supernet=(d, w),
                                      elastic="none", effort=args.effort, **extra)
        tab.add(part="lsq", image=name, model=model, config="lsq4-all", depth=d, width=w, bits=4, steps=effort_steps,
                bytes=len(data), bpp=bpp, param_bpp=param_bytes(data) * 8 / n_pix,
                psnr=psnr(image, core.decode(data)), fit_s=fit_s)


def run_ofa(tab, name, image, args, model, extra):
    import core
    from core.inr import fit as F

    D, W = args.shape
    n_pix = image.shape[0] * image.shape[1]
    steps = F.EFFORT_STEPS[args.effort]
    subnets = [tuple(int(v) for v in s.split("x")) for s in args.ofa_subnets]
    if not all(tab.has("ofa", name, model, f"supernet {d}x{w}") for d, w in subnets):
        data, fit_s, _ = encode_row(image, n_pix, model=model, bits=4, supernet=(D, W), subnet="all",
                                    effort=args.effort, **extra)
        for d, w in subnets:
            t0 = time.perf_counter()
            out = core.decode(data, subnet=(d, w))
            dec_s = time.perf_counter() - t0
            one = core.extract(data, (d, w))
            tab.add(part="ofa", image=name, model=model, config=f"supernet {d}x{w}", depth=d, width=w, bits=4,
                    steps=steps, bytes=len(one), bpp=len(one) * 8 / n_pix, param_bpp=param_bytes(one) * 8 / n_pix,
                    psnr=psnr(image, out), fit_s=fit_s, jpeg_psnr_at_bpp="")
            print(f"  decode {d}x{w}: {dec_s * 1000:.1f} ms", flush=True)
    for d, w in subnets:
        cfg = f"separate {d}x{w}"
        if tab.has("ofa", name, model, cfg):
            continue
        data, fit_s, bpp = encode_row(image, n_pix, model=model, bits=4, supernet=(d, w), elastic="none",
                                      effort=args.effort, **extra)
        tab.add(part="ofa", image=name, model=model, config=cfg, depth=d, width=w, bits=4, steps=steps,
                bytes=len(data), bpp=bpp, param_bpp=param_bytes(data) * 8 / n_pix,
                psnr=psnr(image, core.decode(data)), fit_s=fit_s)


def run_side(tab, name, image, args):
    import core

    n_pix = image.shape[0] * image.shape[1]
    for r in [r for r in tab.rows if r["part"] == "lsq" and r["image"] == name and r["config"] == "lsq4"]:
        if not tab.has("side", name, r["model"], "lsq4"):
            tab.add(part="side", image=name, model=r["model"], config="lsq4", depth=r["depth"], width=r["width"],
                    bits=4, steps=r["steps"], bytes=int(r["bytes"]), bpp=float(r["bpp"]), psnr=float(r["psnr"]),
                    jpeg_psnr_at_bpp=jpeg_at(image, float(r["bpp"])), fit_s=float(r["fit_s"]))
    for q in args.grid_qualities:
        cfg = f"q{q:g} effort{args.grid_effort}"
        if tab.has("side", name, "grid", cfg):
            continue
        data, fit_s, bpp = encode_row(image, n_pix, model="grid", quality=q, effort=args.grid_effort)
        tab.add(part="side", image=name, model="grid", config=cfg, bits=4, bytes=len(data), bpp=bpp,
                psnr=psnr(image, core.decode(data)), jpeg_psnr_at_bpp=jpeg_at(image, bpp), fit_s=fit_s)


def run_decode_timing(tab, args):
    """Decode time of every sub-network of one supernet file (the default
    (4, 64) supernet, effort 1: the weights' values do not change the time),
    rendered at the full Kodak size, median of 3 decodes."""
    import statistics

    import core

    name = args.images[0]
    image = np.asarray(Image.open(KODAK / f"{name}.png").convert("RGB"))
    if all(tab.has("decode", name, "siren", f"{d}x{w}") for d, w in _default_subnets()):
        return
    data = core.encode(image, model="siren", subnet="all", effort=1)
    n_pix = image.shape[0] * image.shape[1]
    for sub in core.describe(data)["subnets"]:
        d, w = sub["depth"], sub["width"]
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            core.decode(data, subnet=(d, w))
            times.append(time.perf_counter() - t0)
        tab.add(part="decode", image=name, model="siren", config=f"{d}x{w}", depth=d, width=w, bits=4,
                bytes=sub["bytes"], bpp=sub["bytes"] * 8 / n_pix, fit_s=statistics.median(times))


def _default_subnets():
    from core.options import DEFAULT_ELASTIC, DEFAULT_SUPERNET
    from core.inr.layout import elastic_choices

    depths, widths = elastic_choices(*DEFAULT_SUPERNET, DEFAULT_ELASTIC)
    return [(d, w) for d in depths for w in widths]


def _mean(rows, key):
    vals = [float(r[key]) for r in rows if r.get(key) not in ("", None) and not math.isnan(float(r[key]))]
    return sum(vals) / len(vals) if vals else float("nan")


def summary(tab: Table, args) -> str:
    rows = tab.rows
    images = sorted({r["image"] for r in rows})
    out = [f"# siren / mfn benchmark (issue #4)", "",
           f"256x256 centre crops of {', '.join(images)}; means over the {len(images)} images (PSNR: mean of per-image "
           f"PSNR on the 8-bit RGB decode; bpp of the whole file unless said). Machine: {platform.machine()}, "
           f"{os.cpu_count()} CPU cores shared with other jobs (fit times are indicative only), torch "
           f"{_torch_version()} on the CPU, 1 thread. Command: `nice -n 5 python benchmarks/bench_inr.py`. "
           f"Raw rows: `inr.csv`.", ""]
    out += ["## 1. LSQ against float32 (same shape, same steps; first/last layer 8 bits, biases 10 bits)", "",
            "| model | weights | bpp (file) | bpp (parameter stream) | stream vs float32 | PSNR dB | loss vs float32 dB |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for model in sorted({r["model"] for r in rows if r["part"] == "lsq"}):
        base = [r for r in rows if r["part"] == "lsq" and r["model"] == model and r["config"] == "float32"]
        fp, fbpp = _mean(base, "psnr"), _mean(base, "param_bpp")
        for cfg in ["float32"] + [f"lsq{b}" for b in LSQ_BITS] + ["lsq4-all"]:
            sel = [r for r in rows if r["part"] == "lsq" and r["model"] == model and r["config"] == cfg]
            if not sel:
                continue
            p, pb = _mean(sel, "psnr"), _mean(sel, "param_bpp")
            label = {"float32": "float32", "lsq4-all": "4 bits, first/last layer too"}.get(cfg, f"{cfg[3:]} bits")
            out.append(f"| {model} {sel[0]['depth']}x{sel[0]['width']} | {label} | {_mean(sel, 'bpp'):.3f} | {pb:.3f} | "
                       f"{fbpp / pb:.1f}x smaller | {p:.2f} | {fp - p:+.2f} |".replace("| 1.0x smaller", "| 1x"))
    out += ["", "## 2. One supernet fit against separately trained networks (4 bits, equal steps)", "",
            "| model | sub-network | bpp (extracted) | PSNR supernet dB | PSNR separate dB | gap dB |",
            "|---|---|---:|---:|---:|---:|"]
    for model in sorted({r["model"] for r in rows if r["part"] == "ofa"}):
        for s in args.ofa_subnets:
            sup = [r for r in rows if r["part"] == "ofa" and r["model"] == model and r["config"] == f"supernet {s}"]
            sep = [r for r in rows if r["part"] == "ofa" and r["model"] == model and r["config"] == f"separate {s}"]
            if sup and sep:
                a, b = _mean(sup, "psnr"), _mean(sep, "psnr")
                out.append(f"| {model} | {s} | {_mean(sup, 'bpp'):.3f} | {a:.2f} | {b:.2f} | {b - a:+.2f} |")
    sup_t = [r for r in rows if r["part"] == "ofa" and r["config"].startswith("supernet")]
    sep_t = [r for r in rows if r["part"] == "ofa" and r["config"].startswith("separate")]
    if sup_t and sep_t:
        out += ["", f"Fit time: one supernet {_mean(sup_t, 'fit_s'):.0f} s, one separate network "
                    f"{_mean(sep_t, 'fit_s'):.0f} s on average."]
    out += ["", "## 3. siren, mfn and grid next to JPEG at the same bpp", "",
            "| model | setting | bpp | PSNR dB | JPEG PSNR at that bpp dB | difference dB | fit s |",
            "|---|---|---:|---:|---:|---:|---:|"]
    keys = sorted({(r["model"], r["config"]) for r in rows if r["part"] == "side"})
    for model, cfg in keys:
        sel = [r for r in rows if r["part"] == "side" and r["model"] == model and r["config"] == cfg]
        p, j = _mean(sel, "psnr"), _mean(sel, "jpeg_psnr_at_bpp")
        setting = f"{sel[0]['depth']}x{sel[0]['width']} 4 bits" if model != "grid" else cfg
        out.append(f"| {model} | {setting} | {_mean(sel, 'bpp'):.3f} | {p:.2f} | {j:.2f} | {p - j:+.2f} | "
                   f"{_mean(sel, 'fit_s'):.0f} |")
    dec = [r for r in rows if r["part"] == "decode"]
    if dec:
        out += ["", f"## 4. Decode time of each sub-network of one supernet file", "",
                f"siren, the default (4, 64) supernet stored with `subnet=\"all\"` (effort 1), full {dec[0]['image']} "
                f"(768x512), each sub-network decoded from the same file (median of 3, entropy decoding and rendering; "
                f"in this table the `fit_s` column of the CSV holds the decode time). `prefix bytes`: the length of the "
                f"file prefix that holds the sub-network.", "",
                "| sub-network | parameters | prefix bytes | decode s |", "|---|---:|---:|---:|"]
        for r in dec:
            out.append(f"| {r['config']} | {_params(r)} | {r['bytes']} | {float(r['fit_s']):.3f} |")
    return "\n".join(out) + "\n"


def _params(row) -> int:
    from core.inr.layout import KIND_SIREN, InrArch, elastic_choices
    from core.options import DEFAULT_ELASTIC, DEFAULT_SUPERNET

    arch = InrArch(KIND_SIREN, 3, *elastic_choices(*DEFAULT_SUPERNET, DEFAULT_ELASTIC), 4, 8, 8, 10)
    return arch.subnet_params(int(row["depth"]), int(row["width"]))


def _torch_version() -> str:
    import torch

    return torch.__version__


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", nargs="+", default=["kodim01", "kodim05", "kodim15", "kodim23"])
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--shape", type=lambda s: tuple(int(v) for v in s.split("x")), default=(3, 48),
                    help="depth x width of the lsq networks and of the supernet (default 3x48)")
    ap.add_argument("--effort", type=int, default=5, help="siren/mfn effort (steps: core/inr/fit.py EFFORT_STEPS)")
    ap.add_argument("--models", nargs="+", default=["siren", "mfn"])
    ap.add_argument("--lsq-models", nargs="+", default=["siren"],
                    help="models measured at every bit-width (the others at 4 bits only, for part 3)")
    ap.add_argument("--ofa-models", nargs="+", default=["siren"])
    ap.add_argument("--ofa-subnets", nargs="+", default=["2x24", "2x48", "3x12", "3x24", "3x36", "3x48"])
    ap.add_argument("--grid-qualities", nargs="+", type=float, default=[15, 35])
    ap.add_argument("--grid-effort", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "inr"))
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)  # the cores are shared: oversubscribed intra-op threads make small fits far slower
    tab = Table(Path(args.out + ".csv"))
    for name in args.images:
        image = crop(name, args.crop)
        for model in args.models:
            run_lsq(tab, name, image, args, model, {})
        for model in args.ofa_models:
            run_ofa(tab, name, image, args, model, {})
        run_side(tab, name, image, args)
        Path(args.out + ".md").write_text(summary(tab, args))
    run_decode_timing(tab, args)
    Path(args.out + ".md").write_text(summary(tab, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
