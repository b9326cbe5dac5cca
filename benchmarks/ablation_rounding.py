"""Issue #5 ablation: the rounding methods of latents, compared on Kodak crops.

For each image, quality and method: fit (centre crop, fixed effort; by default
128x128 crops at effort 3, 400 steps: crops under 256x256 skip the grid fit's
half-resolution phase, whose quality-dependent length makes short fits of
larger crops non-monotone in quality), write the
real ``.ani`` bytes, decode them, and record bpp (whole file) and RGB PSNR;
the fit's ``hard_trace`` records the rate-distortion loss of the latents as
they would be stored (hard-rounded) every few steps, for convergence curves.
The report gives, per method, BD-rate against ``ste`` and against ``noise``
(per image over the qualities, then the mean over images; and on the
Kodak-average curve), and the loss against iteration.

    python benchmarks/ablation_rounding.py                      # run (resumes) and report
    python benchmarks/ablation_rounding.py --images kodim01 kodim05 kodim08 --no-report &
    python benchmarks/ablation_rounding.py --images kodim15 kodim20 kodim23 --no-report &
    python benchmarks/ablation_rounding.py --report-only        # tables and plot from the CSVs

A method is a registered name, optionally with option overrides:
``ssl:tau_max=1`` or ``ssl:ssl_a=1.5,tau_decay=3``. Rows already in the CSV
are skipped, so an interrupted run resumes; parallel runs on disjoint images
may share the CSVs (appends are locked). The script sets torch's thread count
(``--threads``, default 1); the library never does.
"""
from __future__ import annotations

import argparse
import csv
import fcntl
import math
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KODAK = ROOT.parent / "shared" / "data" / "kodak"

from benchmarks.bdrate import bd_rate, mean_curve  # noqa: E402

IMAGES = ["kodim01", "kodim05", "kodim08", "kodim15", "kodim20", "kodim23"]
QUALITIES = [20.0, 40.0, 60.0]
METHODS = ["ste", "noise", "softround", "sga", "linear", "cosine", "ssl", "linear3", "cosine3", "ssl3",
           "ssl:tau_max=0.5"]
ANCHORS = ("ste", "noise")
FIELDS = ["image", "quality", "method", "crop", "effort", "steps", "bytes", "bpp", "psnr", "final_loss", "fit_s"]
CURVE_FIELDS = ["image", "quality", "method", "step", "steps", "mse", "bits", "loss"]
BD_METHOD = "pchip"  # three qualities per image: too few points for the cubic fit


def parse_method(spec: str) -> tuple[str, dict]:
    name, _, rest = spec.partition(":")
    opts = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        opts[key.strip()] = float(value)
    return name, opts


def load_crop(name: str, crop: int) -> np.ndarray:
    from PIL import Image

    image = np.asarray(Image.open(KODAK / f"{name}.png").convert("RGB"))
    if crop:
        h, w = image.shape[:2]
        image = image[(h - crop) // 2 : (h + crop) // 2, (w - crop) // 2 : (w + crop) // 2]
    return np.ascontiguousarray(image)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255**2 / mse) if mse > 0 else float("inf")


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def append_rows(path: Path, fields: list[str], rows: list[dict]) -> None:
    """Append under an exclusive lock (parallel runs share the file)."""
    with open(path, "a", newline="") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            if fh.tell() == 0:
                csv.DictWriter(fh, fields).writeheader()
            csv.DictWriter(fh, fields).writerows(rows)
            fh.flush()
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run_one(image: np.ndarray, quality: float, spec: str, effort: int, hard_every: int) -> tuple[dict, list[dict]]:
    import core
    from core import container
    from core.grid.fit import fit_grid, quality_to_lambda

    name, overrides = parse_method(spec)
    opts = core.EncodeOptions(quality=quality, effort=effort, rounding=name, device="cpu", **overrides)
    h, w, c = image.shape
    lam = quality_to_lambda(quality)
    curve = []

    def hard_trace(step, mse, bits):
        loss = mse + lam * bits / (h * w)
        curve.append({"step": step, "mse": f"{mse:.6g}", "bits": f"{bits:.6g}", "loss": f"{loss:.6g}"})

    t0 = time.perf_counter()
    fitted = fit_grid(image, opts, hard_trace=hard_trace, hard_every=hard_every)
    fit_s = time.perf_counter() - t0
    code = core.hooks.model_families()[opts.model]["code"]
    data = container.pack(width=w, height=h, channels=c, model_code=code, bits=opts.bits,
                          n_latents=fitted.n_latents, n_params=fitted.n_params,
                          quality=int(round(quality)), effort=effort, sections=fitted.sections)
    rec = core.decode(data)
    steps = fitted.stats["steps"]
    for point in curve:
        point["steps"] = steps
    row = {"steps": steps, "bytes": len(data), "bpp": round(len(data) * 8 / (h * w), 5),
           "psnr": round(psnr(image, rec), 4), "final_loss": float(curve[-1]["loss"]), "fit_s": round(fit_s, 2)}
    return row, curve


def run(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    csv_path, curves_path = out.with_suffix(".csv"), out.parent / f"{out.name}_curves.csv"
    done = {(r["image"], float(r["quality"]), r["method"]) for r in read_rows(csv_path)}
    for name in args.images:
        image = load_crop(name, args.crop)
        for q in args.qualities:
            for spec in args.methods:
                if (name, q, spec) in done:
                    continue
                row, curve = run_one(image, q, spec, args.effort, args.hard_every)
                key = {"image": name, "quality": q, "method": spec}
                append_rows(curves_path, CURVE_FIELDS, [{**key, **p} for p in curve])
                append_rows(csv_path, FIELDS, [{**key, "crop": args.crop, "effort": args.effort, **row}])
                print(f"{name} q{q:g} {spec:14s} bpp {row['bpp']:.4f} psnr {row['psnr']:.2f} "
                      f"loss {row['final_loss']:.3e} {row['fit_s']:.1f} s", flush=True)


# -- report -------------------------------------------------------------------------------------------

def _curves_by(rows):
    """{method: {image: [(bpp, psnr) by quality]}} for images with every quality."""
    qualities = sorted({float(r["quality"]) for r in rows})
    pts = defaultdict(dict)
    for r in rows:
        pts[(r["method"], r["image"])][float(r["quality"])] = (float(r["bpp"]), float(r["psnr"]))
    out = defaultdict(dict)
    for (method, image), by_q in pts.items():
        if all(q in by_q for q in qualities):
            out[method][image] = [by_q[q] for q in qualities]
    return out, qualities


def bd_table(rows: list[dict]) -> list[dict]:
    curves, _ = _curves_by(rows)
    images = sorted(set.intersection(*(set(v) for v in curves.values()))) if curves else []
    table = []
    for method in curves:
        entry = {"method": method, "images": len(images)}
        for anchor in ANCHORS:
            if anchor not in curves:
                continue
            per = [bd_rate(curves[anchor][i], curves[method][i], BD_METHOD) for i in images]
            finite = [v for v in per if math.isfinite(v)]
            entry[f"vs_{anchor}_mean"] = statistics.mean(finite) if finite else float("nan")
            entry[f"vs_{anchor}_n"] = len(finite)
            entry[f"vs_{anchor}_wins"] = sum(v < 0 for v in finite)
            entry[f"vs_{anchor}_range"] = (min(finite), max(finite)) if finite else (float("nan"), float("nan"))
            entry[f"vs_{anchor}_avg_curve"] = bd_rate(mean_curve([curves[anchor][i] for i in images]),
                                                      mean_curve([curves[method][i] for i in images]), BD_METHOD)
        mc = mean_curve([curves[method][i] for i in images])
        entry["mean_curve"] = mc
        table.append(entry)
    table.sort(key=lambda e: (not math.isfinite(e.get("vs_ste_mean", float("nan"))), e.get("vs_ste_mean", 0.0)))
    return table


def convergence(curve_rows: list[dict], rows: list[dict]) -> dict:
    """{method: {quality: (fractions, mean relative loss)}}: each run's hard loss
    divided by the best final loss of any method on that image and quality,
    sampled at fractions of the step budget, geometric mean over images."""
    best = defaultdict(lambda: float("inf"))
    for r in rows:
        key = (r["image"], float(r["quality"]))
        best[key] = min(best[key], float(r["final_loss"]))
    runs = defaultdict(dict)
    for r in curve_rows:
        runs[(r["method"], r["image"], float(r["quality"]))][int(r["step"])] = (int(r["steps"]), float(r["loss"]))
    fractions = np.linspace(0, 1, 41)
    acc = defaultdict(lambda: defaultdict(list))
    for (method, image, q), pts in runs.items():
        if (image, q) not in best:
            continue
        steps = sorted(pts)
        total = pts[steps[0]][0]
        x = np.array(steps) / max(total - 1, 1)
        y = np.log(np.array([pts[s][1] for s in steps]) / best[(image, q)])
        acc[method][q].append(np.interp(fractions, x, y))
    return {m: {q: (fractions, np.exp(np.mean(v, axis=0))) for q, v in by_q.items()} for m, by_q in acc.items()}


def report(args) -> None:
    out = Path(args.out)
    csv_path, curves_path = out.with_suffix(".csv"), out.parent / f"{out.name}_curves.csv"
    rows = read_rows(csv_path)
    if not rows:
        raise SystemExit(f"no rows in {csv_path}")
    curve_rows = read_rows(curves_path)
    table = bd_table(rows)
    conv = convergence(curve_rows, rows)
    qualities = sorted({float(r["quality"]) for r in rows})
    crops = sorted({r["crop"] for r in rows})
    efforts = sorted({r["effort"] for r in rows})
    steps = sorted({int(r["steps"]) for r in rows})
    images = sorted({r["image"] for r in rows})
    fit_s = [float(r["fit_s"]) for r in rows]
    steps_text = (f"{steps[0]} steps" if len(steps) == 1 else
                  f"{min(steps)}-{max(steps)} steps: the step count depends on the quality through the coarse phase")

    lines = [
        "# Rounding of latents during fitting: ablation (issue #5)",
        "",
        f"{len(images)} Kodak images ({', '.join(images)}), {crops[0]}x{crops[0]} centre crops, qualities "
        f"{', '.join(f'{q:g}' for q in qualities)}, effort {', '.join(efforts)} ({steps_text}), seed 0, "
        "other options at the defaults of the time (`tau_max` 1, `tau_decay` 2, `ssl_a` 2.3 unless the method says). "
        f"bpp of the whole `.ani` file, PSNR of its decode. Machine: {platform.machine()}, "
        f"{os.cpu_count()} CPU cores shared with other jobs, torch {args.threads} thread(s) per fit; fit time "
        f"median {statistics.median(fit_s):.1f} s. Produced by `python benchmarks/ablation_rounding.py` "
        f"(raw rows in `{csv_path.name}`, loss curves in `{curves_path.name}`).",
        "",
        f"BD-rate ({BD_METHOD} interpolation of log rate over PSNR, `benchmarks/bdrate.py`; negative = fewer "
        "bits than the anchor at equal PSNR): per image over its qualities, then the mean over images "
        "(with the number of images where the method needs fewer bits, out of those where the BD-rate is "
        "defined: both curves increasing and overlapping) and the range over images, and on the average "
        "curve (mean bpp and mean PSNR per quality over the images). Relative loss: the rate-distortion loss "
        "`MSE + lambda * bits / pixels` of the hard-rounded latents at 50 %, 75 % and 100 % of the steps, "
        "divided by the best final loss of any method on that image and quality (geometric mean over images "
        "and qualities; 1.000 = the best final loss).",
        "",
        "| method | BD-rate vs ste, mean (wins) | range over images | vs ste, average curve | "
        "BD-rate vs noise, mean (wins) | vs noise, average curve | mean bpp | mean PSNR (dB) | "
        "rel. loss 50 % | 75 % | 100 % |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def rel(method, frac):
        vals = [float(np.interp(frac, f, v)) for f, v in conv.get(method, {}).values()]
        return math.exp(statistics.mean(math.log(v) for v in vals)) if vals else float("nan")

    for e in table:
        m = e["method"]
        cells = [f"`{m}`"]
        for anchor in ANCHORS:
            cells.append(f"{e.get(f'vs_{anchor}_mean', float('nan')):+.1f} % ({e.get(f'vs_{anchor}_wins', 0)}/"
                         f"{e.get(f'vs_{anchor}_n', 0)})")
            if anchor == "ste":
                lo, hi = e.get("vs_ste_range", (float("nan"), float("nan")))
                cells.append(f"{lo:+.1f} .. {hi:+.1f} %")
            cells.append(f"{e.get(f'vs_{anchor}_avg_curve', float('nan')):+.1f} %")
        bpp = statistics.mean(p[0] for p in e["mean_curve"])
        ps = statistics.mean(p[1] for p in e["mean_curve"])
        cells += [f"{bpp:.3f}", f"{ps:.2f}", f"{rel(m, 0.5):.3f}", f"{rel(m, 0.75):.3f}", f"{rel(m, 1.0):.3f}"]
        lines.append("| " + " | ".join(cells) + " |")

    lines += ["", "Average curves (mean bpp / mean PSNR over the images, per quality):", "",
              "| method | " + " | ".join(f"q{q:g}" for q in qualities) + " |",
              "|---|" + "---|" * len(qualities)]
    for e in table:
        lines.append(f"| `{e['method']}` | " + " | ".join(f"{b:.3f} / {p:.2f}" for b, p in e["mean_curve"]) + " |")
    best = table[0]["method"] if table else None
    lines += ["", f"Best by mean BD-rate against `ste`: `{best}`.", ""]
    if best:
        curves, _ = _curves_by(rows)
        shown = sorted(curves[best])
        lines += [f"Per image, BD-rate against `{best}` (positive = more bits than `{best}`):", "",
                  "| method | " + " | ".join(shown) + " | median time per fit (s) |",
                  "|---|" + "---|" * (len(shown) + 1)]
        for e in table:
            m = e["method"]
            vals = [bd_rate(curves[best][i], curves[m][i], BD_METHOD) if i in curves[m] else float("nan")
                    for i in shown]
            t = statistics.median(float(r["fit_s"]) for r in rows if r["method"] == m)
            lines.append(f"| `{m}` | " + " | ".join(f"{v:+.1f} %" for v in vals) + f" | {t:.1f} |")
        lines.append("")
    md = out.with_suffix(".md")
    if args.notes and Path(args.notes).exists():
        lines += [Path(args.notes).read_text().rstrip(), ""]
    md.write_text("\n".join(lines))
    plot(table, conv, qualities, out.with_suffix(".png"))
    print(md.read_text())


def plot(table, conv, qualities, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(qualities), figsize=(5 * (1 + len(qualities)), 4.5))
    cmap = plt.get_cmap("tab20")
    methods = [e["method"] for e in table]
    style = {m: dict(color=cmap((2 * i) % 20 + (i >= 10)), ls="--" if m.endswith("3") or ":" in m else "-")
             for i, m in enumerate(methods)}
    ax = axes[0]
    for e in table:
        b, p = zip(*e["mean_curve"])
        ax.plot(b, p, marker="o", ms=3, label=e["method"], **style[e["method"]])
    ax.set_xlabel("bpp (mean over images)")
    ax.set_ylabel("PSNR dB (mean over images)")
    ax.set_title("rate-distortion, Kodak crops")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    for ax, q in zip(axes[1:], qualities):
        for m in methods:
            if q in conv.get(m, {}):
                f, v = conv[m][q]
                ax.plot(f, v, label=m, **style[m])
        ax.set_yscale("log")
        ax.set_ylim(0.95, 3.0)
        ax.set_xlabel("fraction of the steps")
        ax.set_ylabel("hard-rounded RD loss / best final")
        ax.set_title(f"convergence, quality {q:g}")
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", nargs="+", default=IMAGES)
    ap.add_argument("--qualities", nargs="+", type=float, default=QUALITIES)
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--crop", type=int, default=128, help="centre crop side (0: whole image)")
    ap.add_argument("--effort", type=int, default=3)
    ap.add_argument("--hard-every", type=int, default=10, help="steps between hard-rounded loss samples")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rounding"))
    ap.add_argument("--notes", default=None, help="a Markdown file appended to the report (findings)")
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args(argv)
    if not args.report_only:
        run(args)
    if not args.no_report:
        report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
