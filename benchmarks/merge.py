"""Merging the rows of other Kodak benchmark runs into one CSV.

Two runs on the halves of the images (each with ``--threads 1`` and its own
``--out``) use both cores of a 2-core machine; ``python -m benchmarks.kodak
--out A --merge B`` then adds B's rows to A's CSV and B's run descriptions to
A's ``.runs.json``, and the summary covers both. A row whose key (codec,
setting, image, options) A already has is left out: A's measurement stays.
A run id of B that A already uses for another run is renamed (``<id>+1``, ...)
in the rows and the descriptions alike.
"""
from __future__ import annotations

import csv
from pathlib import Path

from .kodak import FIELDS, KEY, _lock, read_rows, read_runs, repair_tail, write_runs


def merge(target: Path, sources: list[Path], say=print) -> int:
    """Append the rows of ``sources`` (CSV paths) missing from ``target``; return how many."""
    target = target.with_suffix(".csv")
    runs = read_runs(target.with_suffix(".runs.json"))
    added = 0
    with open(target, "a", newline="") as fh:
        _lock(fh, target)
        repair_tail(target)
        have = {tuple(r[k] for k in KEY) for r in read_rows(target)}
        writer = csv.DictWriter(fh, FIELDS)
        if target.stat().st_size == 0:
            writer.writeheader()
        for source in sources:
            source = source.with_suffix(".csv")
            if source.resolve() == target.resolve():
                raise SystemExit(f"--merge {source}: that is the --out CSV itself")
            if not source.exists():
                raise SystemExit(f"--merge {source}: no such CSV")
            rename = {}
            for run, info in read_runs(source.with_suffix(".runs.json")).items():
                new, k = run, 0
                while new in runs and runs[new] != info:
                    k += 1
                    new = f"{run}+{k}"
                rename[run] = new
                runs[new] = info
            n = 0
            for row in read_rows(source):
                key = tuple(row[k] for k in KEY)
                if key in have:
                    continue
                row["run"] = rename.get(row["run"], row["run"])
                writer.writerow(row)
                have.add(key)
                n += 1
            fh.flush()
            say(f"{source}: {n} rows added" + "".join(f", run {a} recorded as {b}" for a, b in rename.items() if a != b))
            added += n
    write_runs(target.with_suffix(".runs.json"), runs)
    return added
