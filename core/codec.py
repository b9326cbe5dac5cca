"""The public codec API on numpy arrays and bytes: :func:`encode`, :func:`decode`."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import container
from .errors import AniFormatError, AniLimitError, AniOptionError
from .hooks import family_by_code, model_families, resolve
from .options import EncodeOptions

#: ``progress(done, total)`` callback type used by long operations.
Progress = Callable[[int, int], None]

_CHANNELS_TO_MODE = container.MODES


def _as_image(array: Any) -> np.ndarray:
    a = np.asarray(array)
    if a.dtype != np.uint8:
        raise AniOptionError(f"invalid image array dtype {a.dtype}: allowed uint8")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in _CHANNELS_TO_MODE:
        raise AniOptionError(
            f"invalid image array shape {np.shape(array)}: allowed (H, W), (H, W, 2), (H, W, 3) or (H, W, 4)"
        )
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise AniOptionError(f"invalid image array shape {np.shape(array)}: the image is empty")
    try:
        container.check_limits(a.shape[1], a.shape[0], 0, 0)
    except AniLimitError as exc:  # an input, not a file: an option/input error, before any copy
        raise AniOptionError(f"invalid image array of shape {np.shape(array)}: too large for .ani ({exc})") from None
    return np.ascontiguousarray(a)


def encode(
    array: Any,
    options: EncodeOptions | None = None,
    *,
    metadata: dict | None = None,
    progress: Progress | None = None,
    **kwargs: Any,
) -> bytes:
    """Fit a neural image to ``array`` and return the ``.ani`` file bytes.

    Args:
        array: uint8 array of shape (H, W) (L), (H, W, 2) (LA), (H, W, 3) (RGB)
            or (H, W, 4) (RGBA).
        options: an :class:`EncodeOptions`; or give the options as keywords
            (``bits=4, quality=80, ...``), not both.
        metadata: optional ``{"icc_profile": bytes, "exif": bytes, "xmp": bytes}``
            stored verbatim.
        progress: optional ``progress(step, total_steps)`` callback.

    Raises:
        AniOptionError: an unknown or out-of-range option, or an unsupported
            array (dtype, shape, or larger than the format's limits: 65536
            pixels per side, 2**28 pixels).
    """
    if options is not None and kwargs:
        raise AniOptionError("give either an EncodeOptions or keyword options, not both")
    opts = options if options is not None else EncodeOptions.from_kwargs(kwargs)
    image = _as_image(array)
    if metadata:
        unknown = sorted(set(metadata) - set(container.META_TAGS))
        if unknown:
            raise AniOptionError(f"unknown metadata key(s) {', '.join(unknown)}: allowed {', '.join(container.META_TAGS)}")
    family = model_families()[opts.model]
    fitted = resolve(family["fit"])(image, opts, progress)
    h, w, c = image.shape
    data = container.pack(
        width=w,
        height=h,
        channels=c,
        model_code=family["code"],
        bits=opts.bits,
        n_latents=fitted.n_latents,
        n_params=fitted.n_params,
        quality=int(round(opts.quality)),
        effort=opts.effort,
        sections=fitted.sections,
        metadata=metadata,
        flags=getattr(fitted, "flags", 0),
    )
    return data


def decode(data: Any, size: tuple[int, int] | None = None, subnet: Any = None, device: str = "cpu") -> np.ndarray:
    """Decode ``.ani`` bytes (or a path) to a uint8 array in the stored mode.

    Args:
        data: the file's bytes, or a path to it.
        size: ``(width, height)`` to render at; the network is sampled directly
            at that resolution (up or down). Default: the stored size.
        subnet: sub-network to run, for families that store several.
        device: torch device for the synthesis (``cpu`` default; results on
            other devices may differ in the last bit of a pixel).

    Returns:
        array of shape (H, W) for L, else (H, W, C).
    """
    if isinstance(data, str) or hasattr(data, "__fspath__"):
        data = container._read_path(data)
    header, sections = container.parse(data)
    if size is not None:
        try:
            width, height = (int(v) for v in size)
        except (TypeError, ValueError):
            raise AniOptionError(f"invalid option size={size!r}: allowed a (width, height) pair") from None
        if (width, height) != tuple(size):
            raise AniOptionError(f"invalid option size={size!r}: allowed a (width, height) pair of integers")
        try:
            container.check_limits(width, height, 0, 0)
        except AniLimitError as exc:
            raise AniOptionError(f"invalid option size={size!r}: {exc}") from None
    else:
        width, height = header.width, header.height
    image = resolve(_family(header)["decode"])(header, sections, (width, height), subnet, device)
    return image[:, :, 0] if image.shape[2] == 1 else image


def _family(header):
    fam = family_by_code(header.model_code)
    if fam is None:
        raise AniFormatError(f"this file uses model code {header.model_code}, which no installed plugin decodes")
    return fam[1]


def describe(data: Any) -> dict:
    """What the model family says about a file's networks (``ani info``):
    for siren/mfn files the sub-networks held, with their parameter counts and
    the bytes of the file prefix each needs; ``{}`` for families without a
    description. Never imports torch."""
    if isinstance(data, str) or hasattr(data, "__fspath__"):
        data = container._read_path(data)
    header, sections = container.parse(data)
    fam = _family(header)
    return resolve(fam["describe"])(header, sections) if "describe" in fam else {}


def extract(data: Any, subnet: Any) -> bytes:
    """Cut sub-network ``subnet`` out of a supernet file (``subnet="all"``)
    into a smaller file that holds only it, without retraining. The integers
    are copied, so the new file decodes to exactly the pixels
    ``decode(data, subnet=subnet)`` gives. Metadata is kept."""
    if isinstance(data, str) or hasattr(data, "__fspath__"):
        data = container._read_path(data)
    header, sections = container.parse(data)
    fam = _family(header)
    if "extract" not in fam:
        raise AniOptionError(f"invalid option subnet={subnet!r}: {header.model} files hold one network, nothing to extract")
    arch, new_sections = resolve(fam["extract"])(header, sections, subnet)
    return container.pack(
        width=header.width, height=header.height, channels=header.channels, model_code=header.model_code,
        bits=header.bits, n_latents=0, n_params=arch.n_params(), quality=header.quality, effort=header.effort,
        sections=new_sections, metadata=header.metadata,
    )
