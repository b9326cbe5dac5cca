"""Batch conversion on a Dask cluster (``ani convert --scheduler ...``).

Imported only when a Dask cluster is asked for; needs the ``dask`` extra
(``pip install 'ani-codec[dask]'``, i.e. ``dask[distributed]``). Two modes:

* default, any cluster: this process reads each input and sends its bytes
  with the task; the worker returns the output's bytes and this process
  writes them with :func:`write_atomic`. Workers need no access to the files.
* ``shared_fs=True``: workers read inputs and write outputs themselves
  (atomically), by absolute path; every worker must see the same paths. A
  probe file in ``out_dir`` checks that before the batch.

The guarantees of the local batch hold (:mod:`core.convert`): inputs are only
read, outputs appear whole or not at all, existing outputs are skipped (resume),
every failure is reported and none stops the batch. A worker that dies is
replaced by the scheduler, which runs its tasks again elsewhere (tasks are
idempotent); an input on which workers keep dying (Dask's
``distributed.scheduler.allowed-failures``, default 3) is reported as failed.
What runs on the workers, with its fit slots and thread counts, is in
:mod:`.dask_worker`; the user guide is ``docs/distributed.md``.

    from distributed import Client
    from core.convert import dask_batch

    with Client("tcp://scheduler:8786") as client:
        summary = dask_batch.convert(["assets/"], "assets-ani/", client=client, quality=80)
        futures = dask_batch.submit(client, [array, "photo.png"], effort=3)  # -> .ani bytes
"""
from __future__ import annotations

import logging
import os
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..errors import AniError, AniOptionError
from ..options import EncodeOptions
from .atomic import OutputExistsError, write_atomic
from .batch import cpu_count, plan_batch
from .dask_worker import FIT_RESOURCE, WorkerEnv, convert_in_place, convert_item, convert_reported, worker_info
from .plan import Target, Task, check_target
from .results import ConvertSummary, FileResult, error_text

#: ``scheduler=`` value that starts a local cluster of ``jobs`` worker processes.
LOCAL = "local"
#: Seconds to wait for a first worker to join before giving up.
WORKER_WAIT_SECONDS = 60.0
#: Seconds to wait for the scheduler to answer.
CONNECT_SECONDS = 30.0


def require_distributed():
    """The ``distributed`` module, or an :class:`AniError` that says how to install it."""
    try:
        import distributed
    except ImportError:
        raise AniError("running on a Dask cluster needs dask.distributed: pip install 'ani-codec[dask]'") from None
    return distributed


@contextmanager
def connect(scheduler: str | None = None, *, client: Any = None, jobs: int | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` for the batch, closed afterwards if opened here.

    Args:
        scheduler: a scheduler address (``tcp://host:8786``), the path of a
            scheduler file (``dask scheduler --scheduler-file``), or
            :data:`LOCAL` for a ``LocalCluster`` on loopback with ``jobs``
            worker processes of one thread and one fit slot each (default: one
            per CPU core), stopped afterwards.
        client: a client to use as it is (not closed).
    """
    if client is not None:
        yield client
        return
    distributed = require_distributed()
    if not scheduler:
        raise AniOptionError("invalid option scheduler=None: give an address, a scheduler file, 'local' or a client")
    if scheduler == LOCAL:
        with local_cluster(jobs or cpu_count()) as cluster, \
                distributed.Client(cluster, set_as_default=False) as c:
            yield c
        return
    try:
        if os.path.isfile(scheduler):
            c = distributed.Client(scheduler_file=scheduler, timeout=CONNECT_SECONDS, set_as_default=False)
        else:
            c = distributed.Client(scheduler, timeout=CONNECT_SECONDS, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise AniError(f"cannot reach the Dask scheduler {scheduler}: {error_text(exc)}") from None
    try:
        yield c
    finally:
        c.close()


#: Environment variables that Dask's nanny sets for its workers
#: (``distributed.nanny.pre-spawn-environ``) and that a local cluster drops:
#: glibc's malloc with ``MALLOC_TRIM_THRESHOLD_=65536`` makes a fit about 40 %
#: slower (``docs/distributed.md``).
DROPPED_WORKER_ENV = ("MALLOC_TRIM_THRESHOLD_",)


@contextmanager
def local_cluster(workers: int) -> Iterator[Any]:
    """A ``LocalCluster`` of ``workers`` processes on loopback, one thread and
    one fit slot each, no Dask memory limit and no dashboard; closed at the end.

    The workers start with glibc's malloc keeping freed memory
    (``GLIBC_TUNABLES``, :func:`core.heap.child_tunables`), as ``ani
    convert``'s own workers. The nannies of a local cluster live in this
    process and write their workers' environment (``OMP_NUM_THREADS=1``,
    ``GLIBC_TUNABLES``, ...) into ``os.environ``; those variables are put back
    when the cluster closes.
    """
    import dask
    from distributed import LocalCluster

    from ..heap import child_tunables

    key = "distributed.nanny.pre-spawn-environ"
    environ = {name: None for name in DROPPED_WORKER_ENV}
    tunables = child_tunables()
    if tunables:  # the workers keep the memory a fit frees, as ``ani convert``'s own (core.heap)
        environ["GLIBC_TUNABLES"] = tunables
    touched = set(dask.config.get(key)) | set(environ) | {"PYTHONHASHSEED"}
    saved = {name: os.environ.get(name) for name in touched}
    try:
        with dask.config.set({f"{key}.{name}": value for name, value in environ.items()}):
            cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                resources={FIT_RESOURCE: 1}, memory_limit=0, silence_logs=logging.ERROR,
                # no dashboard; the scheduler's HTTP routes on a free loopback port
                dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            )
        try:
            yield cluster
        finally:
            cluster.close()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass(frozen=True)
class Layout:
    """What the client knows of the cluster when a batch starts.

    Attributes:
        env: how tasks size their torch threads (:class:`WorkerEnv`).
        resources: ``{"fit": 1}`` when workers declare the ``fit`` resource
            (the scheduler then limits fits per worker), else ``None``.
        slots: fits the cluster runs at once, as far as the scheduler knows.
    """

    env: WorkerEnv
    resources: dict[str, int] | None
    slots: int


def _workers(client: Any) -> dict[str, dict[str, Any]]:
    try:
        return client.scheduler_info(n_workers=-1)["workers"]  # newer versions list 5 workers by default
    except TypeError:  # versions without n_workers list them all
        return client.scheduler_info()["workers"]


def layout(client: Any, threads: int | None = None) -> Layout:
    """Read the cluster's workers from the scheduler (cheap, no task)."""
    workers = _workers(client)
    hosts = Counter(w["host"] for w in workers.values())
    declared = [float(w.get("resources", {}).get(FIT_RESOURCE, 0)) for w in workers.values()]
    use = any(declared)
    slots = int(sum(declared)) if use else sum(int(w.get("nthreads", 1)) for w in workers.values())
    return Layout(WorkerEnv(threads, dict(hosts)), {FIT_RESOURCE: 1} if use else None, max(1, slots))


def check_workers(client: Any, wait: float = WORKER_WAIT_SECONDS) -> dict[str, dict[str, Any]]:
    """Wait for a first worker, then check that every worker runs this
    version of the codec; returns :func:`worker_info` of each worker.

    Raises:
        AniError: no worker joined in time, or a worker cannot import the
            codec or runs another version of it.
    """
    import core

    try:
        client.wait_for_workers(1, timeout=wait)
    except TimeoutError:
        raise AniError(f"no Dask worker joined the scheduler within {wait:g} s") from None
    try:
        answers = client.run(worker_info, on_error="return")
    except Exception as exc:  # the function itself could not be sent
        answers = {"(all)": exc}
    broken = [exc for exc in answers.values() if isinstance(exc, ImportError)]
    if broken:
        raise AniError(f"the Dask workers cannot run the codec ({error_text(broken[0])}); "
                       f"install ani-codec {core.__version__} on every worker") from None
    # a worker that died meanwhile answers with another error: the scheduler replaces it
    infos = {addr: info for addr, info in answers.items() if isinstance(info, dict)}
    wrong = sorted(f"{addr} has {info['version']}" for addr, info in infos.items()
                   if info["version"] != core.__version__)
    if wrong:
        raise AniError(f"Dask workers run another ani-codec version than this {core.__version__}: "
                       f"{'; '.join(wrong)}")
    return infos


def check_shared_fs(client: Any, out_dir: str | os.PathLike) -> None:
    """Check that every worker sees ``out_dir`` at the same absolute path, by a
    hidden probe file written here and looked for on the workers.

    Raises:
        AniError: a worker does not see it (its file system is another one).
    """
    out = Path(os.path.abspath(out_dir))
    out.mkdir(parents=True, exist_ok=True)
    probe = out / f".ani-probe-{uuid.uuid4().hex}"
    probe.write_bytes(b"")
    try:
        seen = client.run(os.path.exists, str(probe))
    finally:
        probe.unlink(missing_ok=True)
    blind = sorted(addr for addr, ok in seen.items() if not ok)
    if blind:
        raise AniError(f"shared file system: {len(blind)} worker(s) ({', '.join(blind[:3])}) do not see {out}; "
                       "leave out --shared-fs to send inputs and outputs through this process")


def _options(to: Target, options: EncodeOptions | None, encode_kwargs: dict[str, Any]) -> EncodeOptions | None:
    check_target(to)
    if options is not None and encode_kwargs:
        raise AniError("give either options or encode keywords, not both")
    if to != "ani":
        if encode_kwargs:
            EncodeOptions.from_kwargs(encode_kwargs)  # still reject unknown names
        return None
    return options if options is not None else EncodeOptions.from_kwargs(encode_kwargs)


def _key() -> str:
    return f"ani-convert-{uuid.uuid4().hex}"


def submit(
    client: Any,
    items: Sequence[Any],
    *,
    to: Target = "ani",
    options: EncodeOptions | None = None,
    subnet: Any = None,
    output_name: str = "output.png",
    shared_fs: bool = False,
    threads: int | None = None,
    **encode_kwargs: Any,
) -> list[Any]:
    """Send items to the cluster of ``client``; one future per item, in order.

    Each future resolves to the bytes of the output file: an ``.ani`` file for
    ``to="ani"``, an image in ``output_name``'s format (PNG by default) for
    ``to="png"``. A bad input makes its future raise the codec's error
    (``future.exception()``); the others go on. Nothing is written.

    Args:
        items: numpy arrays (``to="ani"``; as :func:`core.encode` takes them),
            bytes of image or ``.ani`` files, or paths (read here, or by the
            worker with ``shared_fs=True``).
        options: an :class:`EncodeOptions`, or give them as keywords.
        threads: torch threads per fit (default: the worker's cores divided
            by the workers on its host and by its fit slots).

    Use ``client.gather(futures)`` for the bytes, ``distributed.as_completed``
    to take them as they finish.
    """
    options = _options(to, options, encode_kwargs)
    lay = layout(client, threads)
    futures = []
    for i, item in enumerate(items):
        if isinstance(item, (str, os.PathLike)):
            name = str(item)
            if not shared_fs:
                with open(item, "rb") as fh:
                    item = fh.read()
            else:
                item = os.path.abspath(item)
        else:
            name = f"<item {i}>"
        futures.append(client.submit(convert_item, item, to, options, subnet, output_name, name, lay.env,
                                     key=_key(), resources=lay.resources))
    return futures


def convert(
    inputs: Sequence[str | os.PathLike] | str | os.PathLike,
    out_dir: str | os.PathLike,
    to: Target = "ani",
    *,
    scheduler: str | None = None,
    client: Any = None,
    jobs: int | None = None,
    shared_fs: bool = False,
    threads: int | None = None,
    force: bool = False,
    options: EncodeOptions | None = None,
    subnet: Any = None,
    on_result: Callable[[FileResult], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
    max_in_flight: int | None = None,
    **encode_kwargs: Any,
) -> ConvertSummary:
    """:func:`core.convert.convert` on a Dask cluster: same inputs, outputs,
    summary and guarantees.

    Args:
        scheduler: address, scheduler file or ``"local"`` (see :func:`connect`).
        client: an open ``distributed.Client`` instead of ``scheduler``.
        jobs: worker processes of a ``"local"`` cluster (default one per core).
        shared_fs: workers read and write the files themselves (see the module).
        threads: torch threads per fit (see :func:`submit`).
        max_in_flight: tasks sent ahead of the results (default twice the
            cluster's fit slots, at least 8), which bounds the input bytes held
            here and on the scheduler.
        on_result, on_plan, force, options, subnet: as in :func:`core.convert.convert`.

    Raises:
        AniOptionError: an invalid option (before any file is touched).
        AniError: Dask is missing, the cluster cannot be reached, its workers
            cannot run this codec, or (``shared_fs``) do not see ``out_dir``.
        KeyboardInterrupt: passed on after the batch's queued tasks are cancelled.
    """
    require_distributed()
    if client is None and not scheduler:
        raise AniOptionError("invalid option scheduler=None: give an address, a scheduler file, 'local' or a client")
    if jobs is not None and (client is not None or scheduler != LOCAL):
        raise AniOptionError("invalid option jobs: a remote cluster's size is set by its workers; "
                             "jobs applies to scheduler='local' only")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise AniOptionError(f"invalid option jobs={jobs!r}: allowed an integer >= 1")
    check_target(to)
    plan = plan_batch(inputs, out_dir, to, force=force, options=options, encode_kwargs=encode_kwargs,
                      on_plan=on_plan, on_result=on_result)
    if not plan.pending:
        return plan.summary
    with connect(scheduler, client=client, jobs=jobs) as c:
        check_workers(c)
        if shared_fs:
            check_shared_fs(c, out_dir)
        _run(c, plan.pending, plan.done, to, plan.options, subnet, force, shared_fs, threads, max_in_flight)
    return plan.summary


def _run(client: Any, pending: list[Task], done: Callable[[FileResult], None], to: Target,
         options: EncodeOptions | None, subnet: Any, force: bool, shared_fs: bool, threads: int | None,
         max_in_flight: int | None) -> None:
    """Keep up to a window of tasks on the cluster and report each result as it
    arrives; in the default mode write each output here."""
    from distributed import as_completed

    lay = layout(client, threads)
    state = {"slots": lay.slots, "at": time.monotonic()}

    def window() -> int:
        if max_in_flight:
            return max(1, int(max_in_flight))
        now = time.monotonic()
        if now - state["at"] > 2.0:  # the cluster may grow or shrink
            state["slots"], state["at"] = layout(client, threads).slots, now
        return max(8, 2 * state["slots"])

    todo = iter(pending)
    inflight: dict[Any, Task] = {}
    finished = as_completed(loop=client.loop)

    def send(task: Task) -> Any | None:
        if shared_fs:
            absolute = Task(Path(os.path.abspath(task.source)), Path(os.path.abspath(task.output)))
            return client.submit(convert_in_place, absolute, to, options, subnet, force, lay.env,
                                 key=_key(), resources=lay.resources)
        try:
            with open(task.source, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            done(FileResult(task.source, task.output, "failed", error_text(exc, task.source)))
            return None
        return client.submit(convert_reported, data, to, options, subnet, task.output.name, str(task.source),
                             lay.env, key=_key(), resources=lay.resources)

    def refill() -> None:
        while len(inflight) < window():
            task = next(todo, None)
            if task is None:
                return
            future = send(task)
            if future is not None:
                inflight[future] = task
                finished.add(future)

    try:
        refill()
        while inflight:
            future = next(finished)
            task = inflight.pop(future)
            done(_outcome(future, task, shared_fs, force))
            refill()
    except BaseException:
        client.cancel(list(inflight))
        raise


def _outcome(future: Any, task: Task, shared_fs: bool, force: bool) -> FileResult:
    """The :class:`FileResult` of a finished future; in the default mode the
    output is written here, atomically."""
    from distributed.scheduler import KilledWorker

    def failed(message: str, seconds: float = 0.0) -> FileResult:
        return FileResult(task.source, task.output, "failed", message, seconds)

    try:
        value = future.result()
    except KilledWorker:
        return failed("a worker process died each time it converted this input (out of memory?); "
                      "see the workers' logs")
    except Exception as exc:  # cancelled, or the task could not run on the worker
        return failed(error_text(exc, task.source) or type(exc).__name__)
    finally:
        future.release()
    if shared_fs:
        return FileResult(task.source, task.output, value.status, value.error, value.seconds)
    status, payload, seconds = value
    if status != "converted":
        return failed(payload, seconds)
    try:
        write_atomic(task.output, payload, overwrite=force)
    except OutputExistsError:  # finished by a concurrent run meanwhile
        return FileResult(task.source, task.output, "skipped", None, seconds)
    except OSError as exc:
        return failed(error_text(exc), seconds)
    return FileResult(task.source, task.output, "converted", None, seconds)
