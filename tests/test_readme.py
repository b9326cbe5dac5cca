"""The README's Python examples outside the plugin sections run as written
(the plugin sections are run by test_plugin_docs.py)."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
PLUGIN_SECTIONS = re.compile(r"^## (Pillow plugin|imageio plugin|Existing scripts)\b")


def test_readme_python_examples_run(tmp_path, monkeypatch):
    text = "".join(s for s in re.split(r"(?m)^(?=## )", README.read_text()) if not PLUGIN_SECTIONS.match(s))
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})
