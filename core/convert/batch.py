"""Running a batch: plan, skip finished outputs, convert the rest in this
process or in a pool of worker processes, and report every input."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import AniError, AniOptionError
from ..options import EncodeOptions
from .plan import Target, Task, collect
from .results import ConvertSummary, FileResult, error_text
from .single import run_task


def cpu_count() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


#: How often (seconds) a worker process checks that the batch process still runs.
PARENT_CHECK_SECONDS = 0.5


def _exit_with_parent(parent: int) -> None:
    """Exit this worker process as soon as its parent is gone.

    A pool worker waits on a queue whose write end it holds itself, so it
    never sees the end of the batch if the batch process is killed (SIGKILL,
    the OOM killer): without this, such workers would idle forever. Exiting
    mid-task is safe, the output is written atomically.
    """
    import threading
    import time

    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK_SECONDS)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="ani-parent-watch", daemon=True).start()


def _worker_init(threads: int, parent: int | None = None) -> None:
    """Initialiser of a worker process: share the CPU cores between workers,
    keep freed heap memory between a fit's steps (:mod:`core.heap`), and exit
    when the batch process ``parent`` is gone.

    This sets torch's thread count and the allocator in the worker process
    only, never in the caller's process.
    """
    if parent is not None:
        _exit_with_parent(parent)
    from ..heap import retain_freed_memory

    retain_freed_memory()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except Exception:  # pragma: no cover - torch missing: the task reports it
        pass


@dataclass
class BatchPlan:
    """A planned batch: what is left to convert, and where results go.

    Attributes:
        pending: tasks whose output does not exist yet (or all, with ``force``).
        options: the validated encode options (``None`` for ``to="png"``).
        summary: the :class:`ConvertSummary` that :attr:`done` fills; it
            already holds planning failures and skipped outputs.
        done: reports one :class:`FileResult` (to the summary and ``on_result``).
    """

    pending: list[Task]
    options: EncodeOptions | None
    summary: ConvertSummary
    done: Callable[[FileResult], None]


def plan_batch(
    inputs: Sequence[str | os.PathLike] | str | os.PathLike,
    out_dir: str | os.PathLike,
    to: Target,
    *,
    force: bool = False,
    options: EncodeOptions | None = None,
    encode_kwargs: dict[str, Any] | None = None,
    on_plan: Callable[[int], None] | None = None,
    on_result: Callable[[FileResult], None] | None = None,
) -> BatchPlan:
    """Validate the options, find the inputs, report planning failures and
    outputs that already exist (skipped unless ``force``), and return what is
    left; shared by the local batch and the Dask batch (:mod:`.dask_batch`).

    Raises:
        AniError: options given both ways; AniOptionError: an invalid encode
            option (before any file is touched).
    """
    encode_kwargs = encode_kwargs or {}
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if options is not None and encode_kwargs:
        raise AniError("give either options or encode keywords, not both")
    if to == "ani":
        options = options if options is not None else EncodeOptions.from_kwargs(encode_kwargs)
    elif encode_kwargs:
        EncodeOptions.from_kwargs(encode_kwargs)  # still reject unknown names

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
    return BatchPlan(pending, options if to == "ani" else None, summary, done)


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
    try:
        jobs = int(jobs)
    except (TypeError, ValueError):
        jobs = 0
    if jobs < 1:
        raise AniOptionError(f"invalid option jobs={jobs!r}: allowed an integer >= 1")
    plan = plan_batch(inputs, out_dir, to, force=force, options=options, encode_kwargs=encode_kwargs,
                      on_plan=on_plan, on_result=on_result)
    summary, done, pending, options = plan.summary, plan.done, plan.pending, plan.options

    workers = min(jobs, len(pending))
    if workers <= 1:
        for task in pending:
            step = (lambda s, t, _src=task.source: on_step(_src, s, t)) if on_step else None
            done(run_task(task, to, options, subnet, force, step))
        return summary
    _run_pool(pending, workers, to, options, subnet, force, done)
    return summary


def _run_pool(pending: list[Task], workers: int, to: Target, options, subnet, force: bool,
              done: Callable[[FileResult], None]) -> None:
    """Convert ``pending`` in ``workers`` spawned processes, reporting each result to ``done``."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    threads = max(1, cpu_count() // workers)
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(threads, os.getpid()),
    )
    futures = {}
    try:
        for task in pending:
            futures[pool.submit(run_task, task, to, options, subnet, force)] = task
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
                    result = FileResult(task.source, task.output, "failed", error_text(exc, task.source))
                done(result)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
