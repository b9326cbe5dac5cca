"""The imageio v3 plugin class for ``.ani`` files (registered by :mod:`imageio_ani`)."""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
from imageio.core.request import URI_BYTES, URI_FILE, InitializationError, IOMode, Request
from imageio.core.v3_plugin_api import ImageProperties, PluginV3

import core
from core.errors import AniFormatError, AniOptionError

EXTENSION = ".ani"


class AniImageError(AniFormatError, OSError):
    """An ``.ani`` resource that cannot be read (truncated, corrupt, beyond
    limits): both an ``OSError`` and a :class:`core.AniFormatError`."""


class AniPlugin(PluginV3):
    """Read and write ``.ani`` neural images.

    Reading accepts any resource that starts with the ANI signature (whatever
    its extension); writing accepts requests whose extension is ``.ani`` (pass
    ``extension=".ani"`` for ``"<bytes>"`` or file objects). Anything else
    raises imageio's ``InitializationError`` so other plugins get their turn.
    """

    def __init__(self, request: Request) -> None:
        super().__init__(request)
        self._data: bytes | None = None
        self._header = None
        if request.mode.io_mode == IOMode.read:
            if request._uri_type == URI_FILE and not _seekable(request.get_file()):
                # peeking would consume the stream for the plugins tried after this one
                raise InitializationError("the ani plugin reads seekable file objects only")
            if not core.is_ani(request.firstbytes[:8]):
                raise InitializationError(f"{_source(request)} is not an .ani file (no ANI signature)")
        elif (request.extension or request.format_hint or "").lower() != EXTENSION:
            raise InitializationError(
                f"the ani plugin writes .ani files only, not {request.extension or 'a resource without extension'} "
                "(for <bytes> or a file object pass extension='.ani')"
            )

    # -- reading ---------------------------------------------------------------------------------------

    def _load(self):
        if self._header is None:
            data = self.request.get_file().read()
            try:
                self._header = core.read_header(data)
            except AniFormatError as e:
                raise AniImageError(f"cannot read {_source(self.request)}: {e}") from e
            self._data = data
        return self._header

    def read(self, *, index: Any = None, size: tuple[int, int] | None = None, subnet: Any = None,
             device: str = "cpu") -> np.ndarray:
        """Render the image.

        Args:
            index: ``0`` or ``None`` for the image, ``...`` for a batch of one
                (shape ``(1, H, W[, C])``). ANI files hold one image.
            size: ``(width, height)`` to render at; the network is sampled
                directly there (default: the stored size).
            subnet: sub-network to run, for families that store several.
            device: torch device of the synthesis, ``cpu`` (default) or ``cuda``.

        Returns:
            uint8 array (H, W) for L, else (H, W, C) with C = 2, 3 or 4.
        """
        _check_index(index)
        self._load()
        try:
            image = core.decode(self._data, size=size, subnet=subnet, device=device)
        except AniFormatError as e:
            raise AniImageError(f"cannot decode {_source(self.request)}: {e}") from e
        return image[None] if index is Ellipsis else image

    def iter(self, **kwargs: Any) -> Iterator[np.ndarray]:
        """Yield the one image of the file (``read`` keywords apply)."""
        yield self.read(index=0, **kwargs)

    def properties(self, index: Any = None, *, size: tuple[int, int] | None = None) -> ImageProperties:
        """Shape and dtype of what :meth:`read` returns, from the header only."""
        _check_index(index)
        header = self._load()
        width, height = size if size is not None else header.size
        shape = (height, width) if header.channels == 1 else (height, width, header.channels)
        if index is Ellipsis:
            return ImageProperties(shape=(1, *shape), dtype=np.dtype(np.uint8), n_images=1, is_batch=True)
        return ImageProperties(shape=shape, dtype=np.dtype(np.uint8))

    def metadata(self, index: Any = None, exclude_applied: bool = True) -> dict[str, Any]:
        """Header fields (``mode``, ``model``, ``bits``, ``quality``, ``effort``,
        ``version``, ``n_latents``, ``n_params``, ``file_size``, ``bpp``) and the
        stored ``icc_profile`` / ``exif`` / ``xmp`` bytes (none is applied to the
        pixels, so ``exclude_applied`` removes nothing)."""
        _check_index(index)
        h = self._load()
        meta = {"mode": h.mode, "width": h.width, "height": h.height, "model": h.model, "bits": h.bits,
                "quality": h.quality, "effort": h.effort, "version": h.version, "n_latents": h.n_latents,
                "n_params": h.n_params, "file_size": h.file_size, "bpp": h.bpp}
        meta.update(h.metadata)
        return meta

    # -- writing ---------------------------------------------------------------------------------------

    def write(self, ndimage: Any, *, is_batch: bool | None = None, icc_profile: bytes | None = None,
              exif: bytes | None = None, xmp: bytes | str | None = None, progress: Any = None,
              **options: Any) -> bytes | None:
        """Encode one image to ``.ani``.

        Args:
            ndimage: uint8 (or bool) array (H, W), (H, W, 1), (H, W, 2), (H, W, 3)
                or (H, W, 4); a batch or list of exactly one image is accepted.
            is_batch: whether the first axis is a batch axis (default: guessed
                for 4-D arrays and lists).
            icc_profile, exif, xmp: metadata stored verbatim.
            progress: optional ``progress(step, total)`` callback of the fit.
            **options: the core encoder options (``bits``, ``quality``,
                ``rounding``, ``subnet``, ``model``, ``effort``, ``device``,
                ``seed``, ``ssl_a``, ``tau_max``, ``tau_decay``; see
                :class:`core.EncodeOptions`). Unknown names raise
                :class:`core.AniOptionError`.

        Returns:
            the file's bytes when writing to ``"<bytes>"``, else ``None``.
        """
        image = _single_image(ndimage, is_batch)
        if isinstance(xmp, str):
            xmp = xmp.encode("utf-8")
        metadata = {k: bytes(v) for k, v in (("icc_profile", icc_profile), ("exif", exif), ("xmp", xmp)) if v}
        data = core.encode(image, metadata=metadata, progress=progress, **options)
        file = self.request.get_file()
        file.write(data)
        return data if self.request._uri_type == URI_BYTES else None


def _source(request: Request) -> str:
    return "<bytes>" if request._uri_type == URI_BYTES else str(request.raw_uri)


def _seekable(file: Any) -> bool:
    try:
        return bool(file.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _check_index(index: Any) -> None:
    if index not in (None, 0, Ellipsis):
        raise ValueError(f"index {index!r} is out of range: ANI files hold one image (use 0 or ...)")


def _single_image(ndimage: Any, is_batch: bool | None) -> np.ndarray:
    if isinstance(ndimage, (list, tuple)):
        if len(ndimage) != 1:
            raise AniOptionError(f"ANI files hold one image; got a list of {len(ndimage)}")
        ndimage = ndimage[0]
    elif is_batch or (is_batch is None and np.ndim(ndimage) == 4):
        if len(ndimage) != 1:
            raise AniOptionError(f"ANI files hold one image; got a batch of {len(ndimage)}")
        ndimage = ndimage[0]
    image = np.asarray(ndimage)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.dtype != np.uint8:
        raise AniOptionError(
            f"invalid image dtype {image.dtype}: ANI stores 8-bit images; convert first (for example "
            "(img >> 8).astype('uint8') for uint16, (img * 255).round().astype('uint8') for floats in 0..1)"
        )
    return image
