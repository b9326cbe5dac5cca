"""Running many cases: a worker process runs them and reports one JSON line
per case; this process watches it. A case that takes longer than the bound is
a *hang*: the worker is killed and a fresh one goes on with the next case. A
worker that dies is a *crash*, recorded the same way.

The worker runs with an address-space limit (``RLIMIT_AS``), so an
allocation beyond it fails there (a failure of the case) instead of taking
the machine's memory, and with ``tracemalloc`` on, so each case's Python and
numpy allocations are measured against :func:`tools.fuzz.case.memory_budget`.
"""
from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
NO_STOP = 2**62


# --------------------------------------------------------------------------- the worker


def worker_main(seeds_dir: str, run_seed: int, start: int, stop: int, memory_limit_mb: int) -> int:
    """Run cases ``start..stop-1`` and write one JSON line per case to stdout."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever else prints goes to stderr, never into the protocol
    sys.stdout = sys.stderr
    if memory_limit_mb > 0:
        import resource

        limit = memory_limit_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import tracemalloc

    import torch

    from . import seeds as seedfiles
    from .case import load_seeds, run_case

    torch.set_num_threads(1)  # this is an application: one case at a time, one core
    seeds, pixels = load_seeds(seedfiles.load(Path(seeds_dir)))  # also imports and warms up the decoder
    tracemalloc.start()
    proto.write(json.dumps({"ready": os.getpid()}) + "\n")
    for index in range(start, stop):
        record, _, _ = run_case(seeds, pixels, run_seed, index)
        proto.write(json.dumps(record.to_dict()) + "\n")
    proto.write(json.dumps({"done": True, "maxrss_kb": _peak_rss_kb()}) + "\n")
    return 0


def _peak_rss_kb() -> int:
    """This process's peak resident memory (VmHWM; getrusage's ru_maxrss would
    include the parent's peak, which Linux carries across fork and exec)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def worker_command(seeds_dir: Path, run_seed: int, start: int, stop: int, memory_limit_mb: int) -> list[str]:
    return [sys.executable, "-m", "tools.fuzz", "--worker", "--seeds-dir", str(seeds_dir), "--seed", str(run_seed),
            "--start", str(start), "--stop", str(stop), "--memory-limit", str(memory_limit_mb)]


# --------------------------------------------------------------------------- the watchdog


@dataclass
class Summary:
    """Everything a run found; :mod:`tools.fuzz.report` writes it out."""

    run_seed: int
    case_timeout: float
    memory_limit_mb: int
    cases: int = 0
    seconds: float = 0.0
    outcomes: dict = field(default_factory=lambda: defaultdict(Counter))  # mutator -> outcome -> n
    kinds: dict = field(default_factory=lambda: defaultdict(Counter))  # kind -> outcome -> n
    errors: Counter = field(default_factory=Counter)  # documented error class -> n
    failures: list = field(default_factory=list)  # failed records (dicts), the first MAX_KEPT
    n_failures: int = 0
    ms: list = field(default_factory=list)
    slowest: dict | None = None
    max_peak: int = 0
    max_peak_ratio: float = 0.0
    max_ratio_case: dict | None = None
    workers: int = 0
    maxrss_kb: int = 0

    MAX_KEPT = 200

    def add(self, rec: dict) -> None:
        self.cases += 1
        self.outcomes[rec["mutator"]][rec["outcome"]] += 1
        self.kinds[rec["kind"]][rec["outcome"]] += 1
        if rec["outcome"] == "refused" and rec.get("error"):
            self.errors[rec["error"]] += 1
        if not rec["ok"]:
            self.n_failures += 1
            if len(self.failures) < self.MAX_KEPT:
                self.failures.append(rec)
        if rec["ms"] is not None:
            self.ms.append(rec["ms"])
            if self.slowest is None or rec["ms"] > self.slowest["ms"]:
                self.slowest = rec
        self.max_peak = max(self.max_peak, rec.get("peak") or 0)
        if rec.get("budget"):
            ratio = (rec.get("peak") or 0) / rec["budget"]
            if ratio > self.max_peak_ratio:
                self.max_peak_ratio, self.max_ratio_case = ratio, rec

    @property
    def ok(self) -> bool:
        return self.n_failures == 0


def _failure(index: int, outcome: str, reason: str, ms: float | None, mutated: tuple | None) -> dict:
    mutator, kind, seed, size = mutated if mutated else ("?", "?", "?", 0)
    return {"index": index, "mutator": mutator, "kind": kind, "seed": seed, "outcome": outcome, "error": None,
            "ok": False, "reason": reason, "ms": ms, "peak": 0, "budget": 0, "size": size}


class _Lines:
    """Lines from a pipe, with a timeout."""

    def __init__(self, stream) -> None:
        self.fd = stream.fileno()
        self.buf = b""
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.fd, selectors.EVENT_READ)
        self.eof = False

    def next(self, timeout: float) -> str | None:
        """The next line; ``None`` on timeout; ``""`` at end of stream."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            if self.eof:
                return ""
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                return None
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                self.eof = True
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def close(self) -> None:
        self.sel.close()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()


def run(
    *,
    cases: int | None = None,
    seconds: float | None = None,
    run_seed: int = 0,
    seeds_dir: Path,
    case_timeout: float = 10.0,
    startup_timeout: float = 300.0,
    memory_limit_mb: int = 4096,
    save_dir: Path | None = None,
    on_record: Callable[[dict], None] | None = None,
    command: Callable[[int, int], list[str]] | None = None,
) -> Summary:
    """Run cases ``0..cases-1`` (or until ``seconds`` have passed) in worker
    processes; returns the :class:`Summary`.

    Args:
        case_timeout: the bound of one case, in seconds: a case still running
            then is recorded as a hang and its worker killed.
        save_dir: where the bytes of each failing case are written.
        command: ``command(start, stop)`` -> the worker's argv (tests use it).
    """
    if cases is None and seconds is None:
        raise ValueError("give cases, seconds or both")
    from . import seeds as seedfiles
    from .case import mutate

    files = seedfiles.load(seeds_dir)
    seeds = None  # loaded on the first failure, to save the failing bytes
    summary = Summary(run_seed, case_timeout, memory_limit_mb)
    command = command or (lambda a, b: worker_command(seeds_dir, run_seed, a, b, memory_limit_mb))
    deadline = None if seconds is None else time.monotonic() + seconds
    start_time = time.monotonic()
    index = 0
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)

    def describe(i: int) -> tuple:
        nonlocal seeds
        try:
            if seeds is None:
                from .layout import split
                from .mutators import MUTATORS, Seed

                seeds = [Seed(n, d, split(d)) for n, d in sorted(files.items())]
            name, seed, data = mutate(seeds, run_seed, i)
        except Exception:  # the description is a courtesy; the failure stands anyway
            return None
        from .mutators import MUTATORS

        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            (save_dir / f"case-{i}-{name}.ani").write_bytes(data)
        return name, MUTATORS[name].kind, seed.name, len(data)

    def record(rec: dict) -> None:
        summary.add(rec)
        if not rec["ok"] and save_dir is not None and rec["mutator"] != "?":
            describe(rec["index"])
        if on_record:
            on_record(rec)

    def more() -> bool:
        return (cases is None or index < cases) and (deadline is None or time.monotonic() < deadline)

    while more():
        stop = cases if cases is not None else NO_STOP
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(command(index, stop), stdout=subprocess.PIPE, stderr=err, cwd=str(ROOT), env=env)
            summary.workers += 1
            lines = _Lines(proc.stdout)
            try:
                ready = lines.next(startup_timeout)
                if not ready or "ready" not in json.loads(ready):
                    _stop(proc)
                    err.seek(0)
                    raise RuntimeError(f"the fuzz worker did not start: {err.read().decode(errors='replace')[-2000:]}")
                while more():
                    t0 = time.monotonic()
                    wait = case_timeout if deadline is None else max(0.0, min(case_timeout, deadline - t0))
                    line = lines.next(wait)
                    if line is None:
                        _stop(proc)
                        if time.monotonic() - t0 < case_timeout:
                            break  # the run's time is up; the case in flight was within the bound
                        record(_failure(index, "hang", f"no result within {case_timeout:g} s", None, describe(index)))
                        index += 1
                        break
                    if line == "":  # the worker ended
                        rc = proc.wait()
                        if index < stop:
                            err.seek(0)
                            tail = err.read().decode(errors="replace")[-300:].strip().replace("\n", " | ")
                            record(_failure(index, "crash", f"worker exited with status {rc}: {tail}", None,
                                            describe(index)))
                            index += 1
                        break
                    msg = json.loads(line)
                    if "done" in msg:
                        summary.maxrss_kb = max(summary.maxrss_kb, msg["maxrss_kb"])
                        continue
                    record(msg)
                    index = msg["index"] + 1
                if index >= stop:  # all cases run: collect the worker's closing line
                    line = lines.next(30)
                    while line:
                        msg = json.loads(line)
                        if "done" in msg:
                            summary.maxrss_kb = max(summary.maxrss_kb, msg["maxrss_kb"])
                        line = lines.next(30)
            finally:
                lines.close()
                _stop(proc)
    summary.seconds = time.monotonic() - start_time
    return summary
