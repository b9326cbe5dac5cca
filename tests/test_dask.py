"""Batch conversion on a Dask cluster (``core.convert.dask_batch``, ``ani convert --scheduler``).

Runs against a real ``LocalCluster`` of two worker processes on loopback:
outputs equal those of a local run (fits are deterministic on the CPU for a
given seed and thread count; both sides use one torch thread), a worker killed
mid-batch loses nothing, a bad input is reported without stopping the rest,
a re-run resumes. Tiny seeded images at effort 1.
"""
from __future__ import annotations

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
pytest.importorskip("torch")
pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install 'ani-codec[dask]')")
from PIL import Image  # noqa: E402

import core  # noqa: E402
from conftest import synthetic_image  # noqa: E402
from core import cli, heap  # noqa: E402
from core.convert import convert  # noqa: E402
from core.convert import dask_batch  # noqa: E402
from core.convert.atomic import is_temp_name  # noqa: E402
from core.convert.dask_worker import WorkerEnv, fit_slot, threads_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(effort=1, threads=1)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def make_inputs(folder: Path, n: int, size: int, seed0: int = 0, bad: bool = True) -> Path:
    """``n`` seeded RGB images of ``size`` pixels a side (half in a sub-folder), plus a broken one."""
    (folder / "sub").mkdir(parents=True)
    for i in range(n):
        where = folder / "sub" if i % 2 else folder
        Image.fromarray(synthetic_image(3, size, size, seed=seed0 + i)).save(where / f"img{i}.png")
    if bad:
        (folder / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    return folder


@pytest.fixture(scope="module")
def cluster():
    """The local cluster of ``--scheduler local --jobs 2``: two worker processes
    of one thread each, on loopback, with the ``fit`` resource."""
    from distributed import Client

    with dask_batch.local_cluster(2) as lc, Client(lc, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=120)
        yield lc, client


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Six 24x24 images and a broken one, converted once locally (the reference)."""
    d = tmp_path_factory.mktemp("dask")
    src = make_inputs(d / "src", 6, 24)
    local = convert([src], d / "local", effort=1)  # this process runs torch on one thread (conftest)
    assert len(local.converted) == 6 and len(local.failed) == 1
    return {"dir": d, "src": src, "local": d / "local", "local_summary": local, "before": snapshot(src)}


def check_like_local(folder, out: Path, summary) -> None:
    assert len(summary.converted) == 6 and not summary.skipped
    assert [(r.source, r.output.relative_to(out), r.error) for r in summary.failed] == [
        (r.source, r.output.relative_to(folder["local"]), r.error) for r in folder["local_summary"].failed
    ]
    assert "not an image file" in summary.failed[0].error
    assert snapshot(out) == snapshot(folder["local"])  # byte for byte, and no temporary files
    assert snapshot(folder["src"]) == folder["before"]  # inputs untouched


def test_folder_converts_with_outputs_identical_to_a_local_run(cluster, folder):
    _, client = cluster
    out = folder["dir"] / "bytes-mode"
    seen = []
    summary = dask_batch.convert([folder["src"]], out, client=client, on_result=seen.append,
                                 on_plan=lambda n: seen.append(n), **FAST)
    assert seen[0] == 7 and len(seen) == 8  # the plan, then one result per input
    check_like_local(folder, out, summary)


def test_shared_fs_mode_workers_write_the_same_outputs(cluster, folder):
    _, client = cluster
    out = folder["dir"] / "shared-mode"
    summary = dask_batch.convert([folder["src"]], out, client=client, shared_fs=True, **FAST)
    check_like_local(folder, out, summary)
    assert all(r.output.parent.is_relative_to(out) for r in summary.converted)  # the user's paths


def test_rerun_resumes_and_force_redoes(cluster, folder, tmp_path):
    _, client = cluster
    out = tmp_path / "out"
    first = dask_batch.convert([folder["src"]], out, client=client, **FAST)
    (out / "sub" / "img1.ani").unlink()
    again = dask_batch.convert([folder["src"]], out, client=client, **FAST)
    assert [r.output.name for r in again.converted] == ["img1.ani"] and len(again.skipped) == 5
    assert len(again.failed) == 1  # the broken input is tried again and reported again
    assert snapshot(out) == snapshot(folder["local"])
    # nothing left to do: no task is sent, the client is not even used
    done = dask_batch.convert([folder["local"] / "img0.ani"], tmp_path / "png", "png", client=client)
    assert len(done.converted) == 1
    none_left = dask_batch.convert([folder["local"] / "img0.ani"], tmp_path / "png", "png", client=object())
    assert len(none_left.skipped) == 1
    forced = dask_batch.convert([folder["src"] / "img0.png"], out, client=client, force=True, **FAST)
    assert [r.output for r in forced.converted] == [out / "img0.ani"] and snapshot(out) == snapshot(folder["local"])
    assert len(first.converted) == 6


def test_interrupted_batch_cancels_its_tasks_and_resumes(cluster, folder, tmp_path):
    _, client = cluster
    out = tmp_path / "out"

    def interrupt(result) -> None:  # Ctrl-C once the first output is written
        if result.status == "converted":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dask_batch.convert([folder["src"]], out, client=client, on_result=interrupt, max_in_flight=3, **FAST)
    deadline = time.monotonic() + 30
    while any(k.startswith("ani-convert-") for keys in client.processing().values() for k in keys):
        assert time.monotonic() < deadline, "the batch's tasks were not cancelled"
        time.sleep(0.1)
    written = snapshot(out) if out.exists() else {}
    assert len(written) == 1 and not any(is_temp_name(Path(n).name) for n in written)  # one whole output
    resumed = dask_batch.convert([folder["src"]], out, client=client, **FAST)
    assert len(resumed.skipped) == 1 and len(resumed.converted) == 5
    assert snapshot(out) == snapshot(folder["local"])


def test_a_worker_killed_mid_batch_loses_nothing(cluster, tmp_path):
    """SIGKILL one worker process while it fits; the scheduler runs its task
    again on the other worker (and on the nanny's replacement), and every
    output is whole and equal to a local run's."""
    _, client = cluster
    client.wait_for_workers(2, timeout=120)
    src = make_inputs(tmp_path / "src", 6, 40, seed0=10, bad=False)
    opts = dict(effort=1, seed=3)
    local = convert([src], tmp_path / "local", **opts)
    pids = client.run(os.getpid)
    killed = {}

    def on_result(result) -> None:
        if killed:
            return
        busy = {addr: keys for addr, keys in client.processing().items() if keys}
        assert busy, "no worker was fitting when the first result arrived"
        addr = sorted(busy)[0]
        os.kill(pids[addr], signal.SIGKILL)
        killed[addr] = list(busy[addr])

    out = tmp_path / "out"
    summary = dask_batch.convert([src], out, client=client, on_result=on_result, threads=1, **opts)
    assert killed and all(k.startswith("ani-convert-") for keys in killed.values() for k in keys)
    assert not set(killed) & set(client.scheduler_info(n_workers=-1)["workers"])  # the scheduler saw it die
    assert len(summary.converted) == 6 and not summary.failed and not summary.skipped
    assert snapshot(out) == snapshot(tmp_path / "local") and len(local.converted) == 6
    for path in out.rglob("*.ani"):
        assert core.decode(path.read_bytes()).shape == (40, 40, 3)
    assert not any(is_temp_name(p.name) for p in out.rglob("*"))


def test_submit_arrays_paths_and_bytes_returns_futures(cluster, folder):
    _, client = cluster
    array = synthetic_image(3, 24, 16, seed=5)
    path = folder["src"] / "img0.png"
    futures = dask_batch.submit(client, [array, path, b"junk", path.read_bytes()], **FAST)
    assert len(futures) == 4
    assert futures[0].result() == core.encode(array, effort=1)
    assert futures[1].result() == (folder["local"] / "img0.ani").read_bytes()
    assert futures[3].result() == futures[1].result()
    error = futures[2].exception()
    assert isinstance(error, core.AniError) and "<item 2>: not an image file" in str(error)
    # back to PNG, and a path read by the worker itself
    png = dask_batch.submit(client, [folder["local"] / "img0.ani"], to="png", shared_fs=True)[0].result()
    assert png.startswith(b"\x89PNG")
    with pytest.raises(core.AniOptionError, match="effort"):
        dask_batch.submit(client, [array], effort=99)


def test_cli_scheduler_address_reports_failures_like_the_local_path(cluster, folder, tmp_path, capsys):
    lc, _ = cluster
    out = tmp_path / "cli"
    rc = cli.main(["convert", str(folder["src"]), "--to", "ani", "--out", str(out), "--effort", "1",
                   "--scheduler", lc.scheduler_address, "-q"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "6 converted, 0 skipped, 1 failed" in err and "broken.png: not an image file" in err
    assert sorted(p.name for p in out.rglob("*.ani")) == sorted(f"img{i}.ani" for i in range(6))
    for path in out.rglob("*.ani"):
        assert core.decode(path.read_bytes()).shape == (24, 24, 3)


def test_local_cluster_workers_run_without_dask_malloc_setting(cluster):
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 for workers, which slows
    fits; the local cluster drops it."""
    _, client = cluster
    envs = client.run(lambda: (os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("OMP_NUM_THREADS")))
    assert len(envs) == 2 and all(trim is None and omp == "1" for trim, omp in envs.values())


@pytest.mark.skipif(heap.child_tunables() is None, reason="glibc only")
def test_local_cluster_workers_keep_the_memory_a_fit_frees(cluster):
    """As ``ani convert``'s own workers (core.heap), through glibc's tunables."""
    _, client = cluster
    tunables = client.run(lambda: os.environ.get("GLIBC_TUNABLES"))
    assert len(tunables) == 2 and all(t and t.endswith(heap.TUNABLES) for t in tunables.values())


def test_cli_local_cluster_decodes_to_png(folder, tmp_path, capsys):
    out = tmp_path / "png"
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_", "PYTHONHASHSEED", "GLIBC_TUNABLES")
    environ = {name: os.environ.get(name) for name in names}
    rc = cli.main(["convert", str(folder["local"]), "--to", "png", "--out", str(out),
                   "--scheduler", "local", "--jobs", "1", "-q"])
    assert rc == 0, capsys.readouterr().err
    assert {name: os.environ.get(name) for name in names} == environ  # the nannies' settings are put back
    for rel, data in snapshot(out).items():
        expect = core.decode(folder["local"] / Path(rel).with_suffix(".ani"))
        assert np.array_equal(np.asarray(Image.open(out / rel)), expect)
    assert len(snapshot(out)) == 6


def test_usage_errors(folder, tmp_path, capsys, monkeypatch):
    base = ["convert", str(folder["src"]), "--to", "ani", "--out", str(tmp_path / "o")]
    assert cli.main(base + ["--shared-fs"]) == 2
    assert "--shared-fs applies with --scheduler only" in capsys.readouterr().err
    assert cli.main(base + ["--scheduler", "tcp://127.0.0.1:1", "--jobs", "2"]) == 2
    assert "--jobs applies to local work" in capsys.readouterr().err
    assert cli.main(base + ["--scheduler", "tcp://127.0.0.1:1", "--effort", "0"]) == 2  # before connecting
    monkeypatch.setattr(dask_batch, "CONNECT_SECONDS", 0.5)
    assert cli.main(base + ["--scheduler", "tcp://127.0.0.1:1"]) == 1
    assert "cannot reach the Dask scheduler tcp://127.0.0.1:1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    with pytest.raises(core.AniOptionError, match="jobs"):
        dask_batch.convert([folder["src"]], tmp_path / "o", scheduler="tcp://127.0.0.1:1", jobs=2)


def test_shared_fs_check_refuses_workers_that_do_not_see_the_folder(tmp_path):
    class Blind:  # a client whose workers have a file system of their own
        def run(self, func, *args):
            return {"tcp://10.0.0.1:1": False, "tcp://10.0.0.2:1": func(*args)}

    with pytest.raises(core.AniError, match=r"1 worker\(s\) \(tcp://10.0.0.1:1\) do not see"):
        dask_batch.check_shared_fs(Blind(), tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []  # the probe is removed


def test_thread_and_slot_rules():
    env = WorkerEnv(None, {"10.0.0.1": 4})
    assert threads_for(env, 1, cores=16, host="10.0.0.1") == 4   # 4 workers share 16 cores
    assert threads_for(env, 2, cores=16, host="10.0.0.1") == 2   # two fits at a time in each
    assert threads_for(env, 1, cores=16, host="10.0.0.9") == 16  # a host that joined later
    assert threads_for(env, 8, cores=4, host="10.0.0.1") == 1
    assert threads_for(WorkerEnv(3, {}), 1, cores=16, host=None) == 3
    import torch

    before = torch.get_num_threads()
    with fit_slot(WorkerEnv(2), cuda=False) as slot:  # outside a worker: one slot, set and restored
        assert slot == 0 and torch.get_num_threads() == 2
    assert torch.get_num_threads() == before


def test_one_fit_per_gpu_each_on_its_own_device(monkeypatch):
    """A worker with two CUDA devices (faked) has two fit slots; slot i fits on device i."""
    import contextlib

    import torch

    from core.convert import dask_worker

    current = []

    @contextlib.contextmanager
    def device(i):
        current.append(i)
        yield

    monkeypatch.setattr(dask_worker, "_SLOTS", dask_worker._Slots())
    monkeypatch.setattr(dask_worker, "_cuda_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "device", device)
    env = WorkerEnv(None, {})
    with fit_slot(env, cuda=True) as a, fit_slot(env, cuda=True) as b:
        assert (a, b) == (0, 1) and current == [0, 1]
        assert dask_worker._SLOTS.pool.empty()  # a third fit would wait
        assert torch.get_num_threads() == threads_for(env, 2)
    with fit_slot(env, cuda=False):  # a CPU fit takes a slot, no device
        assert current == [0, 1]
    # a worker started with --resources fit=3 has three slots
    monkeypatch.setattr(dask_worker, "_SLOTS", dask_worker._Slots())
    monkeypatch.setattr(dask_worker, "_declared_slots", lambda: 3)
    with fit_slot(env, cuda=False):
        assert dask_worker._SLOTS.count == 3


def test_workers_without_the_codec_or_with_another_version_are_refused():
    class Stub:
        def __init__(self, answers):
            self.answers = answers

        def wait_for_workers(self, n, timeout):
            pass

        def run(self, func, on_error="raise"):
            return self.answers

    missing = Stub({"tcp://a:1": ModuleNotFoundError("No module named 'core'")})
    with pytest.raises(core.AniError, match="cannot run the codec .*No module named 'core'.*install ani-codec"):
        dask_batch.check_workers(missing)
    old = Stub({"tcp://a:1": {"version": "0.0.1", "cpus": 1, "cuda": 0}})
    with pytest.raises(core.AniError, match="tcp://a:1 has 0.0.1"):
        dask_batch.check_workers(old)
    gone = Stub({"tcp://a:1": {"version": core.__version__, "cpus": 1, "cuda": 0}, "tcp://b:1": OSError("closed")})
    assert list(dask_batch.check_workers(gone)) == ["tcp://a:1"]


def test_without_scheduler_nothing_of_dask_is_imported(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from core import cli
        rc = cli.main(["convert", {str(tmp_path)!r}, "--to", "ani", "--out", {str(tmp_path / "out")!r}, "-q"])
        assert rc == 1, rc  # no inputs found
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed"))
        assert not loaded, loaded
        assert "core.convert.dask_batch" not in sys.modules
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    help_text = subprocess.run([sys.executable, "-m", "core", "convert", "--help"], capture_output=True, text=True,
                               env=env, cwd=ROOT).stdout
    assert "--scheduler ADDRESS" in help_text and "--shared-fs" in help_text
