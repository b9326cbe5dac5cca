"""Regenerate the golden file of the core tests.

    python tests/make_golden.py

Encodes a tiny seeded synthetic RGB image (32x16, two latent levels, so the
context coding across levels is covered; effort=1, seed=0, the other
options at their defaults as listed in ``GOLDEN_OPTIONS``) and writes

* ``tests/data/golden.ani``: the encoded file, and
* ``tests/data/golden.png``: the pixels it decodes to (lossless PNG, Pillow);

and the same for a larger one, 136x124 (``golden_large.{ani,png}``), whose
finest level has at least ``SUBLATTICE_MIN`` latents and so is coded in
format version 3's five passes (the small image's levels have three).

``tests/test_codec.py`` decodes the committed ``golden.ani`` and compares the
result with ``golden.png`` pixel for pixel, and checks the header fields
against ``GOLDEN_OPTIONS``. ``golden_v1.ani`` / ``golden_v1.png`` and
``golden_v2.ani`` / ``golden_v2.png`` are the small image written by this
script in format versions 1 and 2: they are never regenerated, and keep the
reading of older files tested. Run this script again (and commit both files) only
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
#: format version 2's (fixed)
GOLDEN_V2_ANI = DATA / "golden_v2.ani"
GOLDEN_V2_PNG = DATA / "golden_v2.png"
#: the larger golden image: five context passes at its finest level
GOLDEN_LARGE_ANI = DATA / "golden_large.ani"
GOLDEN_LARGE_PNG = DATA / "golden_large.png"
GOLDEN_LARGE_SIZE = (136, 124)

#: width, height of the golden image
GOLDEN_SIZE = (32, 16)
#: the encode options written into the golden file's header
GOLDEN_OPTIONS = {"bits": 4, "quality": 75, "effort": 1, "seed": 0, "device": "cpu"}


def golden_image(size: tuple[int, int] = GOLDEN_SIZE) -> np.ndarray:
    """The seeded RGB source image of ``size = (width, height)``, 32x16 by
    default (gradients plus a little noise)."""
    w, h = size
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
    DATA.mkdir(exist_ok=True)
    for size, ani, png in ((GOLDEN_SIZE, GOLDEN_ANI, GOLDEN_PNG), (GOLDEN_LARGE_SIZE, GOLDEN_LARGE_ANI, GOLDEN_LARGE_PNG)):
        data = core.encode(golden_image(size), **GOLDEN_OPTIONS)
        pixels = core.decode(data)
        ani.write_bytes(data)
        Image.fromarray(pixels, "RGB").save(png, format="PNG")  # PNG is lossless
        with Image.open(png) as im:  # check what was written reads back exactly
            assert np.array_equal(np.asarray(im.convert("RGB")), pixels)
        header = core.read_header(data)
        print(f"wrote {ani.relative_to(ROOT)} ({len(data)} bytes, {header.mode} {header.width}x{header.height}, "
              f"{header.n_latents} latents, {header.n_params} parameters) and {png.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
