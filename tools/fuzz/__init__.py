"""A fuzzing harness for the ``.ani`` decoder and ``core.read_header``.

It mutates small valid files (bit flips, truncations, insertions, deletions,
splices, random bytes, extreme header fields, forged payloads with valid
checksums, edits of ignored bytes) and checks that only the documented errors
come out, that no case runs longer than a bound, and that no case allocates
beyond what the file's checked header declares. See ``docs/security.md``.

    python -m tools.fuzz --cases 100000 --report benchmarks/results/fuzz.md
    python -m tools.fuzz --seconds 60
    python -m tools.fuzz --case 1234 --seeds-dir SEEDS --save case.ani   # replay one case

Modules: :mod:`.mutators` (the mutations and the outcomes each kind allows),
:mod:`.case` (one case, judged), :mod:`.runner` (worker process and
watchdog), :mod:`.seeds` (the seed files), :mod:`.layout` (the file's byte
layout), :mod:`.report` (Markdown summary).
"""
