#!/usr/bin/env bash
# The main job on a fresh machine: install ANI, encode a sample image with the
# default options, decode it back, and report size, bpp and PSNR.
#
#   bash scripts/demo.sh [IMAGE]
#
# IMAGE defaults to ../shared/data/kodak/kodim23.png (relative to the
# repository root) when it exists, else a synthetic test image made here with
# numpy and Pillow. The default encode takes a minute or two on a 2-core CPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The CPU build of torch first: a looser requirement could pull a multi-GB CUDA build.
python3 -m pip install torch==2.13.0
python3 -m pip install -e '.[all]'

if command -v ani >/dev/null 2>&1; then
    ANI=(ani)
else  # the console script is not on PATH (e.g. a --user install): same command
    ANI=(python3 -m core)
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ani-demo.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

SOURCE="${1:-../shared/data/kodak/kodim23.png}"
if [[ ! -f "$SOURCE" ]]; then
    echo "demo: $SOURCE not found; using a synthetic 256x192 test image" >&2
    SOURCE="$WORK/synthetic.png"
    python3 - "$SOURCE" <<'PY'
import sys

import numpy as np
from PIL import Image

h, w = 192, 256
y, x = np.mgrid[0:h, 0:w].astype(np.float64)
rgb = np.stack([
    255 * x / (w - 1),
    255 * y / (h - 1),
    127.5 + 127.5 * np.sin(x / 13.0) * np.cos(y / 17.0),
], axis=-1)
rgb[(x - 90) ** 2 + (y - 100) ** 2 < 45 ** 2] = (230, 40, 40)   # a red disc
rgb[30:80, 150:230] = (20, 60, 200)                               # a blue block
rgb += np.random.default_rng(0).normal(0, 4, rgb.shape)           # a little grain
Image.fromarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8), "RGB").save(sys.argv[1])
PY
fi

echo "demo: encoding $SOURCE with the default options" >&2
t0=$(date +%s.%N)
"${ANI[@]}" encode "$SOURCE" "$WORK/image.ani"
t1=$(date +%s.%N)
"${ANI[@]}" decode "$WORK/image.ani" "$WORK/decoded.png"
t2=$(date +%s.%N)
"${ANI[@]}" info "$WORK/image.ani"

python3 - "$SOURCE" "$WORK/image.ani" "$WORK/decoded.png" "$t0" "$t1" "$t2" <<'PY'
import math
import os
import sys

import numpy as np
from PIL import Image

source, ani, decoded = sys.argv[1:4]
t0, t1, t2 = (float(v) for v in sys.argv[4:7])
a = np.asarray(Image.open(source).convert("RGB"), dtype=np.float64)
b = np.asarray(Image.open(decoded).convert("RGB"), dtype=np.float64)
size = os.path.getsize(ani)
h, w = a.shape[:2]
mse = float(np.mean((a - b) ** 2))  # over all pixels and channels of the 8-bit RGB images
psnr = 10 * math.log10(255**2 / mse) if mse > 0 else float("inf")
print(f"image:       {source} ({w}x{h})")
print(f"file size:   {size} bytes")
print(f"bpp:         {size * 8 / (w * h):.4f}")
print(f"PSNR:        {psnr:.2f} dB")
print(f"encode time: {t1 - t0:.1f} s, decode time: {t2 - t1:.1f} s")
PY
