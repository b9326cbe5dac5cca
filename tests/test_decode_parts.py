"""``benchmarks/decode_parts.py`` times a real grid file whole and by part, and
refuses files of other model families with a clear message."""
import re

import numpy as np
import pytest
from plugin_support import kodak_crop

import core


@pytest.fixture(scope="module")
def grid_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("decode_parts") / "crop.ani"
    path.write_bytes(core.encode(kodak_crop("kodim23", (0, 0, 200, 160)), quality=45, effort=1))
    return path


def test_decode_parts_reports_each_part(grid_file, capsys):
    from benchmarks.decode_parts import main, parts

    got = parts(grid_file.read_bytes(), reps=2)
    assert set(got) == {"decode", "entropy", "render"}
    assert all(0 < low <= med for med, low in got.values())
    main([str(grid_file), "--reps", "1"])
    line = capsys.readouterr().out.strip()
    assert line.startswith("crop.ani: ")
    for part in ("decode", "entropy", "render"):
        assert re.search(part + r" \d+\.\d ms \(fastest \d+\.\d\)", line), line


def test_decode_parts_refuses_other_models():
    from benchmarks.decode_parts import parts

    image = np.full((16, 16, 3), 128, np.uint8)
    data = core.encode(image, model="siren", effort=1)
    with pytest.raises(SystemExit, match="grid images"):
        parts(data, reps=1)
