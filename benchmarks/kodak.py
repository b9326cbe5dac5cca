"""Rate-distortion and speed on Kodak: ``.ani`` presets against the classical codecs, in one run.

    python -m benchmarks.kodak                                   # everything: 24 images, all codecs, ani default
    python -m benchmarks.kodak --codecs classical                # the classical codecs only
    python -m benchmarks.kodak --codecs ani --presets fast default --qualities 10 45 90 --images 1-4
    python -m benchmarks.kodak --summary-only                    # redo the summary and plot from the CSV

For every image, codec and setting: encode, decode, and one row in
``<out>.csv``: bytes and bpp of the whole file, RGB PSNR of the 8-bit decode,
MS-SSIM (``benchmarks/msssim.py``), encode and decode wall time (medians of
``--repeats`` calls; ``.ani`` encodes ``--ani-encode-repeats`` times, once by
default, as a fit takes minutes and is deterministic), and the peak extra
memory of the first encode and the first decode (``benchmarks/measure.py``).
Then ``<out>.md`` (summary: PSNR at 0.25/0.5/0.75/1 bpp, BD-rates, times,
memory, machine) and ``<out>.png`` (Kodak-average RD curves) are written
from the whole CSV (``benchmarks/report.py``); ``<out>.runs.json`` describes
the machine and command of each run that added rows.

Resuming: each row is appended and flushed as soon as it is measured, and a
row whose (codec, setting, image, options) is already in the CSV is skipped,
so an interrupted run continues where it stopped when started again with the
same arguments. Work goes image by image (every codec on one image, then the
next), so the images completed so far compare every codec.

This is a module of the source checkout, not of the installed package (the
``benchmarks`` folder and the Kodak images are not installed), so there is no
``ani bench`` command: run it from the repository root.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import sys
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from core.heap import retain_freed_memory, retained

from . import codecs as C
from .measure import machine, timed
from .msssim import ms_ssim

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "kodak"
FIELDS = [
    "codec", "setting", "image", "width", "height", "bytes", "bpp", "psnr", "ms_ssim",
    "encode_s", "decode_s", "encode_peak_mib", "decode_peak_mib", "options", "run",
]
KEY = ("codec", "setting", "image", "options")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """RGB PSNR in dB, MSE over all channels of the 8-bit images."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255**2 / mse) if mse > 0 else float("inf")


def parse_images(specs: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """Image names from ``kodim05``, ``5`` or ``3-7`` (Kodak numbers); all when empty."""
    if not specs:
        return list(available)
    out: list[str] = []
    for spec in specs:
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part and all(p.isdigit() for p in part.split("-", 1)):
                lo, hi = (int(p) for p in part.split("-", 1))
                names = [f"kodim{i:02d}" for i in range(lo, hi + 1)]
            elif part.isdigit():
                names = [f"kodim{int(part):02d}"]
            else:
                names = [Path(part).stem]
            for name in names:
                if name not in available:
                    raise SystemExit(f"no image {name!r} in the image folder (have {', '.join(available[:3])}...)")
                if name not in out:
                    out.append(name)
    return out


def load_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# --------------------------------------------------------------------------- the CSV


def read_rows(csv_path: Path) -> list[dict]:
    """The complete rows of the CSV (none if it does not exist)."""
    if not csv_path.exists() or csv_path.stat().st_size == 0:
        return []
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames != FIELDS:
            raise SystemExit(
                f"{csv_path} has columns {reader.fieldnames}, not this benchmark's {FIELDS}: "
                "give another --out"
            )
        return [r for r in reader if r.get("run")]


def repair_tail(csv_path: Path) -> bool:
    """Cut a partly written last line (an interrupted write); True if it did."""
    if not csv_path.exists() or csv_path.stat().st_size == 0:
        return False
    data = csv_path.read_bytes()
    if data.endswith(b"\n"):
        return False
    cut = data.rfind(b"\n") + 1
    with open(csv_path, "r+b") as fh:
        fh.truncate(cut)
    return True


def _fmt(value, digits: int) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if math.isinf(value) else f"{value:.{digits}g}")
    return str(value)


def measure_row(codec: C.Codec, label: str, name: str, image: np.ndarray, repeats: int,
                encode_repeats: int, run: str) -> dict:
    value = codec.settings[label]
    slow = codec.name.startswith("ani_")  # worth a garbage collection before measuring memory
    data, enc_s, enc_mem = timed(lambda: codec.encode(image, value), encode_repeats, collect=slow)
    rec, dec_s, dec_mem = timed(lambda: codec.decode(data), repeats, collect=slow)
    if rec.shape != image.shape or rec.dtype != np.uint8:
        raise RuntimeError(f"{codec.name} {label} on {name}: decoded {rec.shape} {rec.dtype}, expected {image.shape} uint8")
    h, w = image.shape[:2]
    return {
        "codec": codec.name, "setting": label, "image": name, "width": w, "height": h,
        "bytes": len(data), "bpp": _fmt(len(data) * 8 / (h * w), 7), "psnr": _fmt(psnr(image, rec), 7),
        "ms_ssim": _fmt(ms_ssim(image, rec), 7), "encode_s": _fmt(enc_s, 5), "decode_s": _fmt(dec_s, 5),
        "encode_peak_mib": _fmt(enc_mem, 5), "decode_peak_mib": _fmt(dec_mem, 5),
        "options": codec.options, "run": run,
    }


def read_runs(runs_path: Path) -> dict:
    """The run descriptions of a ``.runs.json`` (none if it does not exist)."""
    return json.loads(runs_path.read_text()) if runs_path.exists() else {}


def write_runs(runs_path: Path, runs: dict) -> None:
    tmp = runs_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, runs_path)


def _record_run(runs_path: Path, run: str, info: dict) -> None:
    runs = read_runs(runs_path)
    runs[run] = info
    write_runs(runs_path, runs)


def select_codecs(names: Iterable[str], presets: Sequence[str], qualities: Sequence[float], threads: int,
                  say=print) -> list[C.Codec]:
    """The codecs to run; an unavailable classical codec is skipped with a message."""
    chosen: list[C.Codec] = []
    for name in names:
        if name == "classical":
            chosen += select_codecs(C.CLASSICAL, presets, qualities, threads, say)
        elif name == "ani":
            chosen += [C.ani(p, qualities) for p in presets]
        elif name.startswith("ani_"):
            chosen.append(C.ani(name[4:], qualities))
        else:
            try:
                chosen.append(C.classical(name, threads))
            except RuntimeError as exc:
                say(f"skipped: {exc}")
    seen, unique = set(), []
    for c in chosen:
        if c.name not in seen:
            seen.add(c.name)
            unique.append(c)
    return unique


def run(images: Sequence[str], codecs: Sequence[C.Codec], out: Path, image_dir: Path, repeats: int,
        ani_encode_repeats: int, threads: int, argv: Sequence[str], say=print) -> int:
    """Measure every missing row; return the number of rows added."""
    csv_path = out.with_suffix(".csv")
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "a", newline="") as fh:
        _lock(fh, csv_path)
        if repair_tail(csv_path):
            say(f"{csv_path}: removed a partly written last line")
        done = {tuple(r[k] for k in KEY) for r in read_rows(csv_path)}
        # with the process id: two runs started in the same second (on halves of the
        # images, to be merged) stay apart
        run_id = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") + f"-{os.getpid()}"
        todo = [(n, c, s) for n in images for c in codecs for s in c.settings
                if (c.name, s, n, c.options) not in done]
        say(f"{len(todo)} rows to measure ({len(images)} images, {len(codecs)} codecs); "
            f"{len(done)} rows already in {csv_path}")
        if not todo:
            return 0
        info = machine()
        info.update(argv=list(argv), threads=threads, repeats=repeats, ani_encode_repeats=ani_encode_repeats,
                    keep_heap=retained())
        _record_run(out.with_suffix(".runs.json"), run_id, info)
        return _measure_all(fh, csv_path.stat().st_size == 0, todo, image_dir, repeats, ani_encode_repeats,
                            run_id, say)


def _lock(fh, csv_path: Path) -> None:
    """One run at a time per CSV (two would measure the same rows, each slowing the other)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise SystemExit(f"another run is writing to {csv_path}: wait for it to end or give another --out") from None


def _measure_all(fh, new_file: bool, todo, image_dir: Path, repeats: int, ani_encode_repeats: int, run_id: str,
                 say) -> int:
    """Measure the ``todo`` rows, appending each to ``fh`` as soon as it is done."""
    writer = csv.DictWriter(fh, FIELDS)
    if new_file:
        writer.writeheader()
        fh.flush()
    added = 0
    current, image = None, None
    for name, codec, label in todo:
        if name != current:
            current, image = name, load_image(image_dir / f"{name}.png")
        reps = ani_encode_repeats if codec.name.startswith("ani_") else repeats
        row = measure_row(codec, label, name, image, repeats, reps, run_id)
        writer.writerow(row)
        fh.flush()
        added += 1
        say(f"[{added}/{len(todo)}] {name} {codec.name} {label}: {float(row['bpp']):.3f} bpp "
            f"{float(row['psnr']):.2f} dB, encode {float(row['encode_s']):.3g} s, "
            f"decode {float(row['decode_s']):.3g} s")
    return added


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.kodak", description=__doc__.splitlines()[0])
    ap.add_argument("--images", nargs="*", help="kodim05, 5 or 3-7 (default: every PNG in --image-dir)")
    ap.add_argument("--codecs", nargs="+", default=["classical", "ani"],
                    help=f"any of {', '.join(C.CLASSICAL)}, 'classical' (all of them), 'ani' (the --presets) "
                    "or ani_<preset> (default: classical ani)")
    ap.add_argument("--presets", nargs="+", default=list(C.DEFAULT_PRESETS), choices=list(C.PRESETS),
                    help=f"ani presets for 'ani' (default: {' '.join(C.DEFAULT_PRESETS)})")
    ap.add_argument("--qualities", nargs="+", type=float, default=list(C.DEFAULT_QUALITIES),
                    help=f"ani qualities (default: {' '.join(map(str, C.DEFAULT_QUALITIES))})")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output stem: <out>.csv .md .png .runs.json")
    ap.add_argument("--image-dir", type=Path, default=KODAK, help="folder of the PNG images (default: shared Kodak)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="torch threads, AVIF and JPEG XL threads (default: CPU count)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per classical encode and per decode (median)")
    ap.add_argument("--ani-encode-repeats", type=int, default=1, help="timed calls per .ani encode (median)")
    ap.add_argument("--summary-only", action="store_true", help="only rewrite <out>.md and <out>.png from <out>.csv")
    ap.add_argument("--merge", nargs="+", type=Path, metavar="STEM",
                    help="measure nothing: add the rows of these runs' CSVs (other --out of runs on other images) "
                    "to <out>.csv, then rewrite the summary")
    ap.add_argument("--no-plot", action="store_true", help="skip the PNG plot (no matplotlib needed)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    if args.repeats < 1 or args.ani_encode_repeats < 1 or args.threads < 1:
        raise SystemExit("--repeats, --ani-encode-repeats and --threads must be at least 1")
    from . import report

    out = args.out
    if args.merge:
        from .merge import merge

        merge(out, args.merge)
    elif not args.summary_only:
        available = sorted(p.stem for p in args.image_dir.glob("*.png"))
        if not available:
            raise SystemExit(f"no PNG images in {args.image_dir} (give --image-dir)")
        images = parse_images(args.images, available)
        codecs = select_codecs(args.codecs, args.presets, args.qualities, args.threads)
        if any(c.name.startswith("ani_") for c in codecs):
            import torch

            torch.set_num_threads(args.threads)  # the benchmark's choice; the library never sets it
            # as the ``ani`` command and the batch workers do (not the library): the
            # fit's freed memory stays in the process (``ANI_KEEP_HEAP=0``: not)
            retain_freed_memory()
        try:
            run(images, codecs, out, args.image_dir, args.repeats, args.ani_encode_repeats, args.threads, argv)
        except KeyboardInterrupt:
            print("interrupted; the rows measured so far are kept, run again to resume", file=sys.stderr)
            return 130
    csv_path = out.with_suffix(".csv")
    if not csv_path.exists():
        raise SystemExit(f"no results at {csv_path}")
    report.write(csv_path, with_plot=not args.no_plot)
    print(f"wrote {out.with_suffix('.md')}" + ("" if args.no_plot else f" and {out.with_suffix('.png')}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
