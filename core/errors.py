"""The error hierarchy of the codec.

Every error the codec raises on purpose derives from :class:`AniError`.
Format and option errors also derive from :class:`ValueError`, so callers
that only know the standard library can still catch them.
"""


class AniError(Exception):
    """Base class of every error raised by the ANI codec."""


class AniFormatError(AniError, ValueError):
    """The data is not a valid ``.ani`` file: wrong magic, truncated, corrupt
    (checksum mismatch) or internally inconsistent."""


class NotAniError(AniFormatError):
    """The data does not start with the ``.ani`` magic: it is some other format.

    Plugins translate this into "not my format" so other readers get a turn.
    """


class AniLimitError(AniFormatError):
    """A header declares sizes beyond the decoder's limits; refused before
    anything is allocated."""


class AniOptionError(AniError, ValueError):
    """An encode or decode option is unknown or out of range, or the array
    given to encode is not an image it can take (dtype, shape, size)."""


class AniVerifyError(AniError):
    """The encoder's self-check failed: decoding the written stream did not
    reproduce the quantized values. This is a bug; please report it."""


class AniWarning(UserWarning):
    """Base class of the codec's warnings."""


class AniTruncatedWarning(AniWarning):
    """A truncated progressive (supernet) file was decoded: the image comes
    from the largest sub-network complete in the prefix, :attr:`subnet`
    ``(depth, width)``, not from the whole file."""

    def __init__(self, message: str, subnet: tuple[int, int]) -> None:
        super().__init__(message)
        self.subnet = subnet
