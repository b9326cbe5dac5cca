"""Batch conversion (``core.convert`` and ``ani convert``).

Checks the promises of issue #7 for batches: failures do not stop the batch
and are all reported; inputs are never overwritten; outputs are written
atomically, so a killed batch leaves no partial output and a re-run resumes;
``--jobs`` runs worker processes. Tiny seeded images, effort=1.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

import core  # noqa: E402
from core import cli  # noqa: E402
from core.convert import (  # noqa: E402
    ConvertSummary,
    OutputExistsError,
    collect,
    convert,
    write_atomic,
)

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(effort=1)


def image(channels: int, seed: int, w: int = 24, h: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    planes = [128 + 80 * np.sin(x / (2.5 + c + seed)) * np.cos(y / (3.0 + c)) + rng.normal(0, 3, (h, w))
              for c in range(channels)]
    a = np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8)
    return a[:, :, 0] if channels == 1 else a


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """A folder with two good images in sub-folders, one corrupt image, a
    non-image file and a hidden file; converted once to .ani."""
    d = tmp_path_factory.mktemp("batch")
    src = d / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(image(3, 1)).save(src / "a.png")
    Image.fromarray(image(1, 2)).save(src / "sub" / "deeper" / "g.png")
    (src / "sub" / "broken.png").write_bytes(Image.fromarray(image(3, 3)).tobytes()[:100])  # no PNG header
    (src / "sub" / "notes.txt").write_text("not an input")
    (src / ".hidden.png").write_bytes(b"ignored")
    before = snapshot(src)
    out = d / "out"
    results = []
    summary = convert([src], out, "ani", on_result=results.append, **FAST)
    return {"dir": d, "src": src, "out": out, "before": before, "summary": summary, "results": results}


def test_batch_goes_on_past_a_failure(batch):
    s: ConvertSummary = batch["summary"]
    assert isinstance(s, ConvertSummary) and not s.ok
    assert sorted(r.output.relative_to(batch["out"]).as_posix() for r in s.converted) == ["a.ani", "sub/deeper/g.ani"]
    assert [r.source.name for r in s.failed] == ["broken.png"]
    assert "image" in s.failed[0].error and "\n" not in s.failed[0].error
    assert s.skipped == [] and s.total == 3 == len(batch["results"])


def test_batch_outputs_decode_and_keep_structure(batch):
    out = batch["out"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "a.ani", "sub/deeper/g.ani"]
    assert core.read_header(out / "a.ani").mode == "RGB"
    assert core.decode(out / "sub" / "deeper" / "g.ani").shape == (16, 24)


def test_batch_never_touches_inputs(batch):
    assert snapshot(batch["src"]) == batch["before"]


def test_rerun_resumes_by_skipping_existing_outputs(batch):
    out = batch["out"]
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.ani")}
    s = convert([batch["src"]], out, "ani", **FAST)
    assert len(s.converted) == 0 and len(s.skipped) == 2 and len(s.failed) == 1
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.ani")} == stamps


def test_cli_convert_reports_failures_and_exits_nonzero(batch, capsys):
    code = cli.main(["convert", str(batch["src"]), "--to", "ani", "--out", str(batch["out"]), "--effort", "1", "-q"])
    err = capsys.readouterr().err
    assert code == 1
    assert "broken.png" in err and "1 failed" in err and "2 skipped" in err
    assert "Traceback" not in err


def test_cli_convert_back_to_png(batch, tmp_path, capsys):
    back = tmp_path / "back"
    assert cli.main(["convert", str(batch["out"]), "--to", "png", "--out", str(back), "-q"]) == 0
    with Image.open(back / "a.png") as im:
        assert im.size == (24, 16) and im.mode == "RGB"
    with Image.open(back / "sub" / "deeper" / "g.png") as im:
        assert im.mode == "L"
    assert np.array_equal(np.asarray(Image.open(back / "a.png")), core.decode(batch["out"] / "a.ani"))


def test_png_to_png_in_the_input_folder_overwrites_nothing(batch, tmp_path, capsys):
    src = tmp_path / "pngs"
    src.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(image(3, 5)).save(src / name)
    before = snapshot(src)
    # named files: each output would be its own input -> refused, reported
    code = cli.main(["convert", str(src / "a.png"), str(src / "b.png"), "--to", "png", "--out", str(src), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("refusing to overwrite an input") == 2
    # --force does not change that
    assert cli.main(["convert", str(src / "a.png"), "--to", "png", "--out", str(src), "--force", "-q"]) == 1
    # the folder: PNGs are not inputs of --to png, nothing to do
    assert cli.main(["convert", str(src), "--to", "png", "--out", str(src), "-q"]) == 1
    assert "no input" in capsys.readouterr().err
    assert snapshot(src) == before


def test_decoding_next_to_originals_skips_them(batch, tmp_path):
    """An .ani beside the PNG it came from: decoding into that folder must
    not replace the original PNG (it exists, so it is skipped)."""
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "a.png").write_bytes((batch["src"] / "a.png").read_bytes())
    (d / "a.ani").write_bytes((batch["out"] / "a.ani").read_bytes())
    before = snapshot(d)
    s = convert([d], d, "png")
    assert len(s.skipped) == 1 and not s.failed and not s.converted
    assert snapshot(d) == before


def test_out_inside_input_folder_is_not_searched(batch, tmp_path):
    d = tmp_path / "tree"
    d.mkdir()
    (d / "x.ani").write_bytes((batch["out"] / "a.ani").read_bytes())
    nested = d / "png"
    s = convert([d], nested, "png")
    assert len(s.converted) == 1
    tasks, problems = collect([d], nested, "ani")  # the new PNG inside the input tree is not picked up
    assert tasks == [] and problems == []


def test_plan_reports_missing_inputs_and_collisions(tmp_path):
    Image.fromarray(image(3, 1)).save(tmp_path / "a.png")
    Image.fromarray(image(3, 1)).save(tmp_path / "a.jpg")
    tasks, problems = collect([tmp_path, tmp_path / "a.png", tmp_path / "nope.png"], tmp_path / "o", "ani")
    assert [t.output.name for t in tasks] == ["a.ani"]
    errors = sorted(p.error for p in problems)
    assert any("already the output" in e for e in errors)
    assert any("no such file" in e for e in errors)


def test_invalid_options_fail_before_any_work(tmp_path):
    Image.fromarray(image(3, 1)).save(tmp_path / "a.png")
    with pytest.raises(core.AniOptionError, match="bits"):
        convert([tmp_path], tmp_path / "o", "ani", bits=1)
    with pytest.raises(core.AniOptionError, match="jobs"):
        convert([tmp_path], tmp_path / "o", "ani", jobs=0)
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- atomic writes


def test_write_atomic(tmp_path):
    target = tmp_path / "f.ani"
    write_atomic(target, b"one")
    assert target.read_bytes() == b"one"
    with pytest.raises(OutputExistsError):
        write_atomic(target, b"two")
    assert target.read_bytes() == b"one"
    write_atomic(target, b"three", overwrite=True)
    assert target.read_bytes() == b"three"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.ani"]


def test_write_atomic_failure_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        write_atomic(tmp_path / "g.ani", b"data")
    assert list(tmp_path.iterdir()) == []


def test_stale_temp_of_a_dead_writer_is_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".h.ani.{int(dead.stdout)}-deadbeef.ani-tmp"
    stale.write_bytes(b"partial")
    write_atomic(tmp_path / "h.ani", b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.ani"]


def test_interrupted_batch_leaves_no_partial_output_and_resumes(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        Image.fromarray(image(3, i)).save(src / f"{i}.png")
    out = tmp_path / "out"
    real_encode = core.encode
    calls = []

    def flaky_encode(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(core, "encode", flaky_encode)
    with pytest.raises(KeyboardInterrupt):
        convert([src], out, "ani", **FAST)
    assert sorted(p.name for p in out.iterdir()) == ["0.ani"]
    monkeypatch.setattr(core, "encode", real_encode)
    s = convert([src], out, "ani", **FAST)
    assert [r.source.name for r in s.skipped] == ["0.png"]
    assert sorted(r.source.name for r in s.converted) == ["1.png", "2.png"]


def test_killed_batch_leaves_no_partial_output(tmp_path):
    """SIGKILL the process while it writes its second output: the first output
    is whole, the second has no file under its name, and a re-run resumes and
    leaves no temporary file behind."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        Image.fromarray(image(3, i)).save(src / f"{i}.png")
    out = tmp_path / "out"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        writes = []
        real_fsync = os.fsync
        def fsync(fd):
            writes.append(fd)
            if len(writes) == 2:  # the second output is half way to disk
                os.kill(os.getpid(), signal.SIGKILL)
            return real_fsync(fd)
        os.fsync = fsync
        from core.cli import main
        sys.exit(main(["convert", {str(src)!r}, "--to", "ani", "--out", {str(out)!r}, "--effort", "1", "-q"]))
        """
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stderr
    finals = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert finals == ["0.ani"]
    core.read_header(out / "0.ani")  # whole: every checksum verifies
    assert any(p.name.endswith(".ani-tmp") for p in out.iterdir())  # the killed writer's temp file

    s = convert([src], out, "ani", **FAST)
    assert [r.source.name for r in s.skipped] == ["0.png"] and [r.source.name for r in s.converted] == ["1.png"]
    assert sorted(p.name for p in out.iterdir()) == ["0.ani", "1.ani"]


# --------------------------------------------------------------------------- worker processes


def test_jobs_2_runs_in_worker_processes(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        Image.fromarray(image(3, 10 + i)).save(src / f"{i}.png")
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    code = cli.main(["convert", str(src), "--to", "ani", "--out", str(out), "--jobs", "2", "--effort", "1", "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "bad.png" in err and "2 converted" in err
    for i in range(2):
        assert core.decode(out / f"{i}.ani").shape == (16, 24, 3)
        assert core.read_header(out / f"{i}.ani").effort == 1
