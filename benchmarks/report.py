"""Summary (markdown) and rate-distortion plot (PNG) of a Kodak benchmark CSV.

Conventions (the same as ``shared/data/kodak_baselines_summary.md``):

* A codec's curve on one image is its rows' (bpp, PSNR) over its settings.
  Only images with every setting of the codec count for it ("complete").
* PSNR (or MS-SSIM) at a bpp: per image, linear in log(bpp) between the two
  neighbouring settings (:func:`benchmarks.bdrate.psnr_at`), then the mean
  over the images; ``NaN [n]`` when only n of the images reach that bpp.
* BD-rate: on Kodak-average curves (mean bpp and mean PSNR over the images,
  setting by setting), log-rate as a function of PSNR, integrated over the
  overlap of the two PSNR ranges (:mod:`benchmarks.bdrate`); ``cubic`` is the
  VCEG-M33 polynomial fit, ``pchip`` the monotone piecewise cubic. Negative =
  the codec needs fewer bits than the anchor for the same PSNR. Two codecs are
  compared on the images complete for both.
* If the CSV holds two rows for one (codec, setting, image) (options changed
  between runs), the later one counts and the summary says so.
"""
from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .bdrate import bd_psnr, bd_rate, mean_curve, psnr_at
from .codecs import ANCHOR, CLASSICAL

TARGET_BPPS = (0.25, 0.5, 0.75, 1.0)


def _f(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


@dataclass
class CodecData:
    """One codec's rows: ``points[image][setting] = row`` (numbers parsed)."""

    name: str
    settings: list[str] = field(default_factory=list)  # in order of first appearance
    points: dict[str, dict[str, dict]] = field(default_factory=dict)

    def complete(self) -> list[str]:
        return sorted(i for i, by in self.points.items() if all(s in by for s in self.settings))

    def curve(self, image: str, metric: str = "psnr") -> list[tuple[float, float]]:
        return [(self.points[image][s]["bpp"], self.points[image][s][metric]) for s in self.settings]

    def mean_curve(self, images: Sequence[str], metric: str = "psnr") -> list[tuple[float, float]]:
        return mean_curve([self.curve(i, metric) for i in images]) if images else []

    def rows(self, images: Sequence[str] | None = None) -> list[dict]:
        keep = set(self.complete() if images is None else images)
        return [r for i, by in self.points.items() if i in keep for r in by.values()]


def load(csv_path: Path) -> tuple[dict[str, CodecData], int, set[str]]:
    """Codecs in order of appearance, the number of superseded rows, the run ids used."""
    codecs: dict[str, CodecData] = {}
    superseded = 0
    with open(csv_path, newline="") as fh:
        for raw in csv.DictReader(fh):
            if not raw.get("run"):
                continue
            row = dict(raw)
            for k in ("bytes", "bpp", "psnr", "ms_ssim", "encode_s", "decode_s", "encode_peak_mib",
                      "decode_peak_mib", "width", "height"):
                row[k] = _f(raw[k])
            cd = codecs.setdefault(row["codec"], CodecData(row["codec"]))
            if row["setting"] not in cd.settings:
                cd.settings.append(row["setting"])
            by = cd.points.setdefault(row["image"], {})
            superseded += row["setting"] in by
            by[row["setting"]] = row
    runs = {r["run"] for cd in codecs.values() for by in cd.points.values() for r in by.values()}
    return codecs, superseded, runs


def _order(codecs: dict[str, CodecData]) -> list[str]:
    classical = [c for c in CLASSICAL if c in codecs]
    return classical + [c for c in codecs if c not in classical]


def pair(a: CodecData, b: CodecData, method: str) -> tuple[float, int]:
    """BD-rate of ``b`` against anchor ``a`` on the images complete for both, and their count."""
    common = sorted(set(a.complete()) & set(b.complete()))
    if not common:
        return float("nan"), 0
    return bd_rate(a.mean_curve(common), b.mean_curve(common), method), len(common)


def at_bpp(cd: CodecData, bpp: float, metric: str = "psnr") -> tuple[float, int, int]:
    """Mean ``metric`` at ``bpp`` over complete images: (mean or NaN, images reaching, images)."""
    images = cd.complete()
    vals = [psnr_at(cd.curve(i, metric), bpp) for i in images]
    ok = [v for v in vals if math.isfinite(v)]
    mean = statistics.fmean(ok) if ok and len(ok) == len(vals) else float("nan")
    return mean, len(ok), len(images)


def _cell(mean: float, n: int, total: int, fmt: str) -> str:
    if math.isfinite(mean):
        return format(mean, fmt)
    return f"NaN [{n}]" if total else "-"


def _pct(x: float) -> str:
    return f"{x:+.1f}" if math.isfinite(x) else "NaN"


def _stat(values: list[float], fn) -> float:
    vals = [v for v in values if math.isfinite(v)]
    return fn(vals) if vals else float("nan")


def _ms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def targets(codecs: dict[str, CodecData]) -> list[str]:
    """The issue's targets for each .ani codec: BD-rate against JPEG better than
    WebP's, and decode time within 10x of AVIF's on the same images."""
    lines = []
    jpeg, webp, avif = codecs.get(ANCHOR), codecs.get("webp"), codecs.get("avif")
    for name, cd in codecs.items():
        if not name.startswith("ani_"):
            continue
        parts = []
        if jpeg and webp:
            common = sorted(set(jpeg.complete()) & set(webp.complete()) & set(cd.complete()))
            if common:
                anchor = jpeg.mean_curve(common)
                ani = bd_rate(anchor, cd.mean_curve(common), "cubic")
                web = bd_rate(anchor, webp.mean_curve(common), "cubic")
                verdict = "met" if ani < web else "not met"
                parts.append(f"BD-rate against JPEG {_pct(ani)} % against WebP's {_pct(web)} % (cubic, "
                             f"{len(common)} images): **{verdict}**")
        if avif:
            common = sorted(set(avif.complete()) & set(cd.complete()))
            if common:
                d_ani = statistics.median(r["decode_s"] for r in cd.rows(common))
                d_avif = statistics.median(r["decode_s"] for r in avif.rows(common))
                ratio = d_ani / d_avif
                verdict = "met" if ratio <= 10 else "not met"
                runs = {r["run"] for r in cd.rows(common)}, {r["run"] for r in avif.rows(common)}
                caveat = "" if runs[0] == runs[1] else ", timed in different runs"
                parts.append(f"median decode {_ms(d_ani)} = {ratio:.1f}x AVIF's {_ms(d_avif)} "
                             f"(target <= 10x{caveat}): **{verdict}**")
        if parts:
            lines.append(f"- `{name}`: " + "; ".join(parts))
    return lines


def summary(csv_path: Path, plot_name: str | None = None) -> str:
    codecs, superseded, runs = load(csv_path)
    order = _order(codecs)
    all_images = sorted({i for cd in codecs.values() for i in cd.complete()})
    lines = [
        "# Kodak benchmark: .ani against the classical codecs",
        "",
        f"Generated by `python -m benchmarks.kodak` from `{csv_path.name}` (raw rows, one per codec, "
        "setting and image). bpp = whole-file bytes * 8 / (H * W); PSNR on the 8-bit RGB decode, MSE over "
        "all channels; MS-SSIM (Wang et al. 2003, 5 scales) per RGB channel, averaged. "
        "Conventions: `benchmarks/report.py`; codec settings: `benchmarks/codecs.py`.",
        "",
        f"Images: {len(all_images)} complete for at least one codec. Images per codec below ([n]).",
    ]
    if superseded:
        lines += ["", f"Note: {superseded} rows were measured more than once (by a later run, or again after "
                  "their options changed); the later ones count."]
    if plot_name:
        lines += ["", f"![RD curves]({plot_name})"]

    lines += ["", "## Mean RGB PSNR (dB) at matched bpp", "",
              "(per image, linear in log(bpp) over the codec's sweep; mean over images; NaN [n] when only n "
              "images reach that bpp)", "",
              "| codec | images | " + " | ".join(f"{b:g} bpp" for b in TARGET_BPPS) + " | mean-bpp range |",
              "|---|---|" + "---|" * len(TARGET_BPPS) + "---|"]
    for name in order:
        cd = codecs[name]
        imgs = cd.complete()
        cells = [_cell(*at_bpp(cd, b), ".2f") for b in TARGET_BPPS]
        mc = cd.mean_curve(imgs)
        rng = f"{min(p[0] for p in mc):.3f}-{max(p[0] for p in mc):.3f}" if mc else "-"
        lines.append(f"| {name} | {len(imgs)} | " + " | ".join(cells) + f" | {rng} |")

    lines += ["", "## Mean MS-SSIM at matched bpp", "",
              "| codec | " + " | ".join(f"{b:g} bpp" for b in TARGET_BPPS) + " |",
              "|---|" + "---|" * len(TARGET_BPPS)]
    for name in order:
        cells = [_cell(*at_bpp(codecs[name], b, "ms_ssim"), ".4f") for b in TARGET_BPPS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    if ANCHOR in codecs:
        jpeg = codecs[ANCHOR]
        lines += ["", "## BD-rate against JPEG", "",
                  "(Kodak-average curves over the images complete for both; negative = fewer bits than JPEG "
                  "at equal PSNR)", "",
                  "| codec | BD-rate cubic (%) | BD-rate pchip (%) | BD-PSNR cubic (dB) | PSNR overlap (dB) | images |",
                  "|---|---|---|---|---|---|"]
        for name in order:
            cd = codecs[name]
            common = sorted(set(jpeg.complete()) & set(cd.complete()))
            if not common:
                lines.append(f"| {name} | - | - | - | - | 0 |")
                continue
            a, t = jpeg.mean_curve(common), cd.mean_curve(common)
            lo = max(min(p for _, p in a), min(p for _, p in t))
            hi = min(max(p for _, p in a), max(p for _, p in t))
            lines.append(f"| {name} | {_pct(bd_rate(a, t, 'cubic'))} | {_pct(bd_rate(a, t, 'pchip'))} | "
                         f"{bd_psnr(a, t, 'cubic'):+.2f} | {lo:.1f}-{hi:.1f} | {len(common)} |")

    for method in ("cubic", "pchip"):
        lines += ["", f"## BD-rate matrix ({method}, %): row codec against column codec", "",
                  "(each cell on the images complete for both; negative = the row codec needs fewer bits)", "",
                  "| codec | " + " | ".join(order) + " |", "|---|" + "---|" * len(order)]
        for row in order:
            cells = []
            for col in order:
                cells.append("0" if row == col else _pct(pair(codecs[col], codecs[row], method)[0]))
            lines.append(f"| {row} | " + " | ".join(cells) + " |")

    lines += ["", "## Time and memory per image", "",
              "(wall time of one whole encode or decode, in memory; each row's figure is the median of its "
              "repeated calls; below, mean and median over rows. Decode includes the conversion to an RGB "
              "array. Peak: extra resident memory during the first call, see `benchmarks/measure.py`.)", "",
              "| codec | encode mean | encode median | decode mean | decode median | encode peak median / max (MiB) "
              "| decode peak median / max (MiB) | rows |",
              "|---|---|---|---|---|---|---|---|"]
    for name in order:
        rows = codecs[name].rows()
        if not rows:
            continue
        col = {k: [r[k] for r in rows] for k in ("encode_s", "decode_s", "encode_peak_mib", "decode_peak_mib")}
        lines.append(
            f"| {name} | {_ms(_stat(col['encode_s'], statistics.fmean))} | {_ms(_stat(col['encode_s'], statistics.median))} "
            f"| {_ms(_stat(col['decode_s'], statistics.fmean))} | {_ms(_stat(col['decode_s'], statistics.median))} "
            f"| {_stat(col['encode_peak_mib'], statistics.median):.1f} / {_stat(col['encode_peak_mib'], max):.1f} "
            f"| {_stat(col['decode_peak_mib'], statistics.median):.1f} / {_stat(col['decode_peak_mib'], max):.1f} "
            f"| {len(rows)} |")

    tl = targets(codecs)
    if tl:
        lines += ["", "## Targets (issue 6)", ""] + tl

    lines += ["", "## Kodak-average curves (mean bpp / mean PSNR per setting)", ""]
    for name in order:
        cd = codecs[name]
        mc = cd.mean_curve(cd.complete())
        pts = ", ".join(f"{s}: {b:.3f}/{p:.2f}" for s, (b, p) in zip(cd.settings, mc))
        opts = next(iter(cd.rows()), {}).get("options", "")
        lines.append(f"- {name} ({opts or 'defaults'}): {pts}")

    runs_path = csv_path.with_name(csv_path.stem + ".runs.json")
    info = json.loads(runs_path.read_text()) if runs_path.exists() else {}
    lines += ["", "## Machine and runs", ""]
    for run in sorted(runs):
        m = info.get(run)
        if not m:
            lines.append(f"- run {run}: no description (missing from {runs_path.name})")
            continue
        names = {"lib_libjpeg_turbo": "libjpeg-turbo", "lib_webp": "libwebp", "lib_jpg_2000": "OpenJPEG",
                 "lib_avif": "libavif", "libjxl": "", "imagecodecs": "imagecodecs", "Pillow": "Pillow",
                 "numpy": "numpy", "torch": "torch"}
        libs = ", ".join(f"{label} {m[k]}".strip() for k, label in names.items() if k in m)
        lines.append(
            f"- run {run}: {m.get('cpu')} ({m.get('cpu_count')} CPUs, {m.get('memory_gib', '?')} GiB), "
            f"{m.get('system')}, Python {m.get('python')}; {libs}; threads {m.get('threads')}, "
            f"repeats {m.get('repeats')} (ani encode {m.get('ani_encode_repeats')}); "
            + (f"freed heap memory kept (core.heap) {'yes' if m['keep_heap'] else 'no'}; " if 'keep_heap' in m else "")
            + f"load average at start "
            f"{m.get('load_average_at_start')}; command `python -m benchmarks.kodak {' '.join(m.get('argv', []))}`")
    return "\n".join(lines) + "\n"


def plot_rd(csv_path: Path, png_path: Path) -> None:
    """Kodak-average RD curves (PSNR and MS-SSIM in dB against bpp) of every codec."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    codecs, _, _ = load(csv_path)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    max_bpp = 1.6
    shown: list[list[float]] = [[], []]  # y values inside the x range, per panel
    for name in _order(codecs):
        cd = codecs[name]
        imgs = cd.complete()
        if not imgs:
            continue
        ani = name.startswith("ani_")
        style = dict(lw=2.4, marker="o", ms=6) if ani else dict(lw=1.2, marker=".", ms=4)
        label = f"{name} [{len(imgs)}]"
        for k, (ax, metric) in enumerate(zip(axes, ("psnr", "ms_ssim"))):
            pts = sorted(cd.mean_curve(imgs, metric))
            if metric == "ms_ssim":
                pts = [(b, -10 * math.log10(max(1e-12, 1 - m))) for b, m in pts if math.isfinite(m)]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label, **style)
                shown[k] += [y for b, y in pts if b <= max_bpp and math.isfinite(y)]
    for ax, ys, ylabel in zip(axes, shown, ("RGB PSNR (dB)", "MS-SSIM (dB, -10 log10(1 - MS-SSIM))")):
        ax.set_xlim(0, max_bpp)
        if ys:
            ax.set_ylim(min(ys) - 0.5, max(ys) + 1.0)
        ax.set_xlabel("bits per pixel (whole file)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle("Kodak, mean over images (setting by setting); [n] = images")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)


def write(csv_path: Path, with_plot: bool = True) -> None:
    """Write ``<stem>.md`` and, if ``with_plot``, ``<stem>.png`` next to the CSV."""
    png = csv_path.with_suffix(".png")
    if with_plot:
        plot_rd(csv_path, png)
    csv_path.with_suffix(".md").write_text(summary(csv_path, png.name if with_plot else None))
