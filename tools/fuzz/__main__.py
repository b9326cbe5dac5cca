"""Command line of the fuzzing harness: ``python -m tools.fuzz --help``."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import traceback
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.fuzz", description=__doc__)
    p.add_argument("--cases", type=int, help="number of cases to run")
    p.add_argument("--seconds", type=float, help="run for this long (with --cases: whichever ends first)")
    p.add_argument("--seed", type=int, default=0, help="run seed: the same seed and seed files give the same cases")
    p.add_argument("--case-timeout", type=float, default=10.0, help="bound of one case, seconds (default 10)")
    p.add_argument("--memory-limit", type=int, default=4096, help="worker address-space limit, MiB (0: none)")
    p.add_argument("--seeds-dir", type=Path, help="seed .ani files to use; made (and kept) there if empty")
    p.add_argument("--save-dir", type=Path, help="write the bytes of every failing case here")
    p.add_argument("--report", type=Path, help="write the Markdown summary here")
    p.add_argument("--json", type=Path, help="write the failing records as JSON here")
    p.add_argument("--case", type=int, help="replay one case in this process, with a traceback")
    p.add_argument("--save", type=Path, help="with --case: write the mutated bytes here")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--stop", type=int, default=0, help=argparse.SUPPRESS)
    return p


def _seed_files(folder: Path | None) -> tuple[dict[str, bytes], Path]:
    from . import seeds as seedfiles

    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="ani-fuzz-seeds-"))
    if not any(folder.glob("*.ani")) if folder.exists() else True:
        import torch

        torch.set_num_threads(1)  # the same seed files on a machine, whatever its core count
        seedfiles.save(seedfiles.make_seeds(), folder)
    return seedfiles.load(folder), folder


def _replay(args) -> int:
    from .case import load_seeds, run_case

    files, _ = _seed_files(args.seeds_dir)
    seeds, pixels = load_seeds(files)
    record, data, exc = run_case(seeds, pixels, args.seed, args.case, trace=False)
    if args.save:
        args.save.write_bytes(data)
    print(json.dumps(record.to_dict(), indent=2))
    if exc is not None:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    return 0 if record.ok else 1


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.worker:
        from .runner import worker_main

        return worker_main(str(args.seeds_dir), args.seed, args.start, args.stop, args.memory_limit)
    if args.case is not None:
        return _replay(args)
    if args.cases is None and args.seconds is None:
        _parser().error("give --cases N, --seconds S, or --case I")

    from . import report, runner
    from . import seeds as seedfiles

    files, folder = _seed_files(args.seeds_dir)
    done = [0]

    def progress(rec: dict) -> None:
        done[0] += 1
        if not rec["ok"]:
            print(f"FAIL case {rec['index']} {rec['mutator']} {rec['seed']}: {rec['outcome']}: {rec['reason']}",
                  file=sys.stderr)
        if not args.quiet and done[0] % 5000 == 0:
            print(f"{done[0]} cases", file=sys.stderr)

    summary = runner.run(cases=args.cases, seconds=args.seconds, run_seed=args.seed, seeds_dir=folder,
                         case_timeout=args.case_timeout, memory_limit_mb=args.memory_limit,
                         save_dir=args.save_dir, on_record=progress)
    command = "python -m tools.fuzz " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    text = report.markdown(summary, command, files, seedfiles.fingerprint(files))
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(summary.failures, indent=2))
    print(f"{summary.cases} cases in {summary.seconds:.0f} s, {summary.n_failures} failures "
          f"(seed files in {folder})", file=sys.stderr)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
