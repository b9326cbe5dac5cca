"""One fuzz case: mutate a seed, run ``read_header`` and ``decode`` on the
result, and judge the outcome against :data:`tools.fuzz.mutators.ALLOWED`.

A case is fully determined by the run's seed, its index and the seed files,
so any case can be replayed (``python -m tools.fuzz --case I``).
"""
from __future__ import annotations

import time
import tracemalloc
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from . import layout as L
from .mutators import ALLOWED, MUTATORS, Seed

#: memory budget of one case (bytes traced by tracemalloc: Python and numpy
#: allocations), linear in what the *checked* header declares: a fixed part
#: (the coder's cached tables: at most 4.2 MB for the widest alphabet), per
#: byte of input, per latent, per network parameter and per output value.
BUDGET_FIXED = 8 << 20
BUDGET_PER_BYTE = 64
BUDGET_PER_LATENT = 256
BUDGET_PER_PARAM = 64
BUDGET_PER_VALUE = 16

Decoder = Callable[[bytes], np.ndarray]


@dataclass
class Record:
    """What one case did. ``ok`` is False for a failure, with ``reason``."""

    index: int
    mutator: str
    kind: str
    seed: str
    outcome: str  # refused, decoded-same, decoded-other, or a failure: error, hang, crash
    error: str | None  # class name of the error raised, if any
    ok: bool
    reason: str | None
    ms: float
    peak: int  # bytes traced at the peak of the case (0 when not traced)
    budget: int
    size: int  # bytes of the mutated file

    def to_dict(self) -> dict:
        return asdict(self)


def memory_budget(header, n_bytes: int) -> int:
    budget = BUDGET_FIXED + BUDGET_PER_BYTE * n_bytes
    if header is not None:
        budget += (BUDGET_PER_LATENT * header.n_latents + BUDGET_PER_PARAM * header.n_params
                   + BUDGET_PER_VALUE * header.width * header.height * header.channels)
    return budget


def mutate(seeds: list[Seed], run_seed: int, index: int) -> tuple[str, Seed, bytes]:
    """The mutated file of case ``index``: (mutator name, seed, bytes)."""
    rng = np.random.default_rng([run_seed, index])
    names = sorted(MUTATORS)
    name = names[int(rng.integers(len(names)))]
    seed = seeds[int(rng.integers(len(seeds)))]
    return name, seed, MUTATORS[name].fn(rng, seed, seeds)


def run_case(seeds: list[Seed], pixels: dict[str, np.ndarray], run_seed: int, index: int,
             read_header: Callable | None = None, decode: Decoder | None = None,
             trace: bool = True) -> tuple[Record, bytes, BaseException | None]:
    """Run case ``index``; returns its record, the mutated bytes and the
    unexpected exception of a failure (for a traceback), if any."""
    name, seed, data = mutate(seeds, run_seed, index)
    return judge(name, seed, data, pixels[seed.name], index, read_header, decode, trace)


def judge(name: str, seed: Seed, data: bytes, seed_pixels: np.ndarray, index: int = -1,
          read_header: Callable | None = None, decode: Decoder | None = None,
          trace: bool = True) -> tuple[Record, bytes, BaseException | None]:
    """Run ``read_header`` and ``decode`` on ``data`` (a mutation of ``seed``
    by mutator ``name``) and judge the outcome."""
    import core
    from core.errors import AniFormatError

    read_header = read_header or core.read_header
    decode = decode or core.decode
    kind = MUTATORS[name].kind
    tracing = trace and tracemalloc.is_tracing()
    if tracing:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    header = header_error = pixels = decode_error = unexpected = None
    try:
        header = read_header(data)
    except AniFormatError as exc:
        header_error = exc
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - anything else is what the fuzzer looks for
        unexpected = exc
    if unexpected is None:
        try:
            pixels = decode(data)
        except AniFormatError as exc:
            decode_error = exc
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001
            unexpected = exc
    ms = (time.perf_counter() - start) * 1e3
    peak = tracemalloc.get_traced_memory()[1] - base if tracing else 0
    budget = memory_budget(header, len(data))

    def record(outcome: str, reason: str | None = None, error: BaseException | None = None) -> Record:
        err = error or decode_error or header_error
        return Record(index, name, kind, seed.name, outcome, type(err).__name__ if err else None, reason is None,
                      reason, round(ms, 3), int(peak), int(budget), len(data))

    if unexpected is not None:
        where = "read_header" if header is None and header_error is None else "decode"
        return record("error", f"{where} raised {type(unexpected).__name__}: {unexpected}", unexpected), data, unexpected
    if header_error is not None and decode_error is None:
        return record("error", f"decode returned pixels for a file read_header refuses ({header_error})"), data, None
    if header_error is not None and type(decode_error) is not type(header_error):
        return record("error", f"read_header raised {type(header_error).__name__}, decode "
                               f"{type(decode_error).__name__}"), data, None
    if decode_error is not None:
        outcome = "refused"
    else:
        expected = (header.height, header.width) + ((header.channels,) if header.channels > 1 else ())
        if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.shape != expected:
            got = (getattr(pixels, "shape", None), getattr(pixels, "dtype", None))
            return record("error", f"decode returned {got}, the header declares {expected} uint8"), data, None
        outcome = "decoded-same" if np.array_equal(pixels, seed_pixels) else "decoded-other"
    if peak > budget:
        return record(outcome, f"{peak} bytes allocated, budget {budget} for what the header declares"), data, None
    if data == seed.data and outcome != "decoded-same":
        return record(outcome, "the unchanged seed did not decode to its own pixels"), data, None
    if outcome not in ALLOWED[kind]:
        return record(outcome, f"outcome {outcome} is not allowed for a {kind} mutation"), data, None
    return record(outcome), data, None


def load_seeds(files: dict[str, bytes]) -> tuple[list[Seed], dict[str, np.ndarray]]:
    """Seeds from ``{name: bytes}`` of valid files, with their decoded pixels."""
    import core

    seeds = [Seed(name, data, L.split(data)) for name, data in sorted(files.items())]
    return seeds, {s.name: core.decode(s.data) for s in seeds}
