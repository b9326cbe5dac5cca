"""ANI: neural image codec. ``.ani`` files hold a small quantized network.

Importing ``core`` is cheap and changes nothing global: torch is imported only
when pixels are encoded or decoded.

    >>> import core
    >>> data = core.encode(rgb_array, bits=4, quality=75)   # doctest: +SKIP
    >>> core.read_header(data).size                          # doctest: +SKIP
    >>> pixels = core.decode(data, size=(384, 256))          # doctest: +SKIP
"""
from .container import FORMAT_VERSION, Header, is_ani, read_header
from .errors import (
    AniError, AniFormatError, AniLimitError, AniOptionError, AniTruncatedWarning, AniVerifyError, AniWarning, NotAniError,
)
from .options import EncodeOptions

__version__ = "0.1.0"


def encode(array, options=None, **kwargs):
    """See :func:`core.codec.encode`."""
    from .codec import encode as _encode

    return _encode(array, options, **kwargs)


def decode(data, size=None, subnet=None, device="cpu"):
    """See :func:`core.codec.decode`."""
    from .codec import decode as _decode

    return _decode(data, size=size, subnet=subnet, device=device)


def extract(data, subnet):
    """See :func:`core.codec.extract`."""
    from .codec import extract as _extract

    return _extract(data, subnet)


def describe(data):
    """See :func:`core.codec.describe`."""
    from .codec import describe as _describe

    return _describe(data)


__all__ = [
    "encode", "decode", "read_header", "is_ani", "Header", "EncodeOptions", "FORMAT_VERSION",
    "AniError", "AniFormatError", "AniLimitError", "AniOptionError", "AniVerifyError", "NotAniError",
    "AniWarning", "AniTruncatedWarning", "extract", "describe",
]
