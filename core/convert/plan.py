"""Planning a batch: which input files there are and the output each maps to."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

from ..errors import AniError
from .images import ANI_EXTENSION
from .results import FileResult

#: File extensions (lower case, without the dot) collected from folders for ``to="ani"``.
IMAGE_EXTENSIONS = frozenset(
    "png apng jpg jpeg jpe jfif bmp dib gif tif tiff webp ppm pgm pbm pnm tga qoi avif".split()
)
TARGETS = ("ani", "png")

Target = Literal["ani", "png"]


@dataclass(frozen=True)
class Task:
    """One planned conversion: ``source`` to ``output``."""

    source: Path
    output: Path


def check_target(to: str) -> None:
    if to not in TARGETS:
        raise AniError(f"invalid target {to!r}: allowed {', '.join(TARGETS)}")


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
    check_target(to)
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

    input_keys = {os.path.realpath(src) for src, _ in unique}
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
