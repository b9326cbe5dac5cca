"""Ordinary image files (PNG, JPEG, ...) in and out, through Pillow, imported
lazily: the codec itself (:mod:`core`) works on arrays and bytes only."""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from ..errors import AniError, AniLimitError
from .results import error_text

#: Extension of the codec's files.
ANI_EXTENSION = "ani"


def _pillow():
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - depends on the environment
        raise AniError("reading and writing PNG/JPEG needs Pillow: pip install 'ani-codec[pillow]'") from None
    return Image


def read_image(source: str | os.PathLike | bytes, name: str | None = None) -> tuple[Any, dict[str, bytes]]:
    """Read any Pillow-readable image as a uint8 array in a mode the codec stores.

    Palette, bilevel, CMYK, YCbCr, 16-bit and float images are converted to
    L, LA, RGB or RGBA (palette transparency becomes alpha). The first frame of
    an animation is used. ICC profile, EXIF and XMP are returned as codec
    metadata (``{"icc_profile": ..., "exif": ..., "xmp": ...}``); pixels are
    not rotated by the EXIF orientation, which stays in the EXIF.

    Args:
        source: a path, or the file's bytes.
        name: how messages name the image (default: the path, or ``<bytes>``).

    Raises:
        OSError: the file cannot be opened (missing, permission).
        AniError: the file is not an image Pillow can read, or is broken.
        AniLimitError: the image is larger than the codec's limits (checked
            from the image's header, before its pixels are decoded).
    """
    Image = _pillow()
    if isinstance(source, (bytes, bytearray, memoryview)):
        fp, label = io.BytesIO(bytes(source)), name or "<bytes>"
    else:
        fp, label = source, name or str(source)
    try:
        return _read_image(Image, fp)
    except (AniError, MemoryError):
        raise
    except Image.UnidentifiedImageError:
        raise AniError(f"{label}: not an image file that Pillow can read") from None
    except OSError as exc:
        if exc.errno is not None:  # missing file, permission, ...: the message names the file
            raise
        raise AniError(f"{label}: cannot read as an image ({error_text(exc)})") from None
    except Image.DecompressionBombError as exc:
        raise AniLimitError(f"{label}: {error_text(exc)}") from None
    except Exception as exc:  # Pillow plugins raise many types on broken files
        raise AniError(f"{label}: cannot read as an image ({type(exc).__name__}: {exc})") from None


def _read_image(Image, fp) -> tuple[Any, dict[str, bytes]]:
    import numpy as np

    from ..container import check_limits

    with Image.open(fp) as im:
        check_limits(im.width, im.height, 0, 0)  # before decoding any pixel
        im.load()
        info = dict(im.info)
        metadata = _metadata_from_info(im, info)
        mode = im.mode
        if mode in ("L", "LA", "RGB", "RGBA"):
            out = im
        elif mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
            a = np.asarray(im).astype(np.float64)
            if mode.startswith("I;16") or (mode == "I" and a.max(initial=0) > 255):
                a = a / 257.0  # 16-bit range onto 8 bits
            elif mode == "F" and a.max(initial=0) <= 1.0:
                a = a * 255.0
            return np.clip(np.rint(a), 0, 255).astype(np.uint8), metadata
        elif mode == "1":
            out = im.convert("L")
        elif mode in ("La",):
            out = im.convert("LA")
        elif mode in ("RGBa",):
            out = im.convert("RGBA")
        elif mode in ("P", "PA"):
            has_alpha = mode == "PA" or "transparency" in info
            out = im.convert("RGBA" if has_alpha else "RGB")
        else:  # CMYK, YCbCr, LAB, HSV, RGBX, ...
            if mode in ("CMYK", "LAB", "HSV"):
                metadata.pop("icc_profile", None)  # describes the old colour space
            out = im.convert("RGBA" if "A" in mode.replace("LAB", "") else "RGB")
        return np.array(out, dtype=np.uint8), metadata


def _metadata_from_info(im, info: dict) -> dict[str, bytes]:
    meta: dict[str, bytes] = {}
    icc = info.get("icc_profile")
    if icc:
        meta["icc_profile"] = bytes(icc)
    exif = info.get("exif")
    if not exif:
        try:
            exif_obj = im.getexif()
            exif = exif_obj.tobytes() if len(exif_obj) else None
        except Exception:  # malformed EXIF must not stop a conversion
            exif = None
    if exif:
        meta["exif"] = bytes(exif)
    xmp = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if xmp:
        meta["xmp"] = xmp.encode("utf-8") if isinstance(xmp, str) else bytes(xmp)
    return meta


def format_for(path: str | os.PathLike) -> str:
    """Pillow's format name for an output path's extension (``PNG`` for ``.png``).

    Raises:
        AniError: an ``.ani`` output, or an extension Pillow does not write.
    """
    Image = _pillow()
    path = Path(path)
    ext = path.suffix.lower()
    if ext == "." + ANI_EXTENSION:
        raise AniError(f"{path}: an .ani output is written by 'ani encode', not by decoding")
    fmt = Image.registered_extensions().get(ext)
    if fmt is None:
        raise AniError(f"{path}: unknown image extension {ext or '(none)'!r}; use .png")
    return fmt


def image_bytes(array, path: str | os.PathLike, metadata: dict | None = None) -> bytes:
    """Encode a decoded array as the image format named by ``path``'s extension
    (PNG for ``.png``), carrying ICC profile, EXIF and XMP where the format can.
    Only the name of ``path`` is used; nothing is written."""
    Image = _pillow()
    path = Path(path)
    fmt = format_for(path)
    im = Image.fromarray(array)
    kwargs: dict[str, Any] = {}
    metadata = metadata or {}
    if metadata.get("icc_profile"):
        kwargs["icc_profile"] = metadata["icc_profile"]
    if metadata.get("exif"):
        kwargs["exif"] = metadata["exif"]
    if metadata.get("xmp"):
        if fmt == "PNG":
            from PIL.PngImagePlugin import PngInfo

            info = PngInfo()
            info.add_itxt("XML:com.adobe.xmp", metadata["xmp"].decode("utf-8", "replace"))
            kwargs["pnginfo"] = info
        else:
            kwargs["xmp"] = metadata["xmp"]
    buf = io.BytesIO()
    try:
        im.save(buf, format=fmt, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise AniError(f"cannot write a {im.mode} image as {fmt} ({path.name}): {exc}") from None
    return buf.getvalue()
