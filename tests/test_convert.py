"""Batch conversion (``core.convert`` and ``ani convert``).

Checks the promises of issue #7 for batches: failures do not stop the batch
and are all reported; inputs are never overwritten; outputs are written
atomically, so a killed batch leaves no partial output and a re-run resumes;
``--jobs`` runs worker processes. Tiny seeded images, effort=1.
"""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

import core  # noqa: E402
from core import cli  # noqa: E402
from core.convert import (  # noqa: E402
    ConvertSummary,
    FileResult,
    OutputExistsError,
    Task,
    collect,
    convert,
    convert_bytes,
    convert_file,
    run_task,
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


# --------------------------------------------------------------------------- one file, for workers


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_convert_bytes_to_ani_and_back_touches_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rgb = image(3, 4)
    data = convert_bytes(_png(rgb), "ani", options=core.EncodeOptions(effort=1))
    assert core.read_header(data).size == (24, 16)
    png = convert_bytes(data, "png")
    assert png.startswith(b"\x89PNG")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), core.decode(data))
    assert convert_bytes(data, "png", output_name="x.bmp").startswith(b"BM")  # the format of the name
    assert list(tmp_path.iterdir()) == []


def test_convert_bytes_names_the_input_in_its_errors():
    with pytest.raises(core.AniError, match="^upload-7: not an image"):
        convert_bytes(b"not an image", "ani", name="upload-7")
    with pytest.raises(core.NotAniError, match="^upload-8: not an .ani"):
        convert_bytes(b"\x89PNG\r\n\x1a\n", "png", name="upload-8")


def test_convert_file_and_run_task(tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(image(1, 6)).save(src)
    before = src.read_bytes()
    convert_file(src, tmp_path / "o" / "a.ani", "ani", options=core.EncodeOptions(effort=1))
    assert core.decode(tmp_path / "o" / "a.ani").shape == (16, 24)
    with pytest.raises(OutputExistsError):
        convert_file(src, tmp_path / "o" / "a.ani", "ani", options=core.EncodeOptions(effort=1))
    again = run_task(Task(src, tmp_path / "o" / "a.ani"), "ani", core.EncodeOptions(effort=1))
    assert isinstance(again, FileResult) and again.status == "skipped"
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    bad = run_task(Task(tmp_path / "bad.png", tmp_path / "o" / "bad.ani"), "ani", core.EncodeOptions(effort=1))
    assert bad.status == "failed" and "image" in bad.error and not (tmp_path / "o" / "bad.ani").exists()
    assert src.read_bytes() == before


# --------------------------------------------------------------------------- killed from outside


def _inputs_state(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _finals(out: Path) -> list[str]:
    """Names under ``out`` that are not temporary files (hidden)."""
    return sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) if out.exists() else []


def _start_batch(src: Path, out: Path, jobs: int) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.Popen(
        [sys.executable, "-m", "core", "convert", str(src), "--to", "ani", "--out", str(out), "--effort", "1",
         "--jobs", str(jobs), "-q"],
        env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _kill_after_first_output(proc: subprocess.Popen, out: Path, timeout: float = 300) -> None:
    """SIGKILL the batch process as soon as its first output exists."""
    deadline = time.monotonic() + timeout
    while not any(n.endswith(".ani") for n in _finals(out)):
        assert proc.poll() is None, f"the batch ended before it could be killed: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "no output appeared"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL


def _group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def _batch_folder(tmp_path: Path, n: int) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(n):
        Image.fromarray(image(3, 20 + i)).save(src / f"{i}.png")
    (src / "zz-bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return src


def _check_after_kill(out: Path, n: int) -> list[str]:
    finals = _finals(out)
    assert 1 <= len(finals) < n, finals  # killed mid-batch
    for name in finals:  # every output under a final name is whole
        assert name.endswith(".ani")
        core.read_header(out / name)  # all checksums verify
        assert core.decode(out / name).shape == (16, 24, 3)
    return finals


@pytest.mark.parametrize("jobs", [1, 2])
def test_sigkill_mid_batch_leaves_whole_outputs_and_untouched_inputs_then_resumes(tmp_path, jobs):
    """Start ``python -m core convert`` on a folder, SIGKILL it from outside
    once its first output exists: the outputs under final names are whole
    files, the inputs are byte-identical (and not even touched), and running
    the batch again skips the finished files, converts the rest, reports the
    bad input and leaves no temporary file. With ``--jobs 2`` only the main
    process is killed: its worker processes must exit by themselves."""
    n = 6
    src = _batch_folder(tmp_path, n)
    before = _inputs_state(src)
    out = tmp_path / "out"
    proc = _start_batch(src, out, jobs)
    try:
        _kill_after_first_output(proc, out)
        if jobs > 1:  # the orphaned workers notice and exit
            assert _group_gone(proc.pid, 30), "worker processes outlived the killed batch"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of this test's batch
        except ProcessLookupError:
            pass
    finished = _check_after_kill(out, n)
    stamps = {name: (out / name).stat().st_mtime_ns for name in finished}
    assert _inputs_state(src) == before

    summary = convert([src], out, "ani", effort=1)
    assert sorted(r.output.name for r in summary.skipped) == finished
    assert sorted(r.output.name for r in summary.converted) == sorted(set(f"{i}.ani" for i in range(n)) - set(finished))
    assert [r.source.name for r in summary.failed] == ["zz-bad.png"] and "image" in summary.failed[0].error
    assert sorted(p.name for p in out.iterdir()) == [f"{i}.ani" for i in range(n)]  # no temporary file left
    assert {name: (out / name).stat().st_mtime_ns for name in finished} == stamps
    for i in range(n):
        core.read_header(out / f"{i}.ani")
    assert _inputs_state(src) == before


def test_cli_rerun_after_sigkill_prints_the_summary(tmp_path):
    n = 4
    src = _batch_folder(tmp_path, n)
    out = tmp_path / "out"
    proc = _start_batch(src, out, 1)
    try:
        _kill_after_first_output(proc, out)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    finished = _check_after_kill(out, n)
    again = _start_batch(src, out, 1)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 1, err  # the bad input
    err = err.decode()
    assert f"{n - len(finished)} converted, {len(finished)} skipped, 1 failed" in err
    assert "zz-bad.png" in err and "Traceback" not in err
    assert _finals(out) == [f"{i}.ani" for i in range(n)]


def test_pillow_decompression_bomb_limit_holds_for_inputs(tmp_path, monkeypatch):
    """An input image over Pillow's MAX_IMAGE_PIXELS is refused before its
    pixels are decoded, as a failed file of the batch (the others go on)."""
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(image(3, 1, w=64, h=48)).save(src / "big.png")  # 3072 pixels
    Image.fromarray(image(3, 2, w=8, h=8)).save(src / "small.png")  # 64 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # errors above twice this
    with pytest.raises(core.AniLimitError, match="decompression bomb"):
        convert_bytes((src / "big.png").read_bytes(), "ani", options=core.EncodeOptions(effort=1))
    s = convert([src], tmp_path / "out", "ani", effort=1)
    assert [r.source.name for r in s.failed] == ["big.png"] and "decompression bomb" in s.failed[0].error
    assert [r.source.name for r in s.converted] == ["small.png"]
