"""A third-party rounding method installed through a real ``ani`` entry point.

The package is ``tests/data/ani_halfnoise`` (one module). The fixture installs
it the way pip lays out a wheel: the module and an ``ani_halfnoise-1.0.dist-info``
folder with ``METADATA`` and ``entry_points.txt`` in a site folder put on
``sys.path``, where ``importlib.metadata`` (and so pluggy) finds it. Nothing in
``core`` names the method; ``rounding="halfnoise"`` then works in real encodes
through core, Pillow and imageio.
"""
from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import core  # noqa: E402
from core import hooks  # noqa: E402

PACKAGE = Path(__file__).resolve().parent / "data" / "ani_halfnoise"


def install(site: Path, module: str, source: str, entry_point: str) -> None:
    """Lay out ``module`` as pip installs a wheel: the module and its ``.dist-info``
    with an ``ani`` entry point."""
    site.mkdir(exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[ani]\n{entry_point} = {module}\n")
    (info / "RECORD").write_text("")


@pytest.fixture
def site(tmp_path, monkeypatch):
    """An empty site folder on ``sys.path``; the process-wide plugin manager is
    rebuilt after the test installs into it, and again afterwards."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.setenv(hooks.AUTOLOAD_ENV, "1")
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    hooks.plugin_manager.cache_clear()
    for module in ("ani_halfnoise", "ani_jitter"):
        sys.modules.pop(module, None)


@pytest.fixture
def installed(site, tmp_path, monkeypatch):
    """``tests/data/ani_halfnoise`` installed; yields the file its calls are logged to."""
    install(site, "ani_halfnoise", (PACKAGE / "ani_halfnoise.py").read_text(), "halfnoise")
    log = tmp_path / "calls.txt"
    monkeypatch.setenv("ANI_HALFNOISE_LOG", str(log))
    hooks.plugin_manager.cache_clear()
    return log


def _calls(log: Path) -> list[tuple[int, int]]:
    if not log.exists():
        return []
    return [tuple(map(int, line.split())) for line in log.read_text().splitlines()]


def test_entry_point_method_is_found_and_used_by_a_real_encode(installed, synth):
    pm = hooks.plugin_manager()
    assert "halfnoise" in dict(pm.list_name_plugin())  # registered under its entry-point name
    assert "halfnoise" in hooks.known_roundings()
    assert core.EncodeOptions(rounding="halfnoise").rounding == "halfnoise"

    image = synth(3, w=24, h=16, seed=5)
    data = core.encode(image, rounding="halfnoise", effort=1, seed=0)
    calls = _calls(installed)
    steps = calls[0][1]
    from core.grid.fit import FREEZE

    # called at every step until the latents are frozen (once per latent level)
    assert {s for s, _ in calls} == {s for s in range(steps) if s / steps < FREEZE}
    out = core.decode(data)
    assert out.shape == image.shape
    # a method of its own: not the bytes of any built-in
    for builtin in ("noise", "ste", "softround"):
        assert core.encode(image, rounding=builtin, effort=1, seed=0) != data


def test_entry_point_method_through_pillow_and_imageio(installed, synth):
    pytest.importorskip("PIL")
    iio = pytest.importorskip("imageio.v3")
    import pillow_ani  # noqa: F401
    import imageio_ani  # noqa: F401
    from PIL import Image

    image = synth(3, w=16, h=12, seed=6)
    expected = core.encode(image, rounding="halfnoise", effort=1, seed=2)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="ANI", rounding="halfnoise", effort=1, seed=2)
    assert buffer.getvalue() == expected
    assert iio.imwrite("<bytes>", image, extension=".ani", rounding="halfnoise", effort=1, seed=2) == expected


def test_without_autoload_the_method_is_unknown(installed, monkeypatch):
    monkeypatch.setenv(hooks.AUTOLOAD_ENV, "0")
    hooks.plugin_manager.cache_clear()
    assert "halfnoise" not in hooks.known_roundings()
    with pytest.raises(core.AniOptionError, match="rounding='halfnoise'.*allowed.*ssl"):
        core.encode(np.zeros((4, 4, 3), np.uint8), rounding="halfnoise")


def test_a_plugin_cannot_replace_a_builtin_method():
    class Impostor:
        @hooks.hookimpl
        def ani_rounding_methods(self):
            return {"ste": "ani_halfnoise:halfnoise", "extra": "ani_halfnoise:halfnoise"}

    pm = hooks.make_plugin_manager(load_entrypoints=False)
    pm.register(Impostor())
    methods = hooks.rounding_methods(pm)
    assert methods["ste"] == "core.rounding:ste"
    assert methods["extra"] == "ani_halfnoise:halfnoise"


def test_the_documented_example_plugin_works(site, synth):
    """The example of docs/plugins.md ("Rounding plugins"), installed as it says."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    section = doc[doc.index("## Rounding plugins"):]
    source = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    entry = re.search(r"\[project.entry-points.ani\]\n(\w+) = \"(\w+)\"", section)
    name, module = entry.group(1), entry.group(2)
    install(site, module, source, name)
    hooks.plugin_manager.cache_clear()
    assert name in hooks.known_roundings()
    image = synth(3, w=16, h=12, seed=7)
    data = core.encode(image, rounding=name, effort=1)
    assert core.decode(data).shape == image.shape
    assert data != core.encode(image, rounding="noise", effort=1)
