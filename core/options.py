"""Encode options: one frozen, validated dataclass and the mapping from keyword
arguments (CLI flags, Pillow ``encoderinfo``, imageio kwargs) onto it.

Each default is stated here once; docs and adapters refer to this module.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, fields
from typing import Any, Mapping

from .errors import AniOptionError

#: Model families known to the core. Further families register through the
#: plugin hooks (:mod:`core.hooks`); validation asks the plugin manager.
BUILTIN_MODELS = ("grid",)
DEVICES = ("auto", "cpu", "cuda")
NAMED_SUBNETS = ("full",)

DEFAULT_MODEL = "grid"
DEFAULT_BITS = 4
DEFAULT_QUALITY = 75
#: measured best of the built-in methods (benchmarks/results/rounding.md)
DEFAULT_ROUNDING = "linear"
DEFAULT_SUBNET = "full"
DEFAULT_EFFORT = 5
DEFAULT_DEVICE = "auto"
DEFAULT_SEED = 0
#: ``a`` of the SGA+ sigmoid scaled logit (``ssl``, ``ssl3``); the paper's best value
DEFAULT_SSL_A = 2.3
#: cap of the SGA temperature, ``tau(t) = min(exp(-c t), tau_max)`` (Yang et al. 2020)
DEFAULT_TAU_MAX = 1.0
#: ``c`` of the SGA temperature with ``t`` the fraction 0..1 of the fit done: the
#: papers' ``c = 0.001`` per iteration over 2,000 iterations
DEFAULT_TAU_DECAY = 2.0

MIN_BITS, MAX_BITS = 2, 8
MIN_EFFORT, MAX_EFFORT = 1, 9
MIN_SSL_A, MAX_SSL_A = 0.01, 100.0
MIN_TAU_MAX, MAX_TAU_MAX = 0.01, 1.0
MIN_TAU_DECAY, MAX_TAU_DECAY = 0.0, 100.0


def _fail(name: str, allowed: str, given: Any) -> AniOptionError:
    return AniOptionError(f"invalid option {name}={given!r}: allowed {allowed}")


def _int_in(name: str, value: Any, lo: int, hi: int) -> int:
    """An integer in ``lo..hi`` from an int (numpy ints too), an integral float
    or a decimal string; exact for large values."""
    allowed = f"an integer {lo}..{hi}"
    if isinstance(value, bool):
        raise _fail(name, allowed, value)
    if isinstance(value, numbers.Integral):
        result = int(value)
    elif isinstance(value, numbers.Real) and float(value).is_integer():
        result = int(value)
    elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        result = int(value.strip())
    else:
        raise _fail(name, allowed, value)
    if not lo <= result <= hi:
        raise _fail(name, allowed, value)
    return result


def _real_in(name: str, value: Any, lo: float, hi: float) -> float:
    """A real number in ``lo..hi`` (ints, floats, numpy scalars; not NaN)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not lo <= float(value) <= hi:
        raise _fail(name, f"a number {lo:g}..{hi:g}", value)
    return float(value)


@dataclass(frozen=True)
class EncodeOptions:
    """Options of :func:`core.encode`.

    Attributes:
        model: model family; ``grid`` (multi-resolution latent grids after
            SHACIRA, the default) or a family registered by a plugin.
        bits: bit-width 2..8 of quantized parameters. Synthesis weights are
            quantized with LSQ at this width; grid latents are clamped to the
            signed range ``[-2**(bits-1), 2**(bits-1) - 1]``.
        quality: 0..100, the rate-distortion trade-off; higher gives larger
            files and higher PSNR, as in JPEG/WebP. Sets lambda of
            ``loss = MSE + lambda * bpp``.
        rounding: how latents are rounded during fitting (the file always
            stores ``round(latent)``): ``ste`` (straight-through rounding
            throughout), ``noise`` (additive uniform noise, then
            straight-through), ``softround`` (soft rounding plus noise,
            annealed, then straight-through), ``sga`` (Stochastic Gumbel
            Annealing with atanh logits), the SGA+ logits ``linear`` (the
            default: the best in ``benchmarks/results/rounding.md``),
            ``cosine`` and ``ssl`` (sigmoid scaled logit, with ``ssl_a``), and
            their three-class forms ``linear3``, ``cosine3``, ``ssl3``
            (:mod:`core.rounding`, :mod:`core.sga`); plugins may add more.
        subnet: which sub-network to store; ``full`` (the only one a grid
            image has; the siren/mfn families will add ``(depth, width)``).
        effort: 1..9, compute budget of the fit (number of optimisation steps),
            like ``cwebp -m``; 5 is the default.
        device: ``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda``.
        seed: seed of every random draw of the fit; same input, options and
            seed give identical bytes on the same device type.
        ssl_a: 0.01..100, ``a`` of the ``ssl`` and ``ssl3`` rounding:
            ``p(floor) = sigmoid(-a logit(v - floor v))``; 1 is ``linear``,
            larger is closer to hard rounding.
        tau_max: 0.01..1, cap of the temperature of the SGA methods,
            ``tau(t) = min(exp(-tau_decay * t), tau_max)`` with ``t`` the
            fraction 0..1 of the fit done.
        tau_decay: 0..100, ``c`` of that schedule (0 keeps ``tau_max``).
    """

    model: str = DEFAULT_MODEL
    bits: int = DEFAULT_BITS
    quality: float = DEFAULT_QUALITY
    rounding: str = DEFAULT_ROUNDING
    subnet: Any = DEFAULT_SUBNET
    effort: int = DEFAULT_EFFORT
    device: str = DEFAULT_DEVICE
    seed: int = DEFAULT_SEED
    ssl_a: float = DEFAULT_SSL_A
    tau_max: float = DEFAULT_TAU_MAX
    tau_decay: float = DEFAULT_TAU_DECAY

    def __post_init__(self) -> None:
        from .hooks import known_models, known_roundings

        models = known_models()
        if self.model not in models:
            raise _fail("model", "one of " + ", ".join(models), self.model)
        object.__setattr__(self, "bits", _int_in("bits", self.bits, MIN_BITS, MAX_BITS))
        q = self.quality
        if isinstance(q, bool) or not isinstance(q, numbers.Real) or not 0 <= q <= 100:
            raise _fail("quality", "a number 0..100", q)
        object.__setattr__(self, "quality", float(q))
        roundings = known_roundings()
        if self.rounding not in roundings:
            raise _fail("rounding", "one of " + ", ".join(roundings), self.rounding)
        if self.subnet not in NAMED_SUBNETS:
            raise _fail("subnet", "one of " + ", ".join(NAMED_SUBNETS) + f" for model {self.model}", self.subnet)
        object.__setattr__(self, "effort", _int_in("effort", self.effort, MIN_EFFORT, MAX_EFFORT))
        if self.device not in DEVICES:
            raise _fail("device", "one of " + ", ".join(DEVICES), self.device)
        object.__setattr__(self, "seed", _int_in("seed", self.seed, 0, 2**63 - 1))
        object.__setattr__(self, "ssl_a", _real_in("ssl_a", self.ssl_a, MIN_SSL_A, MAX_SSL_A))
        object.__setattr__(self, "tau_max", _real_in("tau_max", self.tau_max, MIN_TAU_MAX, MAX_TAU_MAX))
        object.__setattr__(self, "tau_decay", _real_in("tau_decay", self.tau_decay, MIN_TAU_DECAY, MAX_TAU_DECAY))

    @classmethod
    def from_kwargs(cls, options: Mapping[str, Any] | None = None, **kwargs: Any) -> "EncodeOptions":
        """Build options from a mapping and/or keywords; unknown names raise.

        ``None`` values mean "use the default", so adapters can pass through
        optional arguments unchanged.
        """
        merged = dict(options or {})
        merged.update(kwargs)
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - names)
        if unknown:
            raise AniOptionError(
                f"unknown option(s) {', '.join(unknown)}: allowed {', '.join(sorted(names))}"
            )
        return cls(**{k: v for k, v in merged.items() if v is not None})

    def resolved_device(self) -> str:
        """The torch device string this fit runs on."""
        if self.device != "auto":
            if self.device == "cuda":
                import torch

                if not torch.cuda.is_available():
                    raise AniOptionError("invalid option device='cuda': allowed auto, cpu (no CUDA device is available)")
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
