"""Batch conversion of files and folders to and from ``.ani``.

The logic behind ``ani convert``, usable without the command line::

    from core.convert import convert
    summary = convert(["assets/"], "out/", to="ani", jobs=2, quality=80)
    for failure in summary.failed:
        print(failure.source, failure.error)

Guarantees (issue #7):

* an input is never modified or overwritten, whatever ``out_dir`` is;
* each output is written to a temporary file in its final folder and then
  renamed over the final name (:func:`os.replace`), so an interrupted or killed
  batch never leaves a partial output under an output name;
* running the same batch again skips outputs that already exist (resume),
  unless ``force=True``;
* a file that fails does not stop the others; every failure is returned with
  its message.

Reading and writing ordinary images (PNG, JPEG, ...) uses Pillow, imported
lazily: the codec itself (:mod:`core`) works on arrays and bytes only.
"""
from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

from .errors import AniError, AniLimitError
from .options import EncodeOptions

#: File extensions (lower case, without the dot) collected from folders for ``to="ani"``.
IMAGE_EXTENSIONS = frozenset(
    "png apng jpg jpeg jpe jfif bmp dib gif tif tiff webp ppm pgm pbm pnm tga qoi avif".split()
)
#: Extension of the codec's files, collected from folders for ``to="png"``.
ANI_EXTENSION = "ani"
TARGETS = ("ani", "png")

_TMP_PREFIX = "."
_TMP_SUFFIX = ".ani-tmp"
_TMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]+" + re.escape(_TMP_SUFFIX) + "$")

Target = Literal["ani", "png"]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class FileResult:
    """The outcome of one input.

    Attributes:
        source: the input file.
        output: the output file it maps to (``None`` if none could be named).
        status: ``converted``, ``skipped`` (output existed) or ``failed``.
        error: one-line message of a failure (without the source path), else ``None``.
        seconds: wall time spent on this file.
    """

    source: Path
    output: Path | None
    status: Literal["converted", "skipped", "failed"]
    error: str | None = None
    seconds: float = 0.0


@dataclass
class ConvertSummary:
    """What a batch did: every input lands in exactly one of the three lists."""

    converted: list[FileResult] = field(default_factory=list)
    skipped: list[FileResult] = field(default_factory=list)
    failed: list[FileResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no input failed."""
        return not self.failed

    @property
    def total(self) -> int:
        return len(self.converted) + len(self.skipped) + len(self.failed)

    def add(self, result: FileResult) -> None:
        {"converted": self.converted, "skipped": self.skipped, "failed": self.failed}[result.status].append(result)

    def __str__(self) -> str:
        return f"{len(self.converted)} converted, {len(self.skipped)} skipped, {len(self.failed)} failed"


# --------------------------------------------------------------------------- image I/O (Pillow)


def _pillow():
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - depends on the environment
        raise AniError("reading and writing PNG/JPEG needs Pillow: pip install 'ani-codec[pillow]'") from None
    return Image


def read_image(path: str | os.PathLike) -> tuple[Any, dict[str, bytes]]:
    """Read any Pillow-readable image as a uint8 array in a mode the codec stores.

    Palette, bilevel, CMYK, YCbCr, 16-bit and float images are converted to
    L, LA, RGB or RGBA (palette transparency becomes alpha). The first frame of
    an animation is used. ICC profile, EXIF and XMP are returned as codec
    metadata (``{"icc_profile": ..., "exif": ..., "xmp": ...}``); pixels are
    not rotated by the EXIF orientation, which stays in the EXIF.

    Raises:
        OSError: the file cannot be opened (missing, permission).
        AniError: the file is not an image Pillow can read, or is broken.
        AniLimitError: the image is larger than the codec's limits.
    """
    Image = _pillow()
    try:
        return _read_image(Image, path)
    except (AniError, MemoryError):
        raise
    except Image.UnidentifiedImageError:
        raise AniError(f"{path}: not an image file that Pillow can read") from None
    except OSError as exc:
        if exc.errno is not None:  # missing file, permission, ...: the message names the file
            raise
        raise AniError(f"{path}: cannot read as an image ({_error_text(exc)})") from None
    except Image.DecompressionBombError as exc:
        raise AniLimitError(f"{path}: {_error_text(exc)}") from None
    except Exception as exc:  # Pillow plugins raise many types on broken files
        raise AniError(f"{path}: cannot read as an image ({type(exc).__name__}: {exc})") from None


def _read_image(Image, path) -> tuple[Any, dict[str, bytes]]:
    import numpy as np

    from .container import check_limits

    with Image.open(path) as im:
        check_limits(im.width, im.height, 0, 0)  # before decoding any pixel
        im.load()
        info = dict(im.info)
        metadata = _metadata_from_info(im, info)
        mode = im.mode
        if mode in ("L", "LA", "RGB", "RGBA"):
            out = im
        elif mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
            a = np.asarray(im).astype(np.float64)
            if mode.startswith("I;16") or (mode == "I" and a.max(initial=0) > 255):
                a = a / 257.0  # 16-bit range onto 8 bits
            elif mode == "F" and a.max(initial=0) <= 1.0:
                a = a * 255.0
            return np.clip(np.rint(a), 0, 255).astype(np.uint8), metadata
        elif mode == "1":
            out = im.convert("L")
        elif mode in ("La",):
            out = im.convert("LA")
        elif mode in ("RGBa",):
            out = im.convert("RGBA")
        elif mode in ("P", "PA"):
            has_alpha = mode == "PA" or "transparency" in info
            out = im.convert("RGBA" if has_alpha else "RGB")
        else:  # CMYK, YCbCr, LAB, HSV, RGBX, ...
            if mode in ("CMYK", "LAB", "HSV"):
                metadata.pop("icc_profile", None)  # describes the old colour space
            out = im.convert("RGBA" if "A" in mode.replace("LAB", "") else "RGB")
        return np.array(out, dtype=np.uint8), metadata


def _metadata_from_info(im, info: dict) -> dict[str, bytes]:
    meta: dict[str, bytes] = {}
    icc = info.get("icc_profile")
    if icc:
        meta["icc_profile"] = bytes(icc)
    exif = info.get("exif")
    if not exif:
        try:
            exif_obj = im.getexif()
            exif = exif_obj.tobytes() if len(exif_obj) else None
        except Exception:  # malformed EXIF must not stop a conversion
            exif = None
    if exif:
        meta["exif"] = bytes(exif)
    xmp = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if xmp:
        meta["xmp"] = xmp.encode("utf-8") if isinstance(xmp, str) else bytes(xmp)
    return meta


def _format_for(path: Path) -> str:
    Image = _pillow()
    ext = path.suffix.lower()
    if ext == "." + ANI_EXTENSION:
        raise AniError(f"{path}: an .ani output is written by 'ani encode', not by decoding")
    fmt = Image.registered_extensions().get(ext)
    if fmt is None:
        raise AniError(f"{path}: unknown image extension {ext or '(none)'!r}; use .png")
    return fmt


def image_bytes(array, path: str | os.PathLike, metadata: dict | None = None) -> bytes:
    """Encode a decoded array as the image format named by ``path``'s extension
    (PNG for ``.png``), carrying ICC profile, EXIF and XMP where the format can."""
    import io

    Image = _pillow()
    path = Path(path)
    fmt = _format_for(path)
    im = Image.fromarray(array)
    kwargs: dict[str, Any] = {}
    metadata = metadata or {}
    if metadata.get("icc_profile"):
        kwargs["icc_profile"] = metadata["icc_profile"]
    if metadata.get("exif"):
        kwargs["exif"] = metadata["exif"]
    if metadata.get("xmp"):
        if fmt == "PNG":
            from PIL.PngImagePlugin import PngInfo

            info = PngInfo()
            info.add_itxt("XML:com.adobe.xmp", metadata["xmp"].decode("utf-8", "replace"))
            kwargs["pnginfo"] = info
        else:
            kwargs["xmp"] = metadata["xmp"]
    buf = io.BytesIO()
    try:
        im.save(buf, format=fmt, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise AniError(f"cannot write a {im.mode} image as {fmt} ({path.name}): {exc}") from None
    return buf.getvalue()


# --------------------------------------------------------------------------- atomic writes


class OutputExistsError(FileExistsError):
    """The output file exists and overwriting was not asked for."""


def write_atomic(path: str | os.PathLike, data: bytes, *, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder.

    The final name appears only once the data is complete and flushed to disk.
    With ``overwrite=False`` an existing ``path`` is left alone and
    :class:`OutputExistsError` (a :class:`FileExistsError`) is raised.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}.{os.getpid()}-{secrets.token_hex(4)}{_TMP_SUFFIX}")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            # link() fails if the name exists: no window in which another
            # writer's finished output could be replaced.
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise OutputExistsError(f"{path} already exists (use --force to overwrite)") from None
            except OSError:  # file systems without hard links
                if path.exists():
                    raise OutputExistsError(f"{path} already exists (use --force to overwrite)") from None
                os.replace(tmp, path)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _remove_stale_temps(path: Path) -> None:
    """Remove temporary files left for ``path`` by writers that no longer run."""
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        m = _TMP_RE.match(entry.name)
        if not m or m.group("name") != path.name:
            continue
        if _pid_alive(int(m.group("pid"))):
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            pass


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Task:
    """One planned conversion: ``source`` to ``output``."""

    source: Path
    output: Path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def collect(inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike, to: Target) -> tuple[list[Task], list[FileResult]]:
    """Map input files and folders onto output paths under ``out_dir``.

    A folder is searched recursively for image files (``to="ani"``) or
    ``.ani`` files (``to="png"``); hidden files are ignored, and so is
    ``out_dir`` when it lies inside the folder. The sub-folder structure below
    each folder is kept; a file named directly lands at the top of ``out_dir``.

    Returns:
        the tasks, and failures found while planning (missing inputs, two
        inputs that map to one output, an output that would replace an input).
    """
    if to not in TARGETS:
        raise AniError(f"invalid target {to!r}: allowed {', '.join(TARGETS)}")
    out_dir = Path(out_dir)
    out_abs = Path(os.path.abspath(out_dir))
    wanted = {ANI_EXTENSION} if to == "png" else IMAGE_EXTENSIONS
    suffix = "." + to
    found: list[tuple[Path, Path]] = []  # (source, relative output)
    problems: list[FileResult] = []
    for item in inputs:
        src = Path(item)
        if src.is_dir():
            root_abs = Path(os.path.abspath(src))
            skip_out = out_abs != root_abs and root_abs in out_abs.parents
            for dirpath, dirnames, filenames in os.walk(src):
                here = Path(dirpath)
                dirnames[:] = sorted(
                    d for d in dirnames
                    if not d.startswith(".") and not (skip_out and Path(os.path.abspath(here / d)) == out_abs)
                )
                for name in sorted(filenames):
                    if name.startswith(".") or "." not in name or name.rsplit(".", 1)[1].lower() not in wanted:
                        continue
                    path = here / name
                    found.append((path, path.relative_to(src).with_suffix(suffix)))
        elif src.is_file():
            found.append((src, Path(src.name).with_suffix(suffix)))
        elif src.exists():
            problems.append(FileResult(src, None, "failed", "not a regular file or folder"))
        else:
            problems.append(FileResult(src, None, "failed", "no such file or folder"))

    # de-duplicate inputs named twice (a file and its folder, say)
    unique: list[tuple[Path, Path]] = []
    seen_src: set[str] = set()
    for src, rel in found:
        key = os.path.realpath(src)
        if key not in seen_src:
            seen_src.add(key)
            unique.append((src, rel))

    input_paths = [src for src, _ in unique]
    input_keys = {os.path.realpath(p) for p in input_paths}
    tasks: list[Task] = []
    claimed: dict[str, Path] = {}
    for src, rel in unique:
        dst = out_dir / rel
        key = os.path.realpath(dst)
        if key in input_keys or (dst.exists() and _same_file(dst, src)):
            problems.append(FileResult(src, dst, "failed", f"refusing to overwrite an input with its output {dst}"))
            continue
        if key in claimed:
            problems.append(FileResult(src, dst, "failed", f"output {dst} is already the output of {claimed[key]}"))
            continue
        claimed[key] = src
        tasks.append(Task(src, dst))
    return tasks, problems


# --------------------------------------------------------------------------- one file


def _error_text(exc: BaseException, source: Path | None = None) -> str:
    """One-line message of ``exc``, without a leading ``source: ``."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = exc.strerror if source is not None and _same_name(exc.filename, source) else f"{exc.filename}: {exc.strerror}"
    elif isinstance(exc, (AniError, OSError)):
        text = str(exc) or type(exc).__name__
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    if source is not None and text.startswith(f"{source}: "):
        text = text[len(f"{source}: "):]
    return text


def _same_name(a: Any, b: Path) -> bool:
    try:
        return os.path.abspath(a) == os.path.abspath(b)
    except (TypeError, ValueError):
        return False


def convert_file(
    source: str | os.PathLike,
    output: str | os.PathLike,
    to: Target,
    *,
    options: EncodeOptions | None = None,
    subnet: Any = None,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Convert one file; write ``output`` atomically. Raises on failure.

    ``to="ani"`` reads an image and encodes it with ``options``;
    ``to="png"`` decodes an ``.ani`` file (with ``subnet``) and writes the
    image format named by ``output``'s extension.
    """
    import core

    source, output = Path(source), Path(output)
    if to == "ani":
        array, metadata = read_image(source)
        data = core.encode(array, options or EncodeOptions(), metadata=metadata or None, progress=progress)
    elif to == "png":
        with open(source, "rb") as fh:
            raw = fh.read()
        header = core.read_header(raw)
        array = core.decode(raw, subnet=subnet)
        data = image_bytes(array, output, header.metadata)
    else:
        raise AniError(f"invalid target {to!r}: allowed {', '.join(TARGETS)}")
    write_atomic(output, data, overwrite=force)


def _run_task(task: Task, to: Target, options: EncodeOptions | None, subnet: Any, force: bool,
              progress: Callable[[int, int], None] | None = None) -> FileResult:
    start = time.perf_counter()
    try:
        if not force and task.output.exists():
            return FileResult(task.source, task.output, "skipped", None, 0.0)
        convert_file(task.source, task.output, to, options=options, subnet=subnet, force=force, progress=progress)
    except OutputExistsError:  # finished by a concurrent run meanwhile
        return FileResult(task.source, task.output, "skipped", None, time.perf_counter() - start)
    except Exception as exc:  # one bad file must not stop the batch
        return FileResult(task.source, task.output, "failed", _error_text(exc, task.source),
                          time.perf_counter() - start)
    return FileResult(task.source, task.output, "converted", None, time.perf_counter() - start)


def _worker_init(threads: int) -> None:
    """Initialiser of a worker process: share the CPU cores between workers.

    This sets torch's thread count in the worker process only, never in the
    caller's process.
    """
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except Exception:  # pragma: no cover - torch missing: the task reports it
        pass


def cpu_count() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# --------------------------------------------------------------------------- the batch


def convert(
    inputs: Sequence[str | os.PathLike] | str | os.PathLike,
    out_dir: str | os.PathLike,
    to: Target = "ani",
    *,
    jobs: int = 1,
    force: bool = False,
    options: EncodeOptions | None = None,
    subnet: Any = None,
    on_result: Callable[[FileResult], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
    on_step: Callable[[Path, int, int], None] | None = None,
    **encode_kwargs: Any,
) -> ConvertSummary:
    """Convert files and folders to ``.ani`` (``to="ani"``) or back to PNG (``to="png"``).

    Args:
        inputs: files and folders (folders are searched recursively, see :func:`collect`).
        out_dir: folder that receives the outputs, with the inputs' sub-folders.
        to: ``ani`` or ``png``.
        jobs: worker processes (``spawn``); each uses ``cpu_count() // jobs``
            torch threads. ``1`` converts in this process.
        force: overwrite outputs that already exist (never an input).
        options: an :class:`EncodeOptions`, or give them as keywords
            (``bits=4, quality=80, effort=1, ...``), for ``to="ani"``.
        subnet: sub-network to decode, for ``to="png"``.
        on_result: called with each :class:`FileResult` as it finishes.
        on_plan: called once with the number of inputs found.
        on_step: ``(source, step, total)`` fit progress; only with ``jobs=1``.

    Returns:
        a :class:`ConvertSummary`; every input is in exactly one of its lists.

    Raises:
        AniOptionError: an invalid encode option (before any file is touched).
        KeyboardInterrupt: passed on after pending work is cancelled; finished
            outputs stay, unfinished ones leave nothing under an output name.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if options is not None and encode_kwargs:
        raise AniError("give either options or encode keywords, not both")
    if to == "ani":
        options = options if options is not None else EncodeOptions.from_kwargs(encode_kwargs)
    elif encode_kwargs:
        EncodeOptions.from_kwargs(encode_kwargs)  # still reject unknown names
    try:
        jobs = int(jobs)
    except (TypeError, ValueError):
        jobs = 0
    if jobs < 1:
        from .errors import AniOptionError

        raise AniOptionError(f"invalid option jobs={jobs!r}: allowed an integer >= 1")

    tasks, problems = collect(inputs, out_dir, to)
    summary = ConvertSummary()
    if on_plan:
        on_plan(len(tasks) + len(problems))

    def done(result: FileResult) -> None:
        summary.add(result)
        if on_result:
            on_result(result)

    for result in problems:
        done(result)

    # skip finished outputs up front: no worker is started for them
    pending: list[Task] = []
    for task in tasks:
        if not force and task.output.exists():
            done(FileResult(task.source, task.output, "skipped"))
        else:
            pending.append(task)

    workers = min(jobs, len(pending))
    if workers <= 1:
        for task in pending:
            step = (lambda s, t, _src=task.source: on_step(_src, s, t)) if on_step else None
            done(_run_task(task, to, options, subnet, force, step))
        return summary

    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    threads = max(1, cpu_count() // workers)
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(threads,),
    )
    futures = {}
    try:
        for task in pending:
            futures[pool.submit(_run_task, task, to, options, subnet, force)] = task
        remaining = set(futures)
        while remaining:
            finished, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            for fut in finished:
                task = futures[fut]
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    result = FileResult(task.source, task.output, "failed",
                                        "the worker process died (out of memory?)")
                except Exception as exc:
                    result = FileResult(task.source, task.output, "failed", _error_text(exc, task.source))
                done(result)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return summary
