"""Keeping freed memory in the process during fits (glibc's malloc), for the
processes ANI runs itself.

A fit allocates and frees the same large tensors (tens of MB for a Kodak
image) every step. With glibc's defaults the largest come from ``mmap`` and go
back to the kernel when freed, and the top of the heap is trimmed, so the next
step faults them in again page by page: one 1-thread fit of kodim01 at
quality 10 took 1.3 million minor page faults and 2.25 s of system time (issue
8, sixteenth round). :func:`retain_freed_memory` turns both off: large blocks
come from the heap and freed memory stays there for the next step.

This changes the allocator of the whole process for the rest of its life
(glibc also stops adapting its thresholds once they are set), and the
process's resident memory no longer falls after a fit. So the library never
calls it on import or from the Pillow / imageio plugins, where the process is
the host application's: the ``ani`` command, the batch converter's worker
processes and the benchmarks do, and a local Dask cluster's workers start
with the same settings in ``GLIBC_TUNABLES`` (:func:`child_tunables`). A host
application can call it, or start Python with
``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647``
(:data:`TUNABLES`), which has the same effect. ``ANI_KEEP_HEAP=0`` in the
environment turns it off for ANI's own processes.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

#: glibc's ``mallopt`` parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
#: the trim threshold set: the largest ``mallopt`` takes (its value is an int);
#: the heap's top is handed back only when more than this (2 GiB) is free there
TRIM_THRESHOLD = 2**31 - 1
#: the environment variable that turns :func:`retain_freed_memory` off ("0")
ENV = "ANI_KEEP_HEAP"
#: the same settings as glibc reads them from ``GLIBC_TUNABLES`` when a process starts
TUNABLES = f"glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold={TRIM_THRESHOLD}"

_applied = False


@functools.lru_cache(maxsize=1)
def glibc():
    """This process's C library if it is glibc (Linux), else ``None``; loaded once."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        # gnu_get_libc_version exists in glibc only: musl has a mallopt that does nothing
        libc.gnu_get_libc_version
    except (OSError, AttributeError):
        return None
    return libc


def _mallopt():
    """glibc's ``mallopt``, or ``None`` on other C libraries and systems."""
    libc = glibc()
    if libc is None:
        return None
    fn = libc.mallopt
    fn.argtypes = [ctypes.c_int, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def _switched_off(environ) -> bool:
    return environ.get(ENV, "1").strip() == "0"


def retain_freed_memory() -> bool:
    """Keep freed memory in this process's heap from now on (see the module's
    docstring); whether it is in effect. Does nothing, and returns ``False``,
    where the C library is not glibc or ``ANI_KEEP_HEAP`` is ``0``. Safe to
    call more than once."""
    global _applied
    if _applied:
        return True
    if _switched_off(os.environ):
        return False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    # mallopt returns 1 on success
    _applied = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return _applied


def child_tunables(environ=None) -> str | None:
    """``GLIBC_TUNABLES`` for a process that ANI starts but does not run itself
    from its first line (a local Dask cluster's workers): ``environ``'s own
    tunables (default ``os.environ``) followed by :data:`TUNABLES`; ``None``
    where :func:`retain_freed_memory` would do nothing."""
    environ = os.environ if environ is None else environ
    if _switched_off(environ) or _mallopt() is None:
        return None
    own = environ.get("GLIBC_TUNABLES", "").strip(":")
    return f"{own}:{TUNABLES}" if own else TUNABLES


def retained() -> bool:
    """Whether :func:`retain_freed_memory` is in effect in this process."""
    return _applied
