"""Converting one file: bytes to bytes (:func:`convert_bytes`, which needs no
file system, for a worker that receives the data), a file to a file written
atomically (:func:`convert_file`), and a planned :class:`Task` to a
:class:`FileResult` that never raises for a bad input (:func:`run_task`)."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from ..options import EncodeOptions
from .atomic import OutputExistsError, write_atomic
from .images import image_bytes, read_image
from .plan import Target, Task, check_target
from .results import FileResult, error_text

Progress = Callable[[int, int], None]


def convert_bytes(
    data: bytes,
    to: Target,
    *,
    options: EncodeOptions | None = None,
    subnet: Any = None,
    output_name: str | os.PathLike = "output.png",
    name: str | None = None,
    progress: Progress | None = None,
) -> bytes:
    """Convert the bytes of one input file and return the output file's bytes.

    ``to="ani"``: ``data`` is an image file Pillow reads (PNG, JPEG, ...); it
    is encoded with ``options`` (default :class:`EncodeOptions`), keeping its
    ICC profile, EXIF and XMP. ``to="png"``: ``data`` is an ``.ani`` file; it
    is decoded (with ``subnet``) and written in the format of
    ``output_name``'s extension (only the name is used). Touches no file.

    Args:
        name: how error messages name the input (default ``<bytes>``).
        progress: ``progress(step, total)`` of the fit, for ``to="ani"``.

    Raises:
        AniError: a bad input or option (its subclasses say which); the
            message starts with ``name``.
    """
    import core

    check_target(to)
    if to == "ani":
        array, metadata = read_image(data, name=name)
        return core.encode(array, options or EncodeOptions(), metadata=metadata or None, progress=progress)
    try:
        header = core.read_header(data)
        array = core.decode(data, subnet=subnet)
    except core.AniError as exc:
        raise type(exc)(f"{name or '<bytes>'}: {exc}") from None
    return image_bytes(array, output_name, header.metadata)


def convert_file(
    source: str | os.PathLike,
    output: str | os.PathLike,
    to: Target,
    *,
    options: EncodeOptions | None = None,
    subnet: Any = None,
    force: bool = False,
    progress: Progress | None = None,
) -> None:
    """Convert one file; write ``output`` atomically (see :func:`write_atomic`).

    Reads ``source``, converts it with :func:`convert_bytes` and writes the
    result; ``output`` exists only once complete. Raises on failure
    (:class:`OutputExistsError` if ``output`` exists and not ``force``);
    ``source`` is only read.
    """
    check_target(to)
    source, output = Path(source), Path(output)
    with open(source, "rb") as fh:
        data = fh.read()
    out = convert_bytes(data, to, options=options, subnet=subnet, output_name=output, name=str(source),
                        progress=progress)
    write_atomic(output, out, overwrite=force)


def run_task(task: Task, to: Target, options: EncodeOptions | None = None, subnet: Any = None,
             force: bool = False, progress: Progress | None = None) -> FileResult:
    """Run one planned conversion and report it; a failure of the input is a
    ``failed`` result, never an exception (an interrupt still propagates).
    An output that exists (and not ``force``) is ``skipped``. Picklable
    arguments and result, so a worker process or a remote worker can call it."""
    start = time.perf_counter()
    try:
        if not force and task.output.exists():
            return FileResult(task.source, task.output, "skipped", None, 0.0)
        convert_file(task.source, task.output, to, options=options, subnet=subnet, force=force, progress=progress)
    except OutputExistsError:  # finished by a concurrent run meanwhile
        return FileResult(task.source, task.output, "skipped", None, time.perf_counter() - start)
    except Exception as exc:  # one bad file must not stop the batch
        return FileResult(task.source, task.output, "failed", error_text(exc, task.source),
                          time.perf_counter() - start)
    return FileResult(task.source, task.output, "converted", None, time.perf_counter() - start)
