"""The summary of a run as Markdown (what ``benchmarks/results/fuzz.md`` holds)."""
from __future__ import annotations

import platform
import statistics
from datetime import datetime, timezone

from .mutators import ALLOWED, KIND_TEXT, MUTATORS

OUTCOMES = ("refused", "decoded-same", "decoded-other", "error", "hang", "crash")


def _versions() -> str:
    import importlib.metadata as md

    parts = [f"Python {platform.python_version()}"]
    for dist in ("numpy", "torch", "constriction"):
        try:
            parts.append(f"{dist} {md.version(dist)}")
        except md.PackageNotFoundError:
            pass
    return ", ".join(parts)


def _table(rows: dict, first: str) -> list[str]:
    out = [f"| {first} | " + " | ".join(OUTCOMES) + " | total |", "|---" * (len(OUTCOMES) + 2) + "|"]
    for name in sorted(rows):
        counts = rows[name]
        out.append(f"| {name} | " + " | ".join(str(counts.get(o, 0)) for o in OUTCOMES)
                   + f" | {sum(counts.values())} |")
    return out


def markdown(summary, command: str, seeds: dict[str, bytes], fingerprint: str, machine: str | None = None) -> str:
    ms = sorted(summary.ms)
    q = (lambda p: ms[min(len(ms) - 1, int(p * len(ms)))]) if ms else (lambda p: float("nan"))
    rate = summary.cases / summary.seconds if summary.seconds else 0.0
    lines = [
        "# Fuzzing the decoder: results",
        "",
        f"Command: `{command}`",
        "",
        f"Run {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; {machine or platform.platform()}; {_versions()}.",
        "",
        f"**{summary.cases} cases in {summary.seconds:.0f} s ({rate:.0f} cases/s), "
        f"{summary.n_failures} failures.** Run seed {summary.run_seed}; seed files {fingerprint}; "
        f"bound per case {summary.case_timeout:g} s; worker address space limited to {summary.memory_limit_mb} MiB; "
        f"{summary.workers} worker process(es) started.",
        "",
        "Each case mutates one seed file and runs `core.read_header` and `core.decode` on it. A failure is any "
        "exception other than the documented `NotAniError` / `AniFormatError` / `AniLimitError`, a case over "
        "the bound, a worker crash, Python/numpy allocations over the case's budget (linear in the sizes its "
        "checked header declares), pixels from a file whose checksums fail, a wrong output shape, or an outcome "
        "its mutation's kind does not allow (table below; `docs/security.md` explains them).",
        "",
        "## Seed files",
        "",
        "| seed | bytes |",
        "|---|---|",
    ]
    lines += [f"| {name} | {len(data)} |" for name, data in sorted(seeds.items())]
    lines += ["", "## Kinds of mutation and the outcomes they may have", "", "| kind | what | allowed |", "|---|---|---|"]
    lines += [f"| {k} | {KIND_TEXT.get(k, '')} | {', '.join(sorted(v))} |" for k, v in ALLOWED.items()]
    lines += ["", "## Outcomes by kind", ""] + _table(summary.kinds, "kind")
    lines += ["", "## Outcomes by mutator", ""]
    lines += _table({f"{n} ({MUTATORS[n].kind})" if n in MUTATORS else n: c for n, c in summary.outcomes.items()},
                    "mutator")
    lines += ["", "## Errors raised (refused cases)", "", "| error | cases |", "|---|---|"]
    lines += [f"| {name} | {n} |" for name, n in summary.errors.most_common()]
    lines += [
        "",
        "## Time and memory",
        "",
        f"* time per case (read_header + decode, in the worker): median {q(0.5):.2f} ms, 99th percentile "
        f"{q(0.99):.2f} ms, max {ms[-1] if ms else float('nan'):.1f} ms"
        + (f" (case {summary.slowest['index']}, {summary.slowest['mutator']}, {summary.slowest['outcome']})"
           if summary.slowest else "") + (f"; mean {statistics.fmean(ms):.2f} ms" if ms else ""),
        f"* largest traced allocation peak of a case: {summary.max_peak / 2**20:.2f} MiB; largest share of its "
        f"budget: {100 * summary.max_peak_ratio:.1f} %"
        + (f" (case {summary.max_ratio_case['index']}, {summary.max_ratio_case['mutator']})"
           if summary.max_ratio_case else ""),
        f"* largest resident set of a worker: {summary.maxrss_kb / 1024:.0f} MiB (torch included)",
        "",
        "## Failures",
        "",
    ]
    if not summary.failures:
        lines.append("None.")
    else:
        lines += ["| case | mutator | seed | outcome | reason |", "|---|---|---|---|---|"]
        for f in summary.failures:
            reason = (f["reason"] or "").replace("|", "\\|")[:300]
            lines.append(f"| {f['index']} | {f['mutator']} | {f['seed']} | {f['outcome']} | {reason} |")
        if summary.n_failures > len(summary.failures):
            lines.append(f"\n... and {summary.n_failures - len(summary.failures)} more.")
    lines.append("")
    return "\n".join(lines)
