"""Wall time and peak memory of one call, and a description of the machine.

Peak memory is the process's peak resident set size (RSS) during the call
minus its RSS just before it, in MiB: the extra memory the operation touches,
whatever allocates it (Python, numpy, torch's CPU allocator, or a C library
such as libavif or OpenJPEG that Python's ``tracemalloc`` cannot see; which is
why RSS is used rather than ``tracemalloc``). Before the call, freed heap
memory is handed back to the system (glibc's ``malloc_trim(0)``, after
``gc.collect()`` when asked: it takes a quarter of a second once torch is
loaded, which matters for calls of a millisecond but not for a fit) so that earlier calls do not hide this one's needs, and on
Linux the kernel's peak counter is reset (``echo 5 > /proc/self/clear_refs``,
then ``VmHWM`` of ``/proc/self/status`` is exact). Where the counter cannot be
reset, a thread samples ``/proc/self/statm`` every millisecond (a short spike
may be missed); without ``/proc`` the figure is NaN. Pages mapped before the
call and reused by it are not counted, so the figure is a lower bound on what
a fresh process would need.
"""
from __future__ import annotations

import gc
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any, Callable

from core.heap import glibc

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATM = Path("/proc/self/statm")


#: glibc, for ``malloc_trim`` (None elsewhere: other C libraries have no such call)
_LIBC = glibc()


def _status_kb(field: str) -> float:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    raise KeyError(field)


def _rss_kb() -> float:
    return int(_STATM.read_text().split()[1]) * _PAGE / 1024


def _can_reset_peak() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        _status_kb("VmHWM")
        return True
    except (OSError, KeyError):
        return False


_RESET = _can_reset_peak()
_HAS_PROC = _STATM.exists()


def release_memory(collect: bool = True) -> None:
    """Return free heap pages to the system (glibc), after collecting garbage if ``collect``."""
    if collect:
        gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


class _Sampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = _rss_kb()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.001):
            self.peak = max(self.peak, _rss_kb())


def measure(fn: Callable[[], Any], collect: bool = True) -> tuple[Any, float, float]:
    """Call ``fn()``; return ``(result, seconds, peak_mib)`` (see the module doc)."""
    release_memory(collect)
    sampler = None
    if _RESET:
        _CLEAR_REFS.write_text("5")
        before = _status_kb("VmRSS")
    elif _HAS_PROC:
        sampler = _Sampler()
        before = sampler.peak
        sampler.start()
    t0 = time.perf_counter()
    try:
        result = fn()
    finally:
        seconds = time.perf_counter() - t0
        if sampler is not None:
            sampler.done.set()
            sampler.join()
    if _RESET:
        peak = _status_kb("VmHWM")
    elif sampler is not None:
        peak = max(sampler.peak, _rss_kb())
    else:
        return result, seconds, float("nan")
    return result, seconds, max(0.0, peak - before) / 1024


def timed(fn: Callable[[], Any], repeats: int, collect: bool = True) -> tuple[Any, float, float]:
    """``fn()`` run ``repeats`` times: the first call's result and peak memory,
    and the median wall time over all calls."""
    result, first, peak = measure(fn, collect)
    times = [first]
    for _ in range(repeats - 1):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    n = len(times)
    median = times[n // 2] if n % 2 else (times[n // 2 - 1] + times[n // 2]) / 2
    return result, median, peak


def peak_method() -> str:
    if _RESET:
        return "VmHWM after resetting it (clear_refs), minus VmRSS before"
    if _HAS_PROC:
        return "RSS sampled every 1 ms, peak minus RSS before"
    return "unavailable"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """What the timings depend on: CPU, core count, load, library versions."""
    import numpy
    import PIL
    from PIL import features

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "Pillow": PIL.__version__,
        "peak_memory": peak_method(),
    }
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    try:
        mem = [l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")]
        info["memory_gib"] = round(int(mem[0].split()[1]) / 2**20, 1)
    except (OSError, IndexError):
        pass
    for feat in ("libjpeg_turbo", "webp", "jpg_2000", "avif"):
        try:
            info[f"lib_{feat}"] = features.version(feat)
        except Exception:  # noqa: BLE001 - only a description
            pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.is_available()
    except ImportError:
        pass
    try:
        import imagecodecs

        info["imagecodecs"] = imagecodecs.__version__
        info["libjxl"] = imagecodecs.jpegxl_version()
    except (ImportError, AttributeError):
        pass
    return info
