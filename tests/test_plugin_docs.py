"""The examples of the plugin documentation run, and print what their comments say.

The sections ``## Pillow plugin``, ``## imageio plugin`` and ``## Existing scripts``
of ``docs/plugins.md`` and of ``README.md`` (wherever they live) are checked:
every ```python block in them runs in a fresh Python, in document order, in one
temporary folder per file (a later block may read what an earlier one wrote).
A line ``print(...)  # -> text`` must print ``text``; a text ending in ``...``
only has to start the printed line.
"""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytest.importorskip("PIL")
pytest.importorskip("imageio")

from plugin_support import ROOT, subprocess_env  # noqa: E402

DOCS = [path for path in (ROOT / "docs" / "plugins.md", ROOT / "README.md") if path.is_file()]
SECTIONS = re.compile(r"^## (Pillow plugin|imageio plugin|Existing scripts)\b")
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
EXPECT = re.compile(r"#\s*->\s*(.+?)\s*$")


def plugin_blocks(text: str) -> list[str]:
    """The python blocks of the plugin sections (a section ends at the next ``## `` heading)."""
    sections = [section for section in re.split(r"(?m)^(?=## )", text) if SECTIONS.match(section)]
    return BLOCK.findall("".join(sections))


def test_the_plugin_sections_have_examples():
    assert sum(len(plugin_blocks(path.read_text(encoding="utf-8"))) for path in DOCS) >= 4


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_examples_run_and_print_what_they_say(doc, tmp_path):
    for number, code in enumerate(plugin_blocks(doc.read_text(encoding="utf-8")), 1):
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                             env=subprocess_env(), timeout=300)
        assert out.returncode == 0, f"example {number} of {doc.name} failed:\n{code}\n{out.stderr}"
        printed = out.stdout.splitlines()
        position = 0
        for text in [m.group(1) for line in code.splitlines() if (m := EXPECT.search(line))]:
            prefix = text[:-3] if text.endswith("...") else None
            while position < len(printed) and not (
                printed[position].startswith(prefix) if prefix is not None else printed[position] == text
            ):
                position += 1
            assert position < len(printed), f"example {number} of {doc.name}: expected {text!r} in {printed}"
            position += 1
