"""Tables of fit studies: the JSON lines of ``study_fit.py --jsonl`` against JPEG.

    python -m benchmarks.study_table benchmarks/results/schedule_study.jsonl

For every tag (variant) with the same qualities on every image it ran on:
BD-rate against JPEG (cubic / pchip) of the image-average curve, with JPEG's
rows for the same images read from a Kodak benchmark CSV, and the curve
itself; then, per quality, the fit's own objective ``J = MSE + lambda * bpp``
(MSE on a 0..1 scale, lambda of ``core.grid.fit.quality_to_lambda``) per image:
at one quality a lower J is a better rate-distortion trade-off for that lambda,
whatever the PSNR range, which BD-rate depends on.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from .bdrate import bd_rate, bpp_at, mean_curve
from .report import load

RESULTS = Path(__file__).resolve().parent / "results"
#: fewer points than this give no BD-rate (a cubic through 4 points at least)
MIN_QUALITIES = 4


def read(paths) -> dict[str, dict[str, dict[float, tuple[float, float]]]]:
    """``rows[tag][image][quality] = (bpp, psnr)``; a later line replaces an earlier one."""
    rows: dict = defaultdict(lambda: defaultdict(dict))
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                rows[r["tag"]][r["image"]][float(r["quality"])] = (float(r["bpp"]), float(r["psnr"]))
    return rows


def objective(quality: float, bpp: float, psnr: float) -> float:
    from core.grid.fit import quality_to_lambda

    return 10 ** (-psnr / 10) + quality_to_lambda(quality) * bpp


def table(rows, anchor_csv: Path, anchor: str = "jpeg", versus: str | None = None) -> str:
    """The markdown tables; with ``versus`` (a tag), also each variant's BD-rate
    against that one, on the PSNR range the two share."""
    codecs, _, _ = load(anchor_csv)
    ref = codecs[anchor]
    complete = set(ref.complete())
    curves = {}
    out = [f"| variant | images | BD-rate vs {anchor} cubic / pchip (%) | image-average curve (bpp / dB) |", "|---|---|---|---|"]
    for tag, by in rows.items():
        qs = {tuple(sorted(d)) for d in by.values()}
        images = sorted(by)
        if len(qs) != 1 or not complete.issuperset(images):
            out.append(f"| {tag} | {len(images)} | (qualities differ between images, or no {anchor} rows) | |")
            continue
        (qualities,) = qs
        curve = mean_curve([[by[i][q] for q in qualities] for i in images])
        jpeg = ref.mean_curve(images)
        pts = ", ".join(f"{b:.3f} / {p:.2f}" for b, p in curve)
        if len(qualities) >= MIN_QUALITIES:
            bd = f"{bd_rate(jpeg, curve):+.1f} / {bd_rate(jpeg, curve, 'pchip'):+.1f}"
            curves[tag] = (images, curve)
        else:
            bd = f"- ({len(qualities)} qualities)"
        out.append(f"| {tag} | {len(images)} | {bd} | {pts} |")
    if versus is not None and versus in curves:
        out += ["", f"BD-rate against `{versus}` (same images, their shared PSNR range):", "",
                "| variant | cubic (%) | pchip (%) |", "|---|---|---|"]
        base_images, base = curves[versus]
        for tag, (images, curve) in curves.items():
            if tag != versus and images == base_images:
                out.append(f"| {tag} | {bd_rate(base, curve):+.1f} | {bd_rate(base, curve, 'pchip'):+.1f} |")
    every = sorted({i for by in rows.values() for i in by})
    out += ["", "J x 1e3 (lower is better at that quality):", "", "| quality | variant | " + " | ".join(every) + " |",
            "|---|---|" + "---|" * len(every)]
    for q in sorted({q for by in rows.values() for d in by.values() for q in d}):
        for tag, by in rows.items():
            if any(q in d for d in by.values()):
                cells = [f"{objective(q, *by[i][q]) * 1e3:.3f}" if q in by.get(i, {}) else "" for i in every]
                out.append(f"| {q:g} | {tag} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def pareto(curve):
    """The points no other point beats (fewer bits and higher PSNR), by bpp: a
    fit at a higher quality setting that reached a lower PSNR is left out."""
    out = []
    for bpp, psnr in sorted(curve):
        if not out or psnr > out[-1][1]:
            out.append((bpp, psnr))
    return out


def point_table(rows, csv_path: Path, codec: str) -> str:
    """Each fit against ``codec``'s curve for the same image in a benchmark CSV:
    the bits it needs at the PSNR it reached, relative to what the curve needs
    there (log-bpp linear in PSNR between the curve's points, those of
    :func:`pareto`). One point per
    fit, so variants need not share qualities; points outside the curve's PSNR
    range are compared with its end segment's line (counted, marked ``*``). A
    negative mean is fewer bits than the curve."""
    ref = _codec(csv_path, codec)
    out = [f"Bits at equal PSNR against `{codec}`'s curve of the same image (%; mean / median, better; outside: beyond the curve's PSNR range, along its end segment, marked *):", "",
           "| variant | quality | mean | median | better | outside | per image |", "|---|---|---|---|---|---|---|"]
    for tag, q, fits in _by_quality(rows):
        cells, vals, outside = [], [], 0
        for image, (bpp, psnr) in fits:
            curve = pareto([(r["bpp"], r["psnr"]) for r in ref.points.get(image, {}).values()])
            need = bpp_at(curve, psnr)
            mark = ""
            if need != need:  # NaN: outside the curve's range, along its end segment
                need, mark = bpp_at(curve, psnr, extrapolate=True), "*"
                outside += 1
            if need != need:
                cells.append(f"{image} -")
                continue
            vals.append(100 * (bpp / need - 1))
            cells.append(f"{image} {vals[-1]:+.1f}{mark}")
        if vals:
            mean, median = float(np.mean(vals)), float(np.median(vals))
            better = sum(v < 0 for v in vals)
            out.append(f"| {tag} | {q:g} | {mean:+.1f} | {median:+.1f} | {better}/{len(vals)} | {outside} | {', '.join(cells)} |")
        else:
            out.append(f"| {tag} | {q:g} | - | - | - | {outside} | {', '.join(cells)} |")
    return "\n".join(out)


def j_table(rows, csv_path: Path, codec: str) -> str:
    """Each fit's objective J against that of ``codec``'s row for the same image
    and quality in a benchmark CSV (the fit the variant changes, when the CSV holds
    the code before it): J reads each fit at its own lambda, wherever on the
    curve it lands, so it compares where :func:`point_table` would extrapolate."""
    ref = _codec(csv_path, codec)
    out = [f"J against `{codec}`'s fit of the same image and quality (%; mean, range, per image):", "",
           "| variant | quality | mean | range | per image |", "|---|---|---|---|---|"]
    for tag, q, fits in _by_quality(rows):
        cells, vals = [], []
        for image, fit in fits:
            base = ref.points.get(image, {}).get(f"q={q:g}")
            if base is not None:
                vals.append(100 * (objective(q, *fit) / objective(q, base["bpp"], base["psnr"]) - 1))
                cells.append(f"{image} {vals[-1]:+.1f}")
        if vals:
            out.append(f"| {tag} | {q:g} | {np.mean(vals):+.1f} | {min(vals):+.1f} .. {max(vals):+.1f} | {', '.join(cells)} |")
    return "\n".join(out)


def _codec(csv_path: Path, codec: str):
    """``codec``'s rows of a benchmark CSV (:class:`benchmarks.report.CodecData`)."""
    codecs, _, _ = load(csv_path)
    if codec not in codecs:
        raise SystemExit(f"{csv_path} has no rows of codec {codec!r}")
    return codecs[codec]


def _by_quality(rows):
    """``(tag, quality, [(image, (bpp, psnr)), ...])`` for each variant and quality, images sorted."""
    for tag, by in rows.items():
        for q in sorted({q for d in by.values() for q in d}):
            yield tag, q, [(image, by[image][q]) for image in sorted(by) if q in by[image]]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("jsonl", nargs="+", type=Path)
    ap.add_argument("--anchor-csv", type=Path, default=RESULTS / "kodak.csv",
                    help="Kodak benchmark CSV with the anchor codec's rows (default: results/kodak.csv)")
    ap.add_argument("--anchor", default="jpeg")
    ap.add_argument("--versus", default=None, metavar="TAG", help="also BD-rates against this variant")
    ap.add_argument("--curve", default=None, metavar="CODEC",
                    help="also each fit's bits at equal PSNR against this codec's per-image curve in --anchor-csv")
    ap.add_argument("--j-versus", default=None, metavar="CODEC",
                    help="also each fit's objective against this codec's fit of the same image and quality in --anchor-csv")
    args = ap.parse_args(argv)
    rows = read(args.jsonl)
    print(table(rows, args.anchor_csv, args.anchor, args.versus))
    if args.curve:
        print()
        print(point_table(rows, args.anchor_csv, args.curve))
    if args.j_versus:
        print()
        print(j_table(rows, args.anchor_csv, args.j_versus))


if __name__ == "__main__":
    main()
