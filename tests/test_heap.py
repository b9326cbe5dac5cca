"""core.heap: ANI's own processes keep freed memory between a fit's steps;
the library's callers are left as they are. Each check that changes the
allocator runs in a fresh interpreter, never in the test process."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from core import cli, heap

ROOT = Path(__file__).resolve().parents[1]
GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
needs_glibc = pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")

#: allocates (glibc's malloc) and frees a 64 MiB block, above glibc's largest
#: dynamic mmap threshold, ten times, touching every page, and prints the minor
#: page faults of the last nine
FAULTS = """
import ctypes, ctypes.util, resource
from core.heap import retain_freed_memory
print(retain_freed_memory())
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def churn():
    block = libc.malloc(64 << 20)
    ctypes.memset(block, 1, 64 << 20)
    libc.free(block)
churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(9):
    churn()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _python(code: str, **env: str) -> list[str]:
    environ = dict(os.environ)
    environ["PYTHONPATH"] = str(ROOT) + os.pathsep + environ.get("PYTHONPATH", "")
    environ.pop(heap.ENV, None)
    environ.update(env)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@needs_glibc
def test_freed_blocks_stay_in_the_process():
    kept, faults_kept = _python(FAULTS)
    plain, faults_plain = _python(FAULTS, **{heap.ENV: "0"})
    assert (kept, plain) == ("True", "False")
    pages = 9 * (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    # glibc's default: each block is mapped afresh and every page faults in again
    assert int(faults_plain) > 0.9 * pages
    # kept: the freed block is reused, already mapped
    assert int(faults_kept) < 0.05 * pages


@needs_glibc
def test_glibc_tunables_have_the_same_effect():
    """What the README offers applications, and what a local Dask cluster's workers start with."""
    plain, faults = _python(FAULTS, **{heap.ENV: "0", "GLIBC_TUNABLES": heap.TUNABLES})
    assert plain == "False" and int(faults) < 0.05 * 9 * (64 << 20) // os.sysconf("SC_PAGE_SIZE")


@needs_glibc
def test_child_tunables_follow_the_callers_own_and_the_switch():
    assert heap.child_tunables({}) == heap.TUNABLES
    assert heap.child_tunables({"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}) == "glibc.pthread.rseq=0:" + heap.TUNABLES
    assert heap.child_tunables({heap.ENV: "0"}) is None


@needs_glibc
def test_it_is_idempotent_and_reported():
    assert _python("from core import heap; print(heap.retained(), heap.retain_freed_memory(), "
                   "heap.retain_freed_memory(), heap.retained())") == ["False", "True", "True", "True"]


def test_importing_the_library_and_its_plugins_changes_nothing():
    code = ("import core, core.codec, core.grid.fit, pillow_ani, imageio_ani; from core import heap; "
            "print(heap.retained())")
    assert _python(code) == ["False"]


@needs_glibc
def test_batch_workers_keep_freed_memory():
    code = "from core.convert.batch import _worker_init; from core import heap; _worker_init(1); print(heap.retained())"
    assert _python(code) == ["True"]
    assert _python(code, **{heap.ENV: "0"}) == ["False"]


def test_the_console_command_asks_for_it(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(heap, "retain_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.setattr(sys, "argv", ["ani", "--version"])
    assert cli.run() == 0
    assert calls == [1] and capsys.readouterr().out.strip()
    # main(), the function tests and scripts call, leaves the allocator alone
    calls.clear()
    assert cli.main(["--version"]) == 0 and calls == []
