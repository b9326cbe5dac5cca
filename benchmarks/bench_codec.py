"""Issue #2 benchmark: .ani against Pillow JPEG at equal bpp, on Kodak images.

For each image and quality: encode at the default effort, decode, and record
bpp (whole file), RGB PSNR, encode time and decode time (median of 3 decodes).
In the same run, a Pillow JPEG sweep (quality 1..95) of the same image gives
JPEG's PSNR at the same bpp (linear interpolation in log bpp).

    python benchmarks/bench_codec.py --images kodim01 kodim05 kodim15 kodim23 \
        --qualities 15 35 55 --out benchmarks/results/codec

Rows already in the CSV are skipped, so an interrupted run resumes. The
script sets torch to 2 threads (the machine's cores); the library never does.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"
FIELDS = ["image", "quality", "effort", "bytes", "bpp", "psnr", "jpeg_psnr_at_bpp", "delta_db", "encode_s", "decode_s"]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255**2 / mse) if mse > 0 else float("inf")


def jpeg_curve(image: np.ndarray) -> list[tuple[float, float]]:
    points = []
    for q in range(1, 96):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "JPEG", quality=q)
        rec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        points.append((buf.tell() * 8 / (image.shape[0] * image.shape[1]), psnr(image, rec)))
    return sorted(points)


def interp_log(points: list[tuple[float, float]], bpp: float) -> float:
    xs = [math.log(p[0]) for p in points]
    if not xs[0] <= math.log(bpp) <= xs[-1]:
        return float("nan")
    return float(np.interp(math.log(bpp), xs, [p[1] for p in points]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", nargs="+", default=["kodim01", "kodim05", "kodim15", "kodim23"])
    ap.add_argument("--qualities", nargs="+", type=float, default=[15, 35, 55])
    ap.add_argument("--effort", type=int, default=None, help="default: the codec's default")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "codec"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    import core
    from core.options import DEFAULT_EFFORT

    torch.set_num_threads(args.threads)
    effort = args.effort or DEFAULT_EFFORT
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    csv_path = out.with_suffix(".csv")
    done = set()
    if csv_path.exists():
        with open(csv_path) as fh:
            done = {(r["image"], float(r["quality"]), int(r["effort"])) for r in csv.DictReader(fh)}
    new_file = not csv_path.exists()
    with open(csv_path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        if new_file:
            writer.writeheader()
        for name in args.images:
            image = np.asarray(Image.open(KODAK / f"{name}.png").convert("RGB"))
            curve = None
            for q in args.qualities:
                if (name, q, effort) in done:
                    continue
                curve = curve or jpeg_curve(image)
                t0 = time.perf_counter()
                data = core.encode(image, quality=q, effort=effort)
                enc = time.perf_counter() - t0
                times = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    rec = core.decode(data)
                    times.append(time.perf_counter() - t0)
                bpp = len(data) * 8 / (image.shape[0] * image.shape[1])
                p = psnr(image, rec)
                pj = interp_log(curve, bpp)
                row = dict(image=name, quality=q, effort=effort, bytes=len(data), bpp=round(bpp, 4),
                           psnr=round(p, 3), jpeg_psnr_at_bpp=round(pj, 3), delta_db=round(p - pj, 3),
                           encode_s=round(enc, 2), decode_s=round(statistics.median(times), 4))
                writer.writerow(row)
                fh.flush()
                print(row, flush=True)
    write_summary(csv_path, out.with_suffix(".md"), args.threads)
    return 0


def write_summary(csv_path: Path, md_path: Path, threads: int) -> None:
    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    lines = [
        "# .ani (grid model) against Pillow JPEG at equal bpp",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, no GPU, torch threads {threads}; "
        f"Python {platform.python_version()}. Produced by `python benchmarks/bench_codec.py` "
        "(JPEG measured in the same run: Pillow quality 1..95, PSNR interpolated at the .ani file's bpp).",
        "",
        "| image | quality | effort | bpp | PSNR (dB) | JPEG PSNR at that bpp | difference (dB) | encode (s) | decode (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['image']} | {float(r['quality']):g} | {r['effort']} | {float(r['bpp']):.3f} | {float(r['psnr']):.2f} | "
            f"{float(r['jpeg_psnr_at_bpp']):.2f} | {float(r['delta_db']):+.2f} | {float(r['encode_s']):.1f} | "
            f"{float(r['decode_s']):.3f} |"
        )
    in_range = [r for r in rows if 0.2 <= float(r["bpp"]) <= 0.6 and not math.isnan(float(r["delta_db"]))]
    if in_range:
        wins = sum(float(r["delta_db"]) > 0 for r in in_range)
        lines += ["", f"Between 0.2 and 0.6 bpp: {wins} of {len(in_range)} points above JPEG; "
                  f"mean difference {statistics.mean(float(r['delta_db']) for r in in_range):+.2f} dB."]
    enc = [float(r["encode_s"]) for r in rows]
    dec = [float(r["decode_s"]) for r in rows]
    lines += ["", f"Encode: median {statistics.median(enc):.1f} s, max {max(enc):.1f} s. "
              f"Decode: median {statistics.median(dec) * 1000:.0f} ms, max {max(dec) * 1000:.0f} ms."]
    md_path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
