"""The fuzzing harness (``tools/fuzz``): a short slice of the real run (CI's
share of the >= 100,000 cases of ``benchmarks/results/fuzz.md``), and checks
that the harness does catch what it looks for: undocumented exceptions, pixels
from a damaged file, wrong shapes, allocations beyond the budget, hangs and
crashes."""
from __future__ import annotations

import json
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import core  # noqa: E402
from tools.fuzz import runner  # noqa: E402
from tools.fuzz import seeds as seedfiles  # noqa: E402
from tools.fuzz.__main__ import main as fuzz_main  # noqa: E402
from tools.fuzz.case import judge, load_seeds, mutate  # noqa: E402
from tools.fuzz.mutators import ALLOWED, MUTATORS  # noqa: E402


@pytest.fixture(scope="module")
def seed_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-seeds")
    seedfiles.save(seedfiles.make_seeds(), folder)
    return folder


@pytest.fixture(scope="module")
def loaded(seed_dir):
    return load_seeds(seedfiles.load(seed_dir))


def test_a_short_slice_finds_nothing_and_covers_every_mutator(seed_dir, tmp_path):
    summary = runner.run(cases=400, run_seed=2024, seeds_dir=seed_dir, case_timeout=60, save_dir=tmp_path / "f")
    assert summary.n_failures == 0, summary.failures[:5]
    assert summary.cases == 400 and summary.workers == 1
    assert set(summary.outcomes) == set(MUTATORS)
    assert summary.kinds["bitflip"]["refused"] > 0 and set(summary.kinds["bitflip"]) == {"refused"}
    assert summary.kinds["ignored"]["decoded-same"] > 0 and set(summary.kinds["ignored"]) == {"decoded-same"}
    assert summary.kinds["forged"]["decoded-other"] > 0  # tampering with valid checksums does reach the decoder
    assert {"AniFormatError", "NotAniError", "AniLimitError"} <= set(summary.errors)
    assert 0 < summary.max_peak and summary.max_peak_ratio < 1
    assert not (tmp_path / "f").exists()  # nothing failed, nothing saved


def test_the_seed_files_decode_and_every_mutator_is_deterministic(loaded):
    seeds, pixels = loaded
    assert {s.name for s in seeds} == set(seedfiles.SEED_IMAGES) | set(seedfiles.SEED_NETWORKS)
    assert {core.read_header(s.data).mode for s in seeds} == {"L", "LA", "RGB", "RGBA"}
    for index in range(200):
        a, b = mutate(seeds, 7, index), mutate(seeds, 7, index)
        assert a[0] == b[0] and a[1].name == b[1].name and a[2] == b[2]


def test_replaying_one_case(seed_dir, tmp_path, capsys):
    out = tmp_path / "case.ani"
    assert fuzz_main(["--case", "11", "--seed", "3", "--seeds-dir", str(seed_dir), "--save", str(out)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["index"] == 11 and record["ok"] and out.stat().st_size == record["size"]


# --------------------------------------------------------------------------- the judge catches failures


def _case(loaded, mutator: str):
    seeds, pixels = loaded
    seed = seeds[0]
    return seed, pixels[seed.name], MUTATORS[mutator].fn(np.random.default_rng(0), seed, seeds)


def test_judge_flags_an_undocumented_exception(loaded):
    seed, px, data = _case(loaded, "payload-edit")

    def broken(_):
        raise IndexError("index 9 is out of bounds")

    record, _, exc = judge("payload-edit", seed, data, px, decode=broken)
    assert not record.ok and record.outcome == "error" and "IndexError" in record.reason
    assert isinstance(exc, IndexError)
    record, _, _ = judge("payload-edit", seed, data, px, decode=lambda d: (_ for _ in ()).throw(core.AniOptionError("x")))
    assert not record.ok  # an AniError, but not one a damaged file may raise


def test_judge_flags_pixels_from_a_file_whose_checksum_fails(loaded):
    seed, px, data = _case(loaded, "flip-bit")
    with pytest.raises(core.AniFormatError):
        core.read_header(data)
    record, _, _ = judge("flip-bit", seed, data, px, decode=lambda d: px)
    assert not record.ok and "read_header refuses" in record.reason


def test_judge_flags_a_wrong_shape_and_other_pixels_where_the_same_are_due(loaded):
    seed, px, data = _case(loaded, "flags-reserved")
    assert judge("flags-reserved", seed, data, px)[0].ok
    record, _, _ = judge("flags-reserved", seed, data, px, decode=lambda d: px[:-1])
    assert not record.ok and "declares" in record.reason
    record, _, _ = judge("flags-reserved", seed, data, px, decode=lambda d: 255 - px)
    assert not record.ok and record.outcome == "decoded-other" and "not allowed" in record.reason


def test_judge_flags_an_allocation_beyond_the_budget(loaded):
    seed, px, data = _case(loaded, "truncate")

    def greedy(d):
        big = np.ones(64 << 20, np.uint8)  # 64 MiB for a file of a few hundred bytes
        del big
        return core.decode(d)

    tracemalloc.start()
    try:
        record, _, _ = judge("truncate", seed, data, px, decode=greedy)
    finally:
        tracemalloc.stop()
    assert not record.ok and "allocated" in record.reason and record.peak > record.budget


def test_allowed_outcomes_are_a_table_a_new_kind_can_extend():
    assert ALLOWED["bitflip"] == {"refused"} and ALLOWED["ignored"] == {"decoded-same"}
    assert all(m.kind in ALLOWED for m in MUTATORS.values())


# --------------------------------------------------------------------------- the watchdog


FAKE_WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    start, stop, hang, crash, pause = (int(a) for a in sys.argv[1:6])
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for i in range(start, stop):
        if i == hang:
            time.sleep(120)
        if i == crash:
            os._exit(3)
        time.sleep(pause / 1000)
        print(json.dumps({"index": i, "mutator": "m", "kind": "raw", "seed": "s", "outcome": "refused",
                          "error": "AniFormatError", "ok": True, "reason": None, "ms": 0.1, "peak": 10,
                          "budget": 100, "size": 1}), flush=True)
    print(json.dumps({"done": True, "maxrss_kb": 1}), flush=True)
    """
)


def _fake(hang: int = -1, crash: int = -1, pause_ms: int = 0):
    return lambda a, b: [sys.executable, "-c", FAKE_WORKER, str(a), str(b), str(hang), str(crash), str(pause_ms)]


def test_watchdog_records_a_hang_and_a_crash_and_goes_on(seed_dir):
    summary = runner.run(cases=6, seeds_dir=seed_dir, case_timeout=2, command=_fake(hang=1, crash=3))
    assert summary.cases == 6 and summary.workers == 3
    assert [(f["index"], f["outcome"]) for f in summary.failures] == [(1, "hang"), (3, "crash")]
    assert "status 3" in summary.failures[1]["reason"]
    assert summary.failures[0]["mutator"] in MUTATORS  # the case is named, from the run seed


def test_a_run_for_a_number_of_seconds(seed_dir):
    summary = runner.run(seconds=3, seeds_dir=seed_dir, case_timeout=2, command=_fake(pause_ms=10))
    assert summary.cases > 10 and summary.n_failures == 0 and 2.5 < summary.seconds < 10


@pytest.mark.parametrize("name", ["golden.ani", "golden_large.ani", "golden_v2.ani", "golden_v1.ani"])
def test_the_layout_finds_the_model_section_s_word_stream_in_every_version(name):
    """The fuzz layout spells the format on its own: on the golden files of each
    version (and version 3's five-pass one) the word count it locates is the last
    field of ``MODL``."""
    import struct

    from tools.fuzz import layout as L

    layout = L.split((ROOT / "tests" / "data" / name).read_bytes())
    payload = layout.section(b"MODL")
    f = L.modl_fields(payload, layout.version, layout.fields["width"], layout.fields["height"])
    (count,) = struct.unpack_from("<I", payload, f.n_words)
    assert f.words == (f.n_words + 4, count) and f.n_words + 4 + 4 * count == len(payload)
