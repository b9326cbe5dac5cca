"""``python -m core.runscript script.py [args]`` (``ani run``): unmodified scripts
get the ``.ani`` plugins. One end-to-end run in a child Python (two tiny fits,
effort=1); the rest runs ``core.runscript.main`` in-process."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("PIL")
pytest.importorskip("imageio")

import core  # noqa: E402
from core import runscript  # noqa: E402
from plugin_support import (  # noqa: E402
    KODAK, restore_imageio, restore_pillow, snapshot_imageio, snapshot_pillow, subprocess_env,
)

#: An asset script as someone would have written it for PNG: no ANI import anywhere.
ASSET_SCRIPT = '''\
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image

source, out = sys.argv[1], Path(sys.argv[2])
with Image.open(source) as im:
    crop = im.convert("RGB").crop((0, 0, 16, 12))
crop.save(out / "pillow.ani", bits=4, effort=1)
iio.imwrite(out / "imageio.ani", np.asarray(crop), bits=3, effort=1)
with Image.open(out / "pillow.ani") as im:
    print(im.format, im.size, iio.imread(out / "imageio.ani").shape)
'''


@pytest.fixture(autouse=True)
def registries():
    pillow, imageio = snapshot_pillow(), snapshot_imageio()
    yield
    restore_pillow(pillow)
    restore_imageio(imageio)


def test_an_unmodified_script_writes_ani_with_both_libraries(tmp_path):
    script = tmp_path / "assets.py"
    script.write_text(ASSET_SCRIPT)
    args = [str(script), str(KODAK / "kodim05.png"), str(tmp_path)]
    plain = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=subprocess_env(),
                           timeout=120)
    assert plain.returncode != 0 and "unknown file extension: .ani" in plain.stderr  # without the runner
    out = subprocess.run([sys.executable, "-m", "core.runscript", *args], capture_output=True, text=True,
                         env=subprocess_env(), timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ANI", "(16,", "12)", "(12,", "16,", "3)"]
    assert core.read_header(tmp_path / "pillow.ani").bits == 4
    assert core.read_header(tmp_path / "imageio.ani").bits == 3  # our encoder, not a 8-colour palette


def _probe(tmp_path, body: str = ""):
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent(f"""\
        import json, sys
        from PIL import Image
        from imageio.config import known_plugins
        report = {{"name": __name__, "argv": sys.argv, "path0": sys.path[0],
                   "pillow": Image.EXTENSION.get(".ani"), "imageio": "ani" in known_plugins}}
        with open(sys.argv[-1], "w") as fh:
            json.dump(report, fh)
        {body}
        """))
    return script


def test_main_sets_name_argv_and_path_and_restores_them(tmp_path):
    script = _probe(tmp_path)
    report = tmp_path / "report.json"
    argv, path = sys.argv[:], sys.path[:]
    assert runscript.main([str(script), "--flag", "value", str(report)]) == 0
    assert json.loads(report.read_text()) == {
        "name": "__main__", "argv": [str(script), "--flag", "value", str(report)],
        "path0": str(tmp_path), "pillow": "ANI", "imageio": True,
    }
    assert sys.argv == argv and sys.path == path


def test_the_scripts_exit_status_propagates(tmp_path):
    script = _probe(tmp_path, "sys.exit(3)")
    argv = sys.argv[:]
    with pytest.raises(SystemExit) as info:
        runscript.main([str(script), str(tmp_path / "report.json")])
    assert info.value.code == 3 and sys.argv == argv


def test_run_a_module(tmp_path, monkeypatch):
    (tmp_path / "asset_tool.py").write_text(_probe(tmp_path).read_text())
    monkeypatch.chdir(tmp_path)
    report = tmp_path / "report.json"
    assert runscript.main(["-m", "asset_tool", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["name"] == "__main__" and result["argv"][1:] == [str(report)]
    assert result["argv"][0].endswith("asset_tool.py") and result["pillow"] == "ANI"


@pytest.mark.parametrize("argv, message", [
    ([], "usage"),
    (["missing_script.py"], "no such file"),
    (["-m"], "usage"),
])
def test_usage_errors(argv, message, capsys):
    assert runscript.main(argv) == 2
    assert message in capsys.readouterr().err
