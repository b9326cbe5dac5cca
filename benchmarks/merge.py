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
import json
from pathlib import Path

from .kodak import FIELDS, KEY, read_rows, repair_tail


def _runs(csv_path: Path) -> dict:
    path = csv_path.with_suffix(".runs.json")
    return json.loads(path.read_text()) if path.exists() else {}


def merge(target: Path, sources: list[Path], say=print) -> int:
    """Append the rows of ``sources`` (CSV paths) missing from ``target``; return how many."""
    target = target.with_suffix(".csv")
    runs = _runs(target)
    added = 0
    with open(target, "a", newline="") as fh:
        from .kodak import _lock

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
            for run, info in _runs(source).items():
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
    runs_path = target.with_suffix(".runs.json")
    tmp = runs_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")
    tmp.replace(runs_path)
    return added
