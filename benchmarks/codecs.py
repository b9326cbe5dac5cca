"""The codecs the Kodak benchmark compares, with their settings, in one place.

Classical codecs (settings as in ``shared/data/kodak_baselines_summary.md``,
so the numbers can be checked against it):

* ``jpeg``: Pillow JPEG (libjpeg-turbo), quality 5..95 step 5, Pillow's
  defaults (4:2:0, standard Huffman tables). The BD-rate anchor.
* ``webp``: Pillow WebP lossy, quality 0..100 step 5, ``method=6``.
* ``jpeg2000``: Pillow JPEG 2000 (OpenJPEG), ``quality_mode="rates"``,
  ``quality_layers=[24 / target_bpp]`` for targets 0.05..4 bpp, 9/7 wavelet
  and colour transform (``irreversible=True, mct=1``).
* ``avif``: Pillow's built-in AVIF, quality 0..95 step 5, ``speed=6``, 4:2:0,
  the encoder's default tuning; ``avif_psnr``: the same with
  ``advanced={"tune": "psnr"}``.
* ``jxl``: JPEG XL through ``imagecodecs`` (libjxl, VarDCT), distance
  25..0.5, ``effort=7``; only where ``imagecodecs`` is installed.

``.ani`` runs at named presets (``PRESETS``): each is a set of
:class:`core.EncodeOptions` fields, swept over qualities; the codec is named
``ani_<preset>``.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, fields
from typing import Callable

import numpy as np

#: ``.ani`` presets: EncodeOptions fields other than quality. ``default`` is
#: EncodeOptions' own defaults; ``fast`` and ``slow`` change the fit's budget.
#: ``fast`` is effort 4 (half the default's step budget) because shorter fits
#: have not yet traded rate for distortion: kodim01 at quality 10 gave 1.44 bpp
#: / 21.3 dB at effort 2, 0.90 / 21.7 at effort 3 and 0.34 / 21.9 at 900 steps
#: (Pillow JPEG quality 5: 0.27 / 22.1).
PRESETS: dict[str, dict] = {
    "fast": {"effort": 4},
    "default": {},
    # the slower preset (at most 5 minutes an image on a 2-core CPU): effort
    # 9, 5000 steps, since issue 8's 24th round; effort 7 (2700 steps) before, kept
    # as ``old_slow`` to measure the change
    "slow": {"effort": 9},
    "old_slow": {"effort": 7},
    # the default before issue 8 made it fit in a minute (1800 steps, now effort 6):
    # kept to measure what that change cost
    "old_default": {"effort": 6},
    # the default with the rounding method it had before the SGA+ ablation: at
    # quality 90 a 192x192 kodim01 crop fits much better with it than with
    # ``linear`` (benchmarks/results/high_quality_study.md)
    "softround": {"rounding": "softround"},
}
#: the quality sweep of every preset (Kodak-average bpp from about 0.15 up)
DEFAULT_QUALITIES = (10, 25, 45, 70, 90)
DEFAULT_PRESETS = ("default",)

JPEG2000_TARGETS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0)
JXL_DISTANCES = (25, 20, 15, 12, 10, 8, 6, 5, 4, 3, 2.5, 2, 1.5, 1.25, 1, 0.75, 0.5)
CLASSICAL = ("jpeg", "webp", "jpeg2000", "avif", "avif_psnr", "jxl")
ANCHOR = "jpeg"


@dataclass(frozen=True)
class Codec:
    """One codec at one configuration, swept over ``settings``.

    ``encode(image, value)`` returns the whole file's bytes; ``decode(data)``
    returns the 8-bit RGB array (the conversion from the codec's output is
    part of the decode time).
    """

    name: str
    settings: dict[str, object]  # label -> the value passed to encode
    encode: Callable[[np.ndarray, object], bytes]
    decode: Callable[[bytes], np.ndarray]
    options: str  # the fixed options, recorded in every row


def _label(value: float) -> str:
    return f"{value:g}"


# --------------------------------------------------------------------------- Pillow codecs


def _pil_decode(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _pil_encoder(fmt: str, **fixed) -> Callable[[np.ndarray, object], bytes]:
    def encode(image: np.ndarray, value: object) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(image).save(buf, fmt, **fixed, **value)
        return buf.getvalue()

    return encode


def pillow_missing(feature: str) -> str | None:
    """Why Pillow cannot write ``feature`` (``jpg``, ``webp``, ``jpg_2000``, ``avif``), or None."""
    try:
        import PIL
        from PIL import features
    except ImportError:
        return "Pillow is not installed (pip install Pillow)"
    if not features.check(feature):
        return f"this Pillow {PIL.__version__} build has no {feature} support (pip install -U Pillow)"
    return None


def _fixed(d: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in d.items())


def classical(name: str, threads: int) -> Codec:
    """The classical codec ``name`` (one of ``CLASSICAL``); raises ``RuntimeError``
    saying why when it is not available here."""
    if name == "jpeg":
        fixed: dict = {}
        settings = {f"q={q}": {"quality": q} for q in range(5, 96, 5)}
        feature, fmt = "jpg", "JPEG"
    elif name == "webp":
        fixed = {"method": 6}
        settings = {f"q={q}": {"quality": q} for q in range(0, 101, 5)}
        feature, fmt = "webp", "WEBP"
    elif name == "jpeg2000":
        fixed = {"quality_mode": "rates", "irreversible": True, "mct": 1}
        settings = {f"rate={_label(24 / t)}": {"quality_layers": [24 / t]} for t in JPEG2000_TARGETS}
        feature, fmt = "jpg_2000", "JPEG2000"
    elif name in ("avif", "avif_psnr"):
        fixed = {"speed": 6, "subsampling": "4:2:0", "max_threads": threads}
        if name == "avif_psnr":
            fixed["advanced"] = {"tune": "psnr"}
        settings = {f"q={q}": {"quality": q} for q in range(0, 96, 5)}
        feature, fmt = "avif", "AVIF"
    elif name == "jxl":
        return _jxl(threads)
    else:
        raise ValueError(f"unknown codec {name!r}: allowed {', '.join(CLASSICAL)} or ani_<preset>")
    why = pillow_missing(feature)
    if why:
        raise RuntimeError(f"{name}: {why}")
    return Codec(name, settings, _pil_encoder(fmt, **fixed), _pil_decode, _fixed(fixed))


def _jxl(threads: int) -> Codec:
    try:
        import imagecodecs
    except ImportError:
        raise RuntimeError("jxl: imagecodecs is not installed (pip install imagecodecs); skipped") from None
    if not getattr(imagecodecs, "JPEGXL", None) or not imagecodecs.JPEGXL.available:
        raise RuntimeError("jxl: this imagecodecs build has no JPEG XL codec; skipped")

    def encode(image: np.ndarray, distance: object) -> bytes:
        return bytes(imagecodecs.jpegxl_encode(image, distance=distance, effort=7, numthreads=threads))

    def decode(data: bytes) -> np.ndarray:
        return np.asarray(imagecodecs.jpegxl_decode(data, numthreads=threads))

    settings = {f"d={_label(d)}": d for d in JXL_DISTANCES}
    return Codec("jxl", settings, encode, decode, f"effort=7,numthreads={threads}")


# --------------------------------------------------------------------------- .ani


def preset_options(preset: str) -> dict:
    """The EncodeOptions fields of ``preset`` (quality excluded), all of them."""
    from core.options import EncodeOptions

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: allowed {', '.join(PRESETS)}")
    opts = EncodeOptions(**PRESETS[preset])
    values = {f.name: getattr(opts, f.name) for f in fields(opts) if f.name != "quality"}
    values["device"] = opts.resolved_device()
    return values


def ani(preset: str, qualities) -> Codec:
    """``.ani`` at ``preset``, swept over ``qualities``."""
    import core
    from core.options import EncodeOptions

    opts = preset_options(preset)

    def encode(image: np.ndarray, quality: object) -> bytes:
        return core.encode(image, EncodeOptions(**opts, quality=quality))

    def decode(data: bytes) -> np.ndarray:
        out = core.decode(data)
        return out if out.ndim == 3 else np.repeat(out[..., None], 3, axis=2)

    settings = {f"q={_label(q)}": float(q) for q in qualities}
    return Codec(f"ani_{preset}", settings, encode, decode, _fixed(opts))
