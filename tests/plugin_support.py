"""Shared helpers of the plugin tests: test images, registry snapshots, a cursor file.

Not a conftest on purpose: the plugin tests import what they use. Encoded files
are cached per process (``functools.cache``) so each is fitted once per run.
"""
from __future__ import annotations

import functools
import io
import os
import struct
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"  # the data folder sits next to the checkout


def kodak_crop(name: str = "kodim23", box=(300, 200, 324, 216)) -> np.ndarray:
    """A small RGB crop of a Kodak image (24x16 by default)."""
    from PIL import Image

    with Image.open(KODAK / f"{name}.png") as im:
        return np.asarray(im.convert("RGB").crop(box))


def subprocess_env() -> dict:
    """Environment for child Pythons: the checkout importable, plugins' autoload unchanged."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


# -- registries ---------------------------------------------------------------------------------------

def snapshot_pillow() -> dict:
    """Pillow's registries. Loads all of Pillow's own plugins first: one imported
    lazily during a test would otherwise lose its registration on restore."""
    from PIL import Image

    import pillow_ani

    Image.init()
    return {
        "ID": list(Image.ID), "OPEN": dict(Image.OPEN), "SAVE": dict(Image.SAVE),
        "SAVE_ALL": dict(Image.SAVE_ALL), "EXTENSION": dict(Image.EXTENSION), "MIME": dict(Image.MIME),
        "DECODERS": dict(Image.DECODERS), "ENCODERS": dict(Image.ENCODERS),
        "read_defaults": dict(pillow_ani._read_defaults), "MAX_IMAGE_PIXELS": Image.MAX_IMAGE_PIXELS,
    }


def restore_pillow(snap: dict) -> None:
    from PIL import Image

    import pillow_ani

    Image.ID[:] = snap["ID"]
    for name in ("OPEN", "SAVE", "SAVE_ALL", "EXTENSION", "MIME", "DECODERS", "ENCODERS"):
        table = getattr(Image, name)
        table.clear()
        table.update(snap[name])
    pillow_ani._read_defaults.clear()
    pillow_ani._read_defaults.update(snap["read_defaults"])
    Image.MAX_IMAGE_PIXELS = snap["MAX_IMAGE_PIXELS"]


def snapshot_imageio() -> dict:
    from imageio import config

    return {
        "plugins": list(config.known_plugins.items()),
        "extensions": {k: list(v) for k, v in config.known_extensions.items()},
        "extension_list": list(config.extension_list),
        "priorities": {id(e): list(e.priority) for e in config.extension_list},
    }


def restore_imageio(snap: dict) -> None:
    from imageio import config

    config.known_plugins.clear()
    config.known_plugins.update(snap["plugins"])
    config.known_extensions.clear()
    config.known_extensions.update({k: list(v) for k, v in snap["extensions"].items()})
    config.extension_list[:] = snap["extension_list"]
    for entry in config.extension_list:
        entry.priority[:] = snap["priorities"].get(id(entry), entry.priority)


def same_imageio(a: dict, b: dict) -> bool:
    return (
        [(k, id(v)) for k, v in a["plugins"]] == [(k, id(v)) for k, v in b["plugins"]]
        and {k: [id(e) for e in v] for k, v in a["extensions"].items()}
        == {k: [id(e) for e in v] for k, v in b["extensions"].items()}
        and [id(e) for e in a["extension_list"]] == [id(e) for e in b["extension_list"]]
        and a["priorities"] == b["priorities"]
    )


# -- other formats ------------------------------------------------------------------------------------

def section_data(data: bytes, tag: bytes) -> range:
    """Where the data of the section ``tag`` lies in an ``.ani`` file, as the
    container's parser reads it (its data ends 4 bytes, the CRC, before the
    section's end): damage put there is caught by that section's CRC, whatever
    the file's layout."""
    from core.container import parse

    header, sections = parse(data)
    end = header.section_ends[tag] - 4
    return range(end - len(sections[tag]), end)


@functools.cache
def cursor_bytes() -> bytes:
    """A tiny Windows animated cursor (``RIFF....ACON``): one 16x16 frame, as
    Windows writes them (``anih`` header, ``LIST fram`` of ``icon`` chunks)."""
    from PIL import Image

    icon = io.BytesIO()
    Image.new("RGBA", (16, 16), (255, 0, 0, 255)).save(icon, format="ICO", sizes=[(16, 16)])
    icon = icon.getvalue()
    icon = icon[:2] + struct.pack("<H", 2) + icon[4:]  # resource type 2: cursor

    def chunk(tag: bytes, data: bytes) -> bytes:
        return tag + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")

    # cbSize, nFrames, nSteps, cx, cy, cBitCount, cPlanes, JifRate, flags (AF_ICON)
    anih = chunk(b"anih", struct.pack("<9I", 36, 1, 1, 0, 0, 0, 0, 10, 1))
    frames = chunk(b"LIST", b"fram" + chunk(b"icon", icon))
    body = b"ACON" + anih + frames
    return b"RIFF" + struct.pack("<I", len(body)) + body

