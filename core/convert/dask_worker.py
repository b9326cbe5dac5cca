"""What a Dask worker runs for a distributed batch (:mod:`.dask_batch`).

Imports nothing from Dask at module level; a worker deserialises these
functions by reference, so every worker needs the same ``ani-codec`` as the
client. Each task:

* takes a *fit slot* of its worker process, so a worker fits one image at a
  time per device (one per GPU on a GPU worker, one on a CPU-only worker)
  unless the worker declares the ``fit`` resource (``--resources fit=K``),
  which then sets the number of slots;
* runs torch, for the time of the task, with ``cores // workers on the host
  // slots`` threads (or the ``threads`` the client asked for); Dask's nanny
  starts workers with ``OMP_NUM_THREADS=1``, which would leave a fit on one
  core;
* on a GPU slot, fits on that slot's CUDA device (``device="auto"`` or
  ``"cuda"``); decoding stays on the CPU, as in ``ani convert``.

Every task is idempotent, so the scheduler may run it again on another worker
when a worker dies.
"""
from __future__ import annotations

import os
import queue
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..options import EncodeOptions
from .batch import cpu_count
from .plan import Target, Task
from .results import FileResult, error_text
from .single import convert_bytes, run_task

#: Name of the Dask worker resource that counts fit slots (``dask worker --resources fit=1``).
FIT_RESOURCE = "fit"


@dataclass(frozen=True)
class WorkerEnv:
    """How a task sizes its torch thread pool on the worker that runs it.

    Attributes:
        threads: torch threads per fit; ``None``: the worker's cores divided by
            the worker processes on its host and by its fit slots.
        host_workers: worker processes per host, as the scheduler listed them
            when the batch started (a host not listed counts one).
    """

    threads: int | None = None
    host_workers: Mapping[str, int] = field(default_factory=dict)


def _this_worker():
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):  # not inside a Dask task
        return None


def _host() -> str | None:
    worker = _this_worker()
    if worker is None:
        return None
    from distributed.comm import get_address_host

    return get_address_host(worker.address)


def _declared_slots() -> int | None:
    worker = _this_worker()
    total = worker.state.total_resources.get(FIT_RESOURCE) if worker is not None else None
    return max(1, int(total)) if total else None


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class _Slots:
    """The fit slots of this process: a pool of slot numbers, built at the
    first task; slot ``i`` fits on CUDA device ``i % devices``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pool: queue.Queue[int] | None = None
        self.count = 0
        self.active = 0
        self.saved_threads = 0

    def ensure(self) -> None:
        with self.lock:
            if self.pool is None:
                n = _declared_slots() or max(1, _cuda_count())
                pool: queue.Queue[int] = queue.Queue()
                for i in range(n):
                    pool.put(i)
                self.pool, self.count = pool, n


_SLOTS = _Slots()


def threads_for(env: WorkerEnv, slots: int, cores: int | None = None, host: str | None = None) -> int:
    """Torch threads of one fit: ``env.threads``, else ``cores // workers on
    the host // slots`` (at least 1)."""
    if env.threads:
        return max(1, int(env.threads))
    cores = cores if cores is not None else cpu_count()
    workers = max(1, int(env.host_workers.get(host, 1))) if host is not None else 1
    return max(1, cores // workers // max(1, slots))


@contextmanager
def fit_slot(env: WorkerEnv, cuda: bool) -> Iterator[int]:
    """Hold a fit slot of this process (waiting while all are busy), with
    torch's thread count set for the task and restored when the last running
    task leaves; on a CUDA slot (``cuda=True`` and a device present) make its
    device the current one. Yields the slot number."""
    import torch

    _SLOTS.ensure()
    assert _SLOTS.pool is not None
    index = _SLOTS.pool.get()
    try:
        n = threads_for(env, _SLOTS.count, host=_host())
        with _SLOTS.lock:
            if _SLOTS.active == 0:
                _SLOTS.saved_threads = torch.get_num_threads()
            _SLOTS.active += 1
            torch.set_num_threads(n)
        try:
            devices = _cuda_count() if cuda else 0
            if devices:
                with torch.cuda.device(index % devices):
                    yield index
            else:
                yield index
        finally:
            with _SLOTS.lock:
                _SLOTS.active -= 1
                if _SLOTS.active == 0:
                    torch.set_num_threads(_SLOTS.saved_threads)
    finally:
        _SLOTS.pool.put(index)


def _wants_cuda(to: Target, options: EncodeOptions | None) -> bool:
    return to == "ani" and (options is None or options.device != "cpu")


# --------------------------------------------------------------------------- tasks


def convert_reported(data: bytes, to: Target, options: EncodeOptions | None, subnet: Any,
                     output_name: str, name: str, env: WorkerEnv) -> tuple[str, bytes | str, float]:
    """Bytes in, bytes out, for a batch whose client writes the outputs.

    Returns ``("converted", output bytes, seconds)``, or ``("failed", one-line
    message, seconds)`` for a bad input; never raises for the input.
    """
    start = time.perf_counter()
    with fit_slot(env, _wants_cuda(to, options)):
        try:
            out = convert_bytes(data, to, options=options, subnet=subnet, output_name=output_name, name=name)
        except Exception as exc:  # one bad file must not stop the batch
            return "failed", error_text(exc, Path(name)), time.perf_counter() - start
    return "converted", out, time.perf_counter() - start


def convert_in_place(task: Task, to: Target, options: EncodeOptions | None, subnet: Any, force: bool,
                     env: WorkerEnv) -> FileResult:
    """For a shared file system: read ``task.source`` and write ``task.output``
    atomically on the worker (:func:`run_task`: an existing output is
    ``skipped`` unless ``force``, a bad input is ``failed``)."""
    with fit_slot(env, _wants_cuda(to, options)):
        return run_task(task, to, options, subnet, force)


def convert_item(item: Any, to: Target, options: EncodeOptions | None, subnet: Any, output_name: str,
                 name: str, env: WorkerEnv) -> bytes:
    """One item of :func:`core.convert.dask_batch.submit`: a numpy array (to
    ``.ani`` bytes), the bytes of a file, or a path the worker reads. Raises
    the codec's error for a bad input."""
    import core

    if isinstance(item, (str, os.PathLike)):
        with open(item, "rb") as fh:
            item = fh.read()
    with fit_slot(env, _wants_cuda(to, options)):
        if isinstance(item, (bytes, bytearray, memoryview)):
            return convert_bytes(bytes(item), to, options=options, subnet=subnet, output_name=output_name, name=name)
        if to != "ani":
            raise core.AniOptionError(f"{name}: an array converts to .ani only (to='ani'), not to {to!r}")
        return core.encode(item, options or EncodeOptions())


def worker_info() -> dict[str, Any]:
    """What the client checks before a batch: the codec's version and the
    worker's cores and CUDA devices (imports torch)."""
    import core

    return {"version": core.__version__, "cpus": cpu_count(), "cuda": _cuda_count()}
