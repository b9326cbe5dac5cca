"""The valid files mutations start from: tiny images of every mode, several
bit-widths and level counts, one with metadata, one large enough for five
context passes, and siren/mfn files (two of them progressive supernets),
encoded at effort 1."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

#: name -> (channels, width, height, bits, with metadata)
SEED_IMAGES = {
    "l-8x8-b2": (1, 8, 8, 2, False),
    "la-12x10-b3": (2, 12, 10, 3, False),
    "rgb-16x16-b4-meta": (3, 16, 16, 4, True),
    "rgba-24x16-b8": (4, 24, 16, 8, False),
    "rgb-32x32-b5": (3, 32, 32, 5, False),  # three latent levels
    # level 0 has 16864 >= SUBLATTICE_MIN latents: format version 3's five context passes
    "rgb-136x124-b4": (3, 136, 124, 4, False),
}

#: name -> (channels, width, height, encode options) of the coordinate-MLP
#: families; the ``subnet="all"`` ones are progressive (format 1.4)
SEED_NETWORKS = {
    "siren-rgb-16x12-all": (3, 16, 12, {"model": "siren", "supernet": (3, 8), "subnet": "all"}),
    "mfn-l-12x12-all": (1, 12, 12, {"model": "mfn", "supernet": (2, 8), "subnet": "all", "bits": 3}),
    "mfn-rgb-12x8-gabor": (3, 12, 8, {"model": "mfn", "filter": "gabor", "supernet": (2, 8), "subnet": (2, 4)}),
}

METADATA = {"icc_profile": b"\x00\x00\x02\x0cfake icc profile" + bytes(range(64)),
            "exif": b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x00\x00",
            "xmp": b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>fuzz</x:xmpmeta>"}


def image(channels: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    planes = [128 + 90 * np.sin(x / (2.0 + c) + c) * np.cos(y / (3.0 + c)) + rng.normal(0, 6, (height, width))
              for c in range(channels)]
    a = np.clip(np.rint(np.stack(planes, -1)), 0, 255).astype(np.uint8)
    return a[:, :, 0] if channels == 1 else a


def make_seeds() -> dict[str, bytes]:
    """Encode the seed images (effort 1, seed 0); a few seconds."""
    import core

    out = {}
    for name, (channels, width, height, bits, meta) in SEED_IMAGES.items():
        out[name] = core.encode(image(channels, width, height), bits=bits, effort=1, seed=0,
                                metadata=METADATA if meta else None)
    for name, (channels, width, height, options) in SEED_NETWORKS.items():
        out[name] = core.encode(image(channels, width, height), effort=1, seed=0, **options)
    return out


def save(seeds: dict[str, bytes], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        (folder / f"{name}.ani").write_bytes(data)


def load(folder: Path) -> dict[str, bytes]:
    files = {p.stem: p.read_bytes() for p in sorted(Path(folder).glob("*.ani"))}
    if not files:
        raise FileNotFoundError(f"no seed .ani files in {folder}")
    return files


def fingerprint(seeds: dict[str, bytes]) -> str:
    """A short hash of the seed files, to tell runs on different seeds apart."""
    h = hashlib.sha256()
    for name in sorted(seeds):
        h.update(name.encode() + b"\0" + seeds[name])
    return h.hexdigest()[:16]
