"""BD-rate image by image between two codecs of Kodak benchmark CSVs.

    python -m benchmarks.per_image benchmarks/results/default_round7.csv ani_round5 ani_default
    python -m benchmarks.per_image OLD.csv ani_default ani_default --test-csv NEW.csv
    python -m benchmarks.per_image benchmarks/results/default_round13.csv jpeg ani_default --psnr-max 34.9

The Kodak-average BD-rate of ``benchmarks/report.py`` says how much a change
pays on the whole set; this says how it is spread: for every image complete
for both codecs, the test codec's BD-rate against the anchor codec on that
image's curves (cubic and pchip, ``benchmarks/bdrate.py``), then their mean
and how many images need fewer bits. A fit at this budget moves a single
image's BD-rate by about 10 % either way from run to run, so a change
that shows on a few images only is noise until the spread says otherwise.
The last line gives the BD-rate of the Kodak-average curves (as
``benchmarks/report.py`` computes it). ``--psnr-max`` cuts every overlap at
that PSNR: two versions of a codec whose curves end at different heights
compare against one anchor over the same range.
"""
from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

from .bdrate import bd_rate
from .report import load


def per_image(anchor, test, psnr_max: float | None = None) -> list[tuple[str, float, float]]:
    """``(image, cubic %, pchip %)`` for the images complete for both codecs
    (:class:`benchmarks.report.CodecData`), the test's BD-rate against the anchor."""
    return [(i, *_both(anchor.curve(i), test.curve(i), psnr_max)) for i in _shared(anchor, test)]


def average(anchor, test, psnr_max: float | None = None) -> tuple[float, float]:
    """(cubic %, pchip %): the BD-rate of the test's Kodak-average curve against
    the anchor's, over the images complete for both."""
    images = _shared(anchor, test)
    return _both(anchor.mean_curve(images), test.mean_curve(images), psnr_max)


def _shared(anchor, test) -> list[str]:
    return sorted(set(anchor.complete()) & set(test.complete()))


def _both(a, t, psnr_max) -> tuple[float, float]:
    return bd_rate(a, t, "cubic", psnr_max), bd_rate(a, t, "pchip", psnr_max)


def table(rows: list[tuple[str, float, float]], anchor: str, test: str) -> str:
    out = [f"BD-rate of `{test}` against `{anchor}`, image by image (negative = fewer bits):", "",
           "| image | cubic (%) | pchip (%) |", "|---|---|---|"]
    out += [f"| {i} | {c:+.1f} | {p:+.1f} |" for i, c, p in rows]
    for k, name in ((1, "cubic"), (2, "pchip")):
        vals = [r[k] for r in rows if not math.isnan(r[k])]
        if vals:
            out.append(f"\n{name}: mean {sum(vals) / len(vals):+.1f} %, median {statistics.median(vals):+.1f} %, "
                       f"{sum(v < 0 for v in vals)} of {len(vals)} images better, range {min(vals):+.1f} .. {max(vals):+.1f} %")
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", type=Path, help="benchmark CSV holding the anchor codec (and the test codec)")
    ap.add_argument("anchor", help="codec name of the anchor rows, e.g. ani_round5")
    ap.add_argument("test", help="codec name of the rows to compare, e.g. ani_default")
    ap.add_argument("--test-csv", type=Path, default=None, help="read the test codec from this CSV instead")
    ap.add_argument("--psnr-max", type=float, default=None, help="cut every PSNR overlap at this value (dB)")
    args = ap.parse_args(argv)
    codecs = load(args.csv)[0]
    tests = load(args.test_csv)[0] if args.test_csv else codecs
    for name, where in ((args.anchor, codecs), (args.test, tests)):
        if name not in where:
            raise SystemExit(f"no rows of codec {name!r} (have: {', '.join(where)})")
    anchor, test = codecs[args.anchor], tests[args.test]
    print(table(per_image(anchor, test, args.psnr_max), args.anchor, args.test))
    cubic, pchip = average(anchor, test, args.psnr_max)
    cut = f", PSNR overlap cut at {args.psnr_max:g} dB" if args.psnr_max is not None else ""
    print(f"\nKodak-average curves: {cubic:+.1f} % cubic, {pchip:+.1f} % pchip{cut}")


if __name__ == "__main__":
    main()
