"""Regenerate the golden file of the core tests.

    python tests/make_golden.py

Encodes a tiny seeded synthetic RGB image (32x16, two latent levels, so the
context coding across levels is covered; effort=1, seed=0, the other
options at their defaults as listed in ``GOLDEN_OPTIONS``) and writes

* ``tests/data/golden.ani``: the encoded file, and
* ``tests/data/golden.png``: the pixels it decodes to (lossless PNG, Pillow).

``tests/test_codec.py`` decodes the committed ``golden.ani`` and compares the
result with ``golden.png`` pixel for pixel, and checks the header fields
against ``GOLDEN_OPTIONS``. ``golden_v1.ani`` / ``golden_v1.png`` are the same
image written by this script in format version 1 (before the context model of
version 2): they are never regenerated, and keep the reading of version 1
files tested. Run this script again (and commit both files) only
when the file format or the decoder changes on purpose: a golden file that
stops decoding to the same pixels is exactly what the test is there to catch.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"
GOLDEN_ANI = DATA / "golden.ani"
GOLDEN_PNG = DATA / "golden.png"
#: the golden file of format version 1 and its pixels (fixed: no longer written)
GOLDEN_V1_ANI = DATA / "golden_v1.ani"
GOLDEN_V1_PNG = DATA / "golden_v1.png"

#: width, height of the golden image
GOLDEN_SIZE = (32, 16)
#: the encode options written into the golden file's header
GOLDEN_OPTIONS = {"bits": 4, "quality": 75, "effort": 1, "seed": 0, "device": "cpu"}


def golden_image() -> np.ndarray:
    """The seeded 32x16 RGB source image (gradients plus a little noise)."""
    w, h = GOLDEN_SIZE
    rng = np.random.default_rng(20240)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = [
        40 + 180 * x / (w - 1),
        200 - 150 * y / (h - 1),
        128 + 80 * np.sin(x / 3.0) * np.cos(y / 2.5),
    ]
    a = np.stack(planes, axis=-1) + rng.normal(0, 3, size=(h, w, 3))
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    import torch
    from PIL import Image

    import core

    torch.set_num_threads(1)
    data = core.encode(golden_image(), **GOLDEN_OPTIONS)
    pixels = core.decode(data)
    DATA.mkdir(exist_ok=True)
    GOLDEN_ANI.write_bytes(data)
    Image.fromarray(pixels, "RGB").save(GOLDEN_PNG, format="PNG")  # PNG is lossless
    with Image.open(GOLDEN_PNG) as im:  # check what was written reads back exactly
        assert np.array_equal(np.asarray(im.convert("RGB")), pixels)
    header = core.read_header(data)
    print(f"wrote {GOLDEN_ANI.relative_to(ROOT)} ({len(data)} bytes, {header.mode} {header.width}x{header.height}, "
          f"{header.n_latents} latents, {header.n_params} parameters) and {GOLDEN_PNG.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
