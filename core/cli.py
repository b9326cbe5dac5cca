"""The ``ani`` command (also ``python -m core``).

    ani encode photo.png photo.ani --quality 80
    ani decode photo.ani preview.png --size 256x
    ani info photo.ani [--json]
    ani convert assets/ --to ani --out assets-ani/ --jobs 2
    ani convert assets/ --to ani --out assets-ani/ --scheduler tcp://host:8786
    ani run script.py [args...]

Every codec or file error ends in a one-line message on stderr and exit
status 1; a usage error (unknown flag, invalid option value) exits with 2.
Pillow (for PNG/JPEG files) and tqdm are imported only by the commands that
need them.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Sequence

from . import options as _opt
from .errors import AniError, AniOptionError

PROG = "ani"

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _UsageError(Exception):
    """A command-line value that cannot be used; exit status 2."""


# --------------------------------------------------------------------------- value parsing


def _scalar(text: str) -> Any:
    """``"4"`` -> 4, ``"7.5"`` -> 7.5, anything else stays a string, so the
    option validation in :class:`core.options.EncodeOptions` words the error."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _subnet(text: str | None) -> Any:
    """``full`` or another name stays a string; ``D,W`` or ``DxW`` becomes ``(D, W)``."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*[,x:]\s*(\d+)\s*", text)
    return (int(m.group(1)), int(m.group(2))) if m else text


def parse_size(text: str) -> tuple[int | None, int | None]:
    """``WxH``, ``Wx`` or ``W`` (height from the aspect ratio), ``xH`` (width from it)."""
    m = re.fullmatch(r"\s*(\d+)?\s*(?:[xX*]\s*(\d+)?)?\s*", text or "")
    if not m or (m.group(1) is None and m.group(2) is None):
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: allowed WxH, Wx or xH with positive integers, e.g. 640x480")
    w = int(m.group(1)) if m.group(1) else None
    h = int(m.group(2)) if m.group(2) else None
    if w == 0 or h == 0:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: width and height must be at least 1")
    return w, h


def _resolve_size(size: tuple[int | None, int | None] | None, stored: tuple[int, int]) -> tuple[int, int] | None:
    if size is None:
        return None
    w, h = size
    sw, sh = stored
    if w is None:
        w = max(1, round(h * sw / sh))
    if h is None:
        h = max(1, round(w * sh / sw))
    return w, h


def _jobs(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid jobs {text!r}: allowed an integer >= 1, or 0 for one per CPU core") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"invalid jobs {text!r}: allowed an integer >= 1, or 0 for one per CPU core")
    return n


# --------------------------------------------------------------------------- parser


def _add_encode_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("encode options (defaults in core/options.py)")
    g.add_argument("--model", help=f"model family (default {_opt.DEFAULT_MODEL})")
    g.add_argument("--bits", metavar="N",
                   help=f"bit-width of quantized parameters, {_opt.MIN_BITS}..{_opt.MAX_BITS} (default {_opt.DEFAULT_BITS})")
    g.add_argument("--quality", metavar="Q",
                   help=f"rate-distortion trade-off 0..100, higher is better (default {_opt.DEFAULT_QUALITY})")
    g.add_argument("--rounding", help=f"rounding of latents during the fit (default {_opt.DEFAULT_ROUNDING})")
    g.add_argument("--subnet", help=f"sub-network to store (default {_opt.DEFAULT_SUBNET}); siren/mfn: full, all, "
                   "medium, small or DxW (depth x width)")
    g.add_argument("--supernet", metavar="DxW",
                   help=f"siren/mfn: depth x width of the trained supernet (default "
                   f"{_opt.DEFAULT_SUPERNET[0]}x{_opt.DEFAULT_SUPERNET[1]})")
    g.add_argument("--elastic", help=f"siren/mfn: {', '.join(_opt.ELASTIC)} (default {_opt.DEFAULT_ELASTIC})")
    g.add_argument("--filter", help=f"mfn: {', '.join(_opt.FILTERS)} (default {_opt.DEFAULT_FILTER})")
    g.add_argument("--first-bits", metavar="N", dest="first_bits",
                   help=f"siren/mfn: bit-width of the first layer (default {_opt.DEFAULT_FIRST_BITS})")
    g.add_argument("--last-bits", metavar="N", dest="last_bits",
                   help=f"siren/mfn: bit-width of the output layer (default {_opt.DEFAULT_LAST_BITS})")
    g.add_argument("--effort", metavar="E",
                   help=f"compute budget of the fit, {_opt.MIN_EFFORT} fastest..{_opt.MAX_EFFORT} (default {_opt.DEFAULT_EFFORT})")
    g.add_argument("--device", help=f"auto, cpu or cuda (default {_opt.DEFAULT_DEVICE})")
    g.add_argument("--seed", metavar="S", help=f"random seed of the fit (default {_opt.DEFAULT_SEED})")
    g.add_argument("--ssl-a", dest="ssl_a", metavar="A",
                   help=f"a of the ssl/ssl3 rounding, {_opt.MIN_SSL_A:g}..{_opt.MAX_SSL_A:g} (default {_opt.DEFAULT_SSL_A:g})")
    g.add_argument("--tau-max", dest="tau_max", metavar="T",
                   help=f"cap of the SGA temperature, {_opt.MIN_TAU_MAX:g}..{_opt.MAX_TAU_MAX:g} (default {_opt.DEFAULT_TAU_MAX:g})")
    g.add_argument("--tau-decay", dest="tau_decay", metavar="C",
                   help=f"c of the SGA temperature min(exp(-c t), tau_max), t = fraction of the fit, "
                        f"{_opt.MIN_TAU_DECAY:g}..{_opt.MAX_TAU_DECAY:g} (default by quality: {_opt.TAU_DECAY_LOW:g} up to "
                        f"{_opt.TAU_DECAY_KNEE[0]:g}, {_opt.TAU_DECAY_HIGH:g} from {_opt.TAU_DECAY_KNEE[1]:g}, "
                        f"linear between)")


def _encode_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    for name in ("model", "rounding", "device", "elastic", "filter"):
        if getattr(args, name) is not None:
            kw[name] = getattr(args, name)
    if getattr(args, "supernet", None) is not None:
        kw["supernet"] = _subnet(args.supernet)
    for name in ("bits", "quality", "effort", "seed", "first_bits", "last_bits", "ssl_a", "tau_max", "tau_decay"):
        if getattr(args, name) is not None:
            kw[name] = _scalar(getattr(args, name))
    if getattr(args, "subnet", None) is not None:
        kw["subnet"] = _subnet(args.subnet)
    return kw


#: argparse destinations of the encode-only options (``--subnet`` also selects what ``--to png`` renders)
ENCODE_OPTION_DESTS = ("model", "bits", "quality", "rounding", "effort", "device", "seed",
                       "ssl_a", "tau_max", "tau_decay", "supernet", "elastic", "filter", "first_bits", "last_bits")


def _encode_options(args: argparse.Namespace) -> _opt.EncodeOptions:
    try:
        return _opt.EncodeOptions.from_kwargs(_encode_kwargs(args))
    except AniOptionError as exc:
        raise _UsageError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="ANI neural image codec: .ani files hold a small quantized network fitted to the image.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("encode", help="fit and write an .ani file from an image",
                       description="Read an image (PNG, JPEG, ... anything Pillow reads) and write an .ani file.")
    p.add_argument("input", metavar="IN", help="input image")
    p.add_argument("output", metavar="OUT", help="output .ani file")
    _add_encode_options(p)
    p.add_argument("-f", "--force", action="store_true", help="overwrite OUT if it exists (never IN)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="render an .ani file to an image",
                       description="Render an .ani file to an image file (format from OUT's extension, e.g. .png).")
    p.add_argument("input", metavar="IN", help="input .ani file")
    p.add_argument("output", metavar="OUT", help="output image, e.g. out.png")
    p.add_argument("--size", type=parse_size, metavar="WxH",
                   help="render at this size instead of the stored one (Wx or xH keep the aspect ratio)")
    p.add_argument("--subnet", help="sub-network to run: full, medium, small or DxW (siren/mfn supernet files; "
                   "grid images have only 'full'); default the largest the file holds")
    p.add_argument("-f", "--force", action="store_true", help="overwrite OUT if it exists (never IN)")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("info", help="show what an .ani header says",
                       description="Show the header of .ani files: size, mode, model, bits, counts, bpp.")
    p.add_argument("files", metavar="FILE", nargs="+", help=".ani file(s)")
    p.add_argument("--json", action="store_true",
                   help="print JSON: an object for one file, a list of objects for several")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("convert", help="convert files and folders in a batch",
                       description="Convert images to .ani (--to ani) or .ani files to PNG (--to png). "
                       "Folders are searched recursively and their sub-folders kept under --out. "
                       "Inputs are never overwritten; outputs are written atomically; outputs that "
                       "already exist are skipped (so an interrupted batch resumes) unless --force. "
                       "A failed file does not stop the batch; failures are listed at the end and "
                       "the exit status is 1. With --scheduler the files are converted on a Dask cluster, with the "
                       "same guarantees (docs/distributed.md).")
    p.add_argument("inputs", metavar="INPUT", nargs="+", help="input files or folders")
    p.add_argument("--to", required=True, choices=("ani", "png"), help="target format")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("-j", "--jobs", type=_jobs, default=None, metavar="N",
                   help="worker processes (default 1; 0 = one per CPU core); with --scheduler local, "
                   "the local cluster's workers")
    g = p.add_argument_group("Dask cluster (needs ani-codec[dask]; see docs/distributed.md)")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="convert on a Dask cluster: a scheduler address (tcp://host:8786), a scheduler file, "
                   "or 'local' for a local cluster of --jobs worker processes")
    g.add_argument("--shared-fs", action="store_true",
                   help="with --scheduler: workers read inputs and write outputs themselves, at the same "
                   "absolute paths (default: inputs and outputs travel through this process)")
    _add_encode_options(p)
    p.add_argument("-f", "--force", action="store_true", help="redo outputs that already exist (never an input)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("run", help="run a Python script with the .ani plugins registered",
                       description="Run a Python script unchanged, with .ani registered in Pillow and imageio.")
    p.add_argument("script", metavar="SCRIPT", help="the script to run")
    p.add_argument("script_args", metavar="ARGS", nargs=argparse.REMAINDER, help="arguments for the script")
    p.set_defaults(func=cmd_run)
    return parser


# --------------------------------------------------------------------------- helpers


def _err(message: str) -> None:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)


def _os_error_text(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc) or type(exc).__name__


def _same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _check_output(src: str, dst: str, force: bool) -> None:
    if _same_path(src, dst):
        raise AniError(f"{dst}: refusing to overwrite the input file")
    if os.path.isdir(dst):
        raise AniError(f"{dst}: is a folder; give a file name")
    if os.path.exists(dst) and not force:
        raise AniError(f"{dst}: already exists (use --force to overwrite)")


def _bar_disable(quiet: bool) -> bool | None:
    # None: tqdm shows the bar only when stderr is a terminal
    return True if quiet else None


class _FitBar:
    """A tqdm bar fed by the codec's ``progress(step, total)`` callback."""

    def __init__(self, desc: str, quiet: bool, position: int = 0, leave: bool = True):
        self.desc, self.quiet, self.position, self.leave = desc, quiet, position, leave
        self.bar = None

    def __call__(self, step: int, total: int) -> None:
        if self.bar is None or self.bar.total != total:
            self.close()
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit="step", file=sys.stderr, disable=_bar_disable(self.quiet),
                            position=self.position, leave=self.leave, dynamic_ncols=True)
        delta = min(step, total) - self.bar.n
        if delta > 0:
            self.bar.update(delta)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# --------------------------------------------------------------------------- commands


def cmd_encode(args: argparse.Namespace) -> int:
    import core
    from .convert import read_image, write_atomic

    opts = _encode_options(args)
    _check_output(args.input, args.output, args.force)
    array, metadata = read_image(args.input)
    bar = _FitBar(f"fitting {Path(args.input).name}", args.quiet)
    try:
        data = core.encode(array, opts, metadata=metadata or None, progress=bar)
    finally:
        bar.close()
    write_atomic(args.output, data, overwrite=args.force)
    header = core.read_header(data)
    if not args.quiet:
        print(f"{args.output}: {header.width}x{header.height} {header.mode}, {len(data)} bytes, "
              f"{header.bpp:.4f} bpp", file=sys.stderr)
    return EXIT_OK


def cmd_decode(args: argparse.Namespace) -> int:
    import core
    from .convert import format_for, image_bytes, write_atomic

    _check_output(args.input, args.output, args.force)
    format_for(Path(args.output))  # an unknown extension fails before the decode
    with open(args.input, "rb") as fh:
        raw = fh.read()
    try:
        header = core.read_header(raw)
    except AniError as exc:
        raise type(exc)(f"{args.input}: {exc}") from None
    size = _resolve_size(args.size, header.size)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", core.AniTruncatedWarning)
        array = core.decode(raw, size=size, subnet=_subnet(args.subnet))
    for w in caught:
        if issubclass(w.category, core.AniTruncatedWarning):
            print(f"{PROG}: note: {args.input}: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    write_atomic(args.output, image_bytes(array, args.output, header.metadata), overwrite=args.force)
    return EXIT_OK


def header_dict(header, path: str | None = None) -> dict[str, Any]:
    """The header as a JSON-ready dict (what ``ani info --json`` prints)."""
    out: dict[str, Any] = {}
    if path is not None:
        out["file"] = str(path)
    out.update(
        format="ani",
        version=header.version,
        width=header.width,
        height=header.height,
        mode=header.mode,
        model=header.model,
        bits=header.bits,
        quality=header.quality,
        effort=header.effort,
        n_latents=header.n_latents,
        n_params=header.n_params,
        file_size=header.file_size,
        bpp=round(header.bpp, 6),
        metadata={key: len(value) for key, value in header.metadata.items()},
    )
    if header.truncated:
        out["truncated"] = True
    return out


def _info_text(d: dict[str, Any]) -> str:
    meta = ", ".join(f"{k} ({v} bytes)" for k, v in d["metadata"].items()) or "none"
    rows = [
        ("file", d["file"]),
        ("format", f"ANI version {d['version']}"),
        ("size", f"{d['width']}x{d['height']}"),
        ("mode", d["mode"]),
        ("model", d["model"]),
        ("bits", d["bits"]),
        ("quality", d["quality"]),
        ("effort", d["effort"]),
        ("latents", d["n_latents"]),
        ("parameters", d["n_params"]),
        ("file size", f"{d['file_size']} bytes"),
        ("bpp", f"{d['bpp']:.4f}"),
        ("metadata", meta),
    ]
    net = d.get("network")
    if net:
        rows.insert(5, ("network", f"{net['network']}, depths {net['depths']}, widths {net['widths']}, "
                               f"first/last layer {net['first_bits']}/{net['last_bits']} bits"))
        if d.get("truncated"):
            rows.append(("truncated", "yes: the file is a prefix; complete sub-networks decode"))
        rows.append(("subnets", f"{len(net['subnets'])} (depth x width: parameters, bytes of the file prefix that holds it)"))
        for sub in net["subnets"]:
            where = f"{sub['bytes']} bytes" if sub["complete"] else "missing (truncated)"
            rows.append(("", f"{sub['depth']}x{sub['width']}: {sub['params']} parameters, {where}"))
    return "\n".join(f"{k + ':' if k else '':<12}{v}" for k, v in rows)


def cmd_info(args: argparse.Namespace) -> int:
    import core

    results, status = [], EXIT_OK
    for path in args.files:
        try:
            entry = header_dict(core.read_header(path), path)
            network = core.describe(path)
            if network:
                entry["network"] = network
            results.append(entry)
        except AniError as exc:
            _err(f"{path}: {exc}")
            status = EXIT_ERROR
        except OSError as exc:
            _err(_os_error_text(exc))
            status = EXIT_ERROR
    if args.json:
        if results:
            print(json.dumps(results[0] if len(args.files) == 1 else results, indent=2))
    elif results:
        print("\n\n".join(_info_text(d) for d in results))
    return status


def cmd_convert(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .convert import convert, cpu_count

    opts = _encode_options(args) if args.to == "ani" else None
    if args.to == "png" and any(getattr(args, n) is not None for n in ENCODE_OPTION_DESTS):
        raise _UsageError("encode options (--bits, --quality, ...) apply to --to ani only")
    if args.shared_fs and not args.scheduler:
        raise _UsageError("--shared-fs applies with --scheduler only")
    if args.scheduler and args.scheduler != "local" and args.jobs is not None:
        raise _UsageError("--jobs applies to local work and --scheduler local; a cluster's size is set by its workers")
    jobs = cpu_count() if args.jobs == 0 else (args.jobs or 1)
    bar = tqdm(total=0, desc=f"to {args.to}", unit="file", file=sys.stderr, disable=_bar_disable(args.quiet),
               dynamic_ncols=True)
    local = not args.scheduler
    fit = _FitBar("fit", args.quiet, position=1, leave=False) if local and jobs == 1 and args.to == "ani" else None
    counts = {"converted": 0, "skipped": 0, "failed": 0}

    def on_plan(n: int) -> None:
        bar.reset(total=n)

    def on_result(result) -> None:
        counts[result.status] += 1
        if fit is not None:
            fit.close()
        bar.set_postfix(failed=counts["failed"], skipped=counts["skipped"], refresh=False)
        bar.update(1)

    def on_step(src: Path, step: int, total: int) -> None:
        fit.desc = f"fit {src.name}"
        fit(step, total)

    subnet = _subnet(args.subnet) if args.to == "png" else None
    try:
        if local:
            summary = convert(args.inputs, args.out, args.to, jobs=jobs, force=args.force, options=opts,
                              subnet=subnet, on_plan=on_plan, on_result=on_result,
                              on_step=on_step if fit is not None else None)
        else:  # Dask is imported only here
            from .convert import dask_batch

            summary = dask_batch.convert(args.inputs, args.out, args.to, scheduler=args.scheduler,
                                         jobs=jobs if args.scheduler == dask_batch.LOCAL else None,
                                         shared_fs=args.shared_fs, force=args.force, options=opts, subnet=subnet,
                                         on_plan=on_plan, on_result=on_result)
    finally:
        if fit is not None:
            fit.close()
        bar.close()

    if not args.quiet or summary.failed:
        print(f"{PROG} convert: {summary}", file=sys.stderr)
    if summary.failed:
        print(f"{PROG} convert: {len(summary.failed)} of {summary.total} input(s) failed:", file=sys.stderr)
        for result in summary.failed:
            print(f"  {result.source}: {result.error}", file=sys.stderr)
        return EXIT_ERROR
    if summary.total == 0:
        _err("no input files found (images for --to ani, .ani files for --to png)")
        return EXIT_ERROR
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    try:
        from . import runscript
    except ImportError as exc:
        raise AniError(f"'ani run' is not available: {exc}") from None
    status = runscript.main([args.script, *args.script_args])
    return int(status or 0)


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ani`` command with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return args.func(args)
    except _UsageError as exc:
        _err(exc)
        return EXIT_USAGE
    except AniOptionError as exc:
        _err(exc)
        return EXIT_USAGE
    except AniError as exc:
        _err(exc)
        return EXIT_ERROR
    except OSError as exc:
        _err(_os_error_text(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def run() -> int:
    """The ``ani`` console command (and ``python -m core``): :func:`main` in a
    process that keeps freed heap memory between a fit's steps
    (:func:`core.heap.retain_freed_memory`: the process is ANI's own, so its
    allocator may be changed for good; ``ANI_KEEP_HEAP=0`` turns that off)."""
    from .heap import retain_freed_memory

    retain_freed_memory()
    return main()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
