"""What the decoder promises about untrusted input (``docs/security.md``):
every single-bit change of a stored file is refused with a clear error by
``decode`` too, not only by ``read_header``; a file whose checksums fail never
gives pixels; and determinism: the same input, options, seed (and torch thread
count) give the same bytes in another process, decoding gives the same pixels
whatever the thread count, and concurrent decodes in threads are safe."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import core  # noqa: E402
from core.errors import AniFormatError, NotAniError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

#: the messages of the errors a changed bit can cause: each says what is wrong
CLEAR = re.compile(r"not an \.ani file|unsupported \.ani format version|header length|truncated \.ani file|"
                   r"checksum mismatch|trailing data")


@pytest.fixture(scope="module")
def with_metadata(synth):
    return core.encode(synth(3, 16, 12, seed=3), effort=1, bits=5,
                       metadata={"icc_profile": b"icc" * 20, "exif": b"Exif\x00\x00MM", "xmp": b"<x/>"})


def _flips(data: bytes):
    buf = bytearray(data)
    for i in range(len(buf) * 8):
        buf[i // 8] ^= 1 << (i % 8)
        yield i, bytes(buf)
        buf[i // 8] ^= 1 << (i % 8)


@pytest.fixture(scope="module")
def progressive(synth):
    """A progressive siren supernet file (format 1.4): its length field too is guarded."""
    return core.encode(synth(3, 12, 10, seed=4), model="siren", supernet=(2, 8), subnet="all", effort=1)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "meta", "progressive"])
def test_every_single_bit_change_is_refused_by_decode_with_a_clear_error(encoded_modes, with_metadata, progressive,
                                                                         mode):
    data = {"meta": with_metadata, "progressive": progressive}.get(mode) or encoded_modes[mode][1]
    unclear = []
    for i, changed in _flips(data):
        with pytest.raises(AniFormatError) as info:
            core.decode(changed)
        if i < 64:  # the magic: another format
            assert isinstance(info.value, NotAniError)
        if not CLEAR.search(str(info.value)):
            unclear.append((i, str(info.value)))
    assert not unclear, unclear[:5]


def test_a_payload_whose_checksum_fails_never_reaches_the_decoder(small_file, monkeypatch):
    """The container refuses it before any model data is read."""
    from core.grid import decode as grid_decode

    def must_not_run(*args, **kwargs):
        raise AssertionError("the payload decoder ran on a file whose checksum fails")

    monkeypatch.setattr(grid_decode, "load_model", must_not_run)
    for i, changed in _flips(small_file):
        with pytest.raises(AniFormatError):
            core.decode(changed)


# --------------------------------------------------------------------------- determinism

ENCODE_IN_A_FRESH_PROCESS = r"""
import sys, hashlib
import numpy as np, torch
sys.path.insert(0, sys.argv[2])
from conftest import synthetic_image  # sets one thread: set the count after it
import core
torch.set_num_threads(int(sys.argv[1]))
data = core.encode(synthetic_image(3, 24, 16, seed=5), effort=1, seed=11, quality=60)
print(hashlib.sha256(data).hexdigest())
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_same_input_options_seed_and_thread_count_give_the_same_bytes_in_another_process(synth, threads):
    import hashlib

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        here = hashlib.sha256(core.encode(synth(3, 24, 16, seed=5), effort=1, seed=11, quality=60)).hexdigest()
    finally:
        torch.set_num_threads(before)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    out = subprocess.run([sys.executable, "-c", ENCODE_IN_A_FRESH_PROCESS, str(threads), str(ROOT / "tests")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == here


@pytest.fixture(scope="module")
def larger_file(synth):
    return core.encode(synth(4, 48, 40, seed=9), effort=1)


@pytest.mark.parametrize("size", [None, (48, 40), (300, 200), (1000, 140), (17, 301)])
def test_decoding_gives_identical_pixels_whatever_the_thread_count(larger_file, size):
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 3, 4):
            torch.set_num_threads(threads)
            outs.append(core.decode(larger_file, size=size))
    finally:
        torch.set_num_threads(before)
    for out in outs[1:]:
        assert np.array_equal(outs[0], out)


def test_concurrent_decodes_in_threads_match_serial_decodes(encoded_modes, larger_file):
    jobs = [(data, size) for _, data in encoded_modes.values() for size in (None, (31, 19), (64, 150))]
    jobs += [(larger_file, None), (larger_file, (200, 160))]
    expected = [core.decode(d, size=s) for d, s in jobs]
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # intra-op threads under inter-thread concurrency too
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in range(3):
                results = list(pool.map(lambda job: core.decode(job[0], size=job[1]), jobs * 2))
                headers = list(pool.map(lambda job: core.read_header(job[0]), jobs))
                for got, want in zip(results, expected * 2):
                    assert np.array_equal(got, want)
                assert [h.size for h in headers] == [core.read_header(d).size for d, _ in jobs]
    finally:
        torch.set_num_threads(before)


def test_the_pixel_budget_example_of_security_md_runs(small_file):
    text = (ROOT / "docs" / "security.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    scope = {"core": core, "data": small_file}
    exec(blocks[0], scope)  # noqa: S102 - our own documentation
    assert scope["pixels"].shape == (16, 24, 3)
    big = core.container.pack(width=8000, height=8000, channels=3, model_code=0, bits=4, n_latents=0, n_params=0,
                              quality=0, effort=1, sections=[])
    with pytest.raises(ValueError, match="larger than we decode"):
        exec(blocks[0], {"core": core, "data": big})  # noqa: S102
