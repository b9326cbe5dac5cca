"""Batch conversion of files and folders to and from ``.ani``.

The logic behind ``ani convert``, usable without the command line::

    from core.convert import convert
    summary = convert(["assets/"], "out/", to="ani", jobs=2, quality=80)
    for failure in summary.failed:
        print(failure.source, failure.error)

Guarantees (issue #7):

* an input is never modified or overwritten, whatever ``out_dir`` is;
* each output is written to a temporary file in its final folder and then
  linked or renamed to the final name, so an interrupted or killed batch never
  leaves a partial output under an output name;
* running the same batch again skips outputs that already exist (resume),
  unless ``force=True``;
* a file that fails does not stop the others; every failure is returned with
  its message.

Modules, by what they hold: :mod:`.plan` (inputs to tasks), :mod:`.single`
(one file: :func:`convert_bytes` bytes to bytes, :func:`convert_file` with an
atomic write, :func:`run_task` a task to a result; what a worker, local or
remote, calls), :mod:`.batch` (the batch and its worker pool), :mod:`.atomic`
(:func:`write_atomic`), :mod:`.images` (PNG/JPEG through Pillow, imported
lazily), :mod:`.results` (:class:`FileResult`, :class:`ConvertSummary`).
The same batch on a Dask cluster: :mod:`.dask_batch` (client side) and
:mod:`.dask_worker` (what workers run), never imported from here, so nothing
of Dask loads unless asked for (``docs/distributed.md``).
"""
from __future__ import annotations

from .atomic import OutputExistsError, write_atomic
from .batch import convert, cpu_count
from .images import ANI_EXTENSION, format_for, image_bytes, read_image
from .plan import IMAGE_EXTENSIONS, TARGETS, Target, Task, collect
from .results import ConvertSummary, FileResult, error_text
from .single import convert_bytes, convert_file, run_task

# names of the single-module version, kept for callers
_format_for = format_for
_error_text = error_text
_run_task = run_task

__all__ = [
    "convert", "convert_file", "convert_bytes", "run_task", "collect", "Task", "FileResult", "ConvertSummary",
    "write_atomic", "OutputExistsError", "read_image", "image_bytes", "format_for", "cpu_count",
    "IMAGE_EXTENSIONS", "ANI_EXTENSION", "TARGETS", "Target",
]
