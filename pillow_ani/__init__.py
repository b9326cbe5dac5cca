"""Pillow plugin for ``.ani`` neural images.

``import pillow_ani`` registers the ``ANI`` format with Pillow (open, save,
the ``.ani`` extension and the MIME type :data:`MIME_TYPE`); after that the
ordinary Pillow API works::

    import pillow_ani
    from PIL import Image

    Image.open("photo.png").save("photo.ani", bits=4, quality=80)
    with Image.open("photo.ani") as im:   # reads the container only, no torch
        im.thumbnail((128, 128))            # renders the network at the small size

The adapter is thin: pixels and bytes go through :func:`core.encode` and
:func:`core.decode`, options are the core's (:class:`core.EncodeOptions`).
Importing it does not import torch; the first ``load()`` or ``save()`` does.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

from PIL import Image, ImageFile

import core
from core.errors import AniFormatError, AniOptionError, NotAniError

FORMAT = "ANI"
FORMAT_DESCRIPTION = "ANI neural image"
EXTENSIONS = (".ani",)
#: Not registered with IANA; ``.ani`` cursors use application/x-navi-animation.
MIME_TYPE = "image/x-ani"

#: Encoder options accepted by ``Image.save``: every field of core.EncodeOptions.
ENCODER_OPTIONS = tuple(f.name for f in dataclasses.fields(core.EncodeOptions))
#: Metadata keys, as in ``im.info`` (Pillow's standard names).
METADATA_KEYS = ("icc_profile", "exif", "xmp")
#: Pillow's cross-format hints that mean nothing for a neural image; accepted and ignored
#: so that scripts written for PNG/JPEG run unchanged.
IGNORED_SAVE_KEYS = ("optimize", "dpi")
#: Read-time defaults :func:`register` accepts.
READ_OPTIONS = ("size", "scale", "subnet", "device")

#: Modes stored as they are, and modes converted on save (P: RGBA or RGB, by transparency).
_STORED = ("L", "LA", "RGB", "RGBA")
_CONVERT = {"1": "L", "La": "LA", "PA": "RGBA", "RGBa": "RGBA",
            "RGBX": "RGB", "CMYK": "RGB", "YCbCr": "RGB", "HSV": "RGB"}
_ICC_SPACE = {"L": b"GRAY", "LA": b"GRAY", "RGB": b"RGB ", "RGBA": b"RGB "}

_read_defaults: dict[str, Any] = {}


class AniImageError(AniFormatError, OSError):
    """A file with the ``.ani`` signature that cannot be read (truncated, corrupt,
    beyond limits). Both an ``OSError``, as Pillow raises for broken files, and
    a :class:`core.AniFormatError` (a ``ValueError``)."""


def _accept(prefix: bytes) -> bool:
    return core.is_ani(prefix)


class AniImageFile(ImageFile.ImageFile):
    """``Image.open`` result for ``.ani`` files: size, mode and info come from the
    header; ``load()`` runs the network, at :attr:`size` (see :meth:`draft`)."""

    format = FORMAT
    format_description = FORMAT_DESCRIPTION

    def _open(self) -> None:
        data = self.fp.read()  # the whole container: checksums and metadata live in its sections
        try:
            header = core.read_header(data)
        except NotAniError as e:
            raise SyntaxError(str(e)) from e  # "not my format": other plugins get their turn
        except AniFormatError as e:
            raise AniImageError(f"cannot open {self.filename or 'the .ani data'}: {e}") from e
        self.ani_header = header
        self._ani_data: bytes | None = data
        self._ani_options = dict(_read_defaults)
        self._mode = header.mode
        self._size = self._ani_base_size = _render_size(header.size, self._ani_options)
        for key in METADATA_KEYS:
            if key in header.metadata:
                self.info[key] = header.metadata[key]
        self.tile = []

    def draft(self, mode: str | None, size: tuple[int, int] | None):
        """Render directly at a reduced size: the smallest size of the same aspect
        ratio that covers ``size`` (as JPEG's draft, but at any scale). ``mode``
        is ignored. No effect once loaded."""
        if self._ani_data is None or not size:
            return None
        base_w, base_h = self._ani_base_size
        scale = max(size[0] / base_w, size[1] / base_h)
        new = self._ani_base_size if scale >= 1 else (_scaled(base_w, scale), _scaled(base_h, scale))
        if new == self.size:
            return None
        self._size = new
        return self.mode, (0, 0, new[0], new[1])

    def set_subnet(self, subnet: Any) -> None:
        """Run sub-network ``subnet`` (``full``, ``medium``, ``small`` or
        ``(depth, width)``) of a siren/mfn supernet file when loading; call
        before ``load()``. A smaller sub-network renders faster."""
        self._ani_options["subnet"] = subnet

    def load(self):
        if self._ani_data is not None:
            header = self.ani_header
            size = None if self.size == header.size else self.size
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", core.AniTruncatedWarning)
                    pixels = core.decode(
                        self._ani_data, size=size,
                        subnet=self._ani_options.get("subnet"), device=self._ani_options.get("device") or "cpu",
                    )
                for w in caught:  # a truncated supernet: say which sub-network the pixels come from
                    if isinstance(w.message, core.AniTruncatedWarning):
                        self.info["ani_truncated_subnet"] = w.message.subnet
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            except NotAniError as e:  # cannot happen after _open; keep the contract anyway
                raise AniImageError(str(e)) from e
            except AniFormatError as e:
                raise AniImageError(f"cannot decode {self.filename or 'the .ani data'}: {e}") from e
            self.load_prepare()
            self.frombytes(pixels.tobytes())
            self._ani_data = None
            self.readonly = 0
            if self._exclusive_fp and self._close_exclusive_fp_after_loading and self.fp:
                self.fp.close()
            self.fp = None
        return super().load()


def _scaled(n: int, scale: float) -> int:
    v = n * scale
    return max(1, round(v) if abs(v - round(v)) < 1e-6 else math.ceil(v))


def _render_size(stored: tuple[int, int], options: dict) -> tuple[int, int]:
    if options.get("size") is not None:
        return options["size"]
    if options.get("scale") is not None:
        return (_scaled(stored[0], options["scale"]), _scaled(stored[1], options["scale"]))
    return stored


def _check_read_options(options: dict) -> dict:
    unknown = sorted(set(options) - set(READ_OPTIONS))
    if unknown:
        raise AniOptionError(f"unknown read option(s) {', '.join(unknown)}: allowed {', '.join(READ_OPTIONS)}")
    size, scale = options.get("size"), options.get("scale")
    if size is not None and scale is not None:
        raise AniOptionError("give either size or scale as a read default, not both")
    if size is not None:
        if not (isinstance(size, (tuple, list)) and len(size) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
            raise AniOptionError(f"invalid option size={size!r}: allowed a (width, height) pair of positive integers")
        options["size"] = tuple(size)
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 64):
        raise AniOptionError(f"invalid option scale={scale!r}: allowed a number > 0 and <= 64")
    device = options.get("device")
    if device is not None and device not in ("cpu", "cuda"):
        raise AniOptionError(f"invalid option device={device!r}: allowed cpu, cuda")
    return options


# -- save ---------------------------------------------------------------------------------------------

def _storable(im: Image.Image) -> tuple[Image.Image, bool]:
    """The image in a stored mode, and whether it was converted."""
    if im.mode in _STORED:
        return im, False
    if im.mode == "P":
        return im.convert("RGBA" if im.has_transparency_data else "RGB"), True
    if im.mode in _CONVERT:
        return im.convert(_CONVERT[im.mode]), True
    raise OSError(
        f"cannot write mode {im.mode} as ANI: ANI stores 8-bit L, LA, RGB or RGBA; convert the image "
        "first (for 16-bit greyscale, e.g. Image.fromarray((numpy.asarray(im) >> 8).astype('uint8')))"
    )


def _split_encoderinfo(im: Image.Image) -> tuple[dict, dict, Any]:
    info = dict(im.encoderinfo)
    unknown = sorted(set(info) - set(ENCODER_OPTIONS) - set(METADATA_KEYS) - set(IGNORED_SAVE_KEYS)
                     - {"progress", "append_images"})
    if unknown:
        raise AniOptionError(
            f"unknown save option(s) {', '.join(unknown)} for ANI: allowed {', '.join(ENCODER_OPTIONS)}, "
            f"{', '.join(METADATA_KEYS)}, progress (and Pillow's {', '.join(IGNORED_SAVE_KEYS)}, ignored)"
        )
    if info.get("append_images"):
        raise AniOptionError("ANI files hold one image: append_images is not supported")
    options = {k: info[k] for k in ENCODER_OPTIONS if k in info}
    metadata = {}
    for key in METADATA_KEYS:
        value = info[key] if key in info else im.info.get(key)
        if isinstance(value, Image.Exif):
            value = value.tobytes()
        if isinstance(value, str):
            value = value.encode("utf-8")
        if value:
            metadata[key] = bytes(value)
    return options, metadata, info.get("progress")


def _save(im: Image.Image, fp, filename: str | bytes) -> None:
    import numpy as np

    options, metadata, progress = _split_encoderinfo(im)
    image, converted = _storable(im)
    icc = metadata.get("icc_profile")
    if converted and icc and icc[16:20] != _ICC_SPACE[image.mode]:
        warnings.warn(f"dropping the {icc[16:20].decode('latin-1').strip()} ICC profile of a mode {im.mode} image "
                      f"converted to {image.mode} for ANI", UserWarning, stacklevel=3)
        del metadata["icc_profile"]
    fp.write(core.encode(np.asarray(image), metadata=metadata, progress=progress, **options))


def _save_all(im: Image.Image, fp, filename: str | bytes) -> None:
    if getattr(im, "n_frames", 1) > 1:
        raise AniOptionError("ANI files hold one image: save one frame (im.seek(i); im.save(...)) per file")
    _save(im, fp, filename)


# -- registration ---------------------------------------------------------------------------------------

def _ours(obj: Any) -> bool:
    return getattr(obj, "__module__", None) == __name__


def register(**read_defaults: Any) -> None:
    """Register the ``ANI`` format with Pillow and set read-time defaults.

    Idempotent, and it never replaces another plugin's registration: an ``ANI``
    format id or ``.ani`` extension already taken by someone else is left alone
    (with a ``RuntimeWarning``); files are still recognised by their signature.

    Args:
        size: ``(width, height)`` every ``.ani`` opens at (the network is sampled there).
        scale: or render at ``scale`` times the stored size (``2`` for twice as large).
        subnet: sub-network to run, for model families that store several.
        device: torch device of the synthesis, ``cpu`` (default) or ``cuda``.

    Calling ``register()`` with no arguments keeps earlier defaults; pass
    ``None`` to reset one.
    """
    options = _check_read_options({**_read_defaults, **read_defaults})
    _read_defaults.clear()
    _read_defaults.update({k: v for k, v in options.items() if v is not None})
    owners = [Image.OPEN.get(FORMAT, (None,))[0], Image.SAVE.get(FORMAT), Image.SAVE_ALL.get(FORMAT)]
    foreign = [o for o in owners if o is not None and not _ours(o)]
    if foreign:
        warnings.warn(f"Pillow format id {FORMAT} is taken by {foreign[0]!r}; pillow_ani is not registered",
                      RuntimeWarning, stacklevel=2)
        return
    Image.register_open(FORMAT, AniImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_save_all(FORMAT, _save_all)
    Image.register_mime(FORMAT, MIME_TYPE)
    for ext in EXTENSIONS:
        owner = Image.EXTENSION.get(ext, FORMAT)
        if owner == FORMAT:
            Image.register_extension(FORMAT, ext)
        else:
            warnings.warn(f"the {ext} extension is registered to Pillow format {owner}; left as it is: save "
                          f".ani files with format='{FORMAT}'", RuntimeWarning, stacklevel=2)


def unregister() -> None:
    """Remove what :func:`register` added (and nothing that belongs to others)."""
    if not _ours(Image.OPEN.get(FORMAT, (None,))[0]):
        return
    del Image.OPEN[FORMAT]
    if FORMAT in Image.ID:
        Image.ID.remove(FORMAT)
    Image.SAVE.pop(FORMAT, None)
    Image.SAVE_ALL.pop(FORMAT, None)
    Image.MIME.pop(FORMAT, None)
    for ext in EXTENSIONS:
        if Image.EXTENSION.get(ext) == FORMAT:
            del Image.EXTENSION[ext]
    _read_defaults.clear()


register()

__all__ = ["register", "unregister", "AniImageFile", "AniImageError", "FORMAT", "EXTENSIONS", "MIME_TYPE"]
