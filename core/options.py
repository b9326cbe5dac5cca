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
BUILTIN_MODELS = ("grid", "mfn", "siren")
DEVICES = ("auto", "cpu", "cuda")
NAMED_SUBNETS = ("full",)
#: Families that are coordinate MLPs trained as Once-for-All supernets
#: (``core/inr``); the options below apply to them only.
INR_MODELS = ("siren", "mfn")
#: ``full``: the largest sub-network; ``all``: the whole supernet (any
#: sub-network can be run from the file); ``medium``, ``small``: see
#: :meth:`core.inr.layout.InrArch.named`.
INR_NAMED_SUBNETS = ("full", "all", "medium", "small")
ELASTIC = ("depth+width", "depth", "width", "none")
FILTERS = ("fourier", "gabor")

DEFAULT_MODEL = "grid"
DEFAULT_BITS = 4
DEFAULT_QUALITY = 75
#: measured best of the built-in methods (benchmarks/results/rounding.md)
DEFAULT_ROUNDING = "linear"
DEFAULT_SUBNET = "full"
DEFAULT_EFFORT = 5
DEFAULT_DEVICE = "auto"
DEFAULT_SEED = 0
#: siren/mfn only: (depth, width) of the supernet that is trained
DEFAULT_SUPERNET = (4, 64)
DEFAULT_ELASTIC = "depth+width"
DEFAULT_FILTER = "fourier"
#: bit-width of the first layer (mfn: every filter) and of the output heads;
#: the paper finds the first layer the most sensitive to quantization
DEFAULT_FIRST_BITS = 8
DEFAULT_LAST_BITS = 8
MAX_LAYER_BITS = 12
MAX_SUPERNET_DEPTH, MAX_SUPERNET_WIDTH = 8, 128
#: ``a`` of the SGA+ sigmoid scaled logit (``ssl``, ``ssl3``); the paper's best value
DEFAULT_SSL_A = 2.3
#: cap of the SGA temperature, ``tau(t) = min(exp(-c t), tau_max)`` (Yang et al. 2020)
DEFAULT_TAU_MAX = 1.0
#: ``c`` of the SGA temperature with ``t`` the fraction 0..1 of the fit done, by
#: quality: ``TAU_DECAY_LOW`` up to quality ``TAU_DECAY_KNEE[0]``, ``TAU_DECAY_HIGH``
#: from ``TAU_DECAY_KNEE[1]``, linear between (:func:`default_tau_decay`). The papers'
#: ``c = 0.001`` per iteration over 2,000 iterations is 2 (the default until issue 8's
#: nineteenth round); the grid fit freezes its latents at 85 % of the steps, where 2
#: had cooled the temperature to 0.18 and 1 leaves 0.43. With 1, whole
#: kodim01/05/15/23 at qualities 10, 45 and 90 (the default fit, seeds 0 and 1): the
#: fit's objective fell by 2.8 % on average, in 22 of 24 fits (``tau_study.md``); with
#: 4 it rose in all 8 fits run; on the 24 Kodak images 3.8 % fewer bits, every image
#: better (fast_encoding.md, round 19). 0.5 lost to 1 at qualities 10 and 45 and beat
#: it at 70 (8 of 8 fits) and 90 (7 of 8): the round-20 default. The rounding
#: ablation (``benchmarks/ablation_rounding.py``) compared the methods with 2
TAU_DECAY_LOW, TAU_DECAY_HIGH = 1.0, 0.5
TAU_DECAY_KNEE = (50.0, 70.0)

MIN_BITS, MAX_BITS = 2, 8
MIN_EFFORT, MAX_EFFORT = 1, 9
MIN_SSL_A, MAX_SSL_A = 0.01, 100.0
MIN_TAU_MAX, MAX_TAU_MAX = 0.01, 1.0
MIN_TAU_DECAY, MAX_TAU_DECAY = 0.0, 100.0


def default_tau_decay(quality: float) -> float:
    """``c`` of the SGA temperature when the options leave ``tau_decay`` unset:
    a warmer rounding (a slower decay) pays at high qualities only."""
    lo, hi = TAU_DECAY_KNEE
    w = min(max((float(quality) - lo) / (hi - lo), 0.0), 1.0)
    return TAU_DECAY_LOW + w * (TAU_DECAY_HIGH - TAU_DECAY_LOW)


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


def _pair(name: str, value: Any, max_depth: int, max_width: int) -> tuple[int, int]:
    """``(depth, width)`` from a pair of integers (a list or tuple)."""
    allowed = f"(depth, width) with depth 1..{max_depth} and width 1..{max_width}"
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise _fail(name, allowed, value)
    try:
        return (_int_in(name, value[0], 1, max_depth), _int_in(name, value[1], 1, max_width))
    except AniOptionError:
        raise _fail(name, allowed, value) from None


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
        subnet: which sub-network to store: ``full`` (the only one a grid
            image has; for siren/mfn the largest sub-network), ``all`` (siren/mfn:
            the whole supernet, smallest sub-network first, so any sub-network
            can be run from the file and a prefix of it decodes), ``medium``,
            ``small`` or ``(depth, width)``.
        effort: 1..9, compute budget of the fit (number of optimisation steps),
            like ``cwebp -m``; 5 is the default.
        device: ``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda``.
        seed: seed of every random draw of the fit; same input, options and
            seed give identical bytes on the same device type with the same
            number of torch threads (``docs/security.md``, determinism).
        supernet: ``siren``/``mfn`` only: ``(depth, width)`` of the trained
            supernet, depth 1..8, width 4..128 a multiple of 4 (default
            ``DEFAULT_SUPERNET``).
        elastic: ``siren``/``mfn`` only: which dimensions the supernet's
            sub-networks vary in: ``depth+width`` (default), ``depth``,
            ``width`` or ``none`` (one plain network).
        filter: ``mfn`` only: ``fourier`` (default) or ``gabor`` filters.
        first_bits, last_bits: ``siren``/``mfn`` only: bit-width 2..12 of the
            first layer (mfn: all filters) and of the output heads (default 8).
        ``None`` in the last five means "the family's default"; the
        ``resolved_*`` methods give the values used.
        ssl_a: 0.01..100, ``a`` of the ``ssl`` and ``ssl3`` rounding:
            ``p(floor) = sigmoid(-a logit(v - floor v))``; 1 is ``linear``,
            larger is closer to hard rounding.
        tau_max: 0.01..1, cap of the temperature of the SGA methods,
            ``tau(t) = min(exp(-tau_decay * t), tau_max)`` with ``t`` the
            fraction 0..1 of the fit done.
        tau_decay: 0..100, ``c`` of that schedule (0 keeps ``tau_max``);
            ``None`` (the default) sets it by quality, :func:`default_tau_decay`,
            and :meth:`resolved_tau_decay` gives the value used.
    """

    model: str = DEFAULT_MODEL
    bits: int = DEFAULT_BITS
    quality: float = DEFAULT_QUALITY
    rounding: str = DEFAULT_ROUNDING
    subnet: Any = DEFAULT_SUBNET
    effort: int = DEFAULT_EFFORT
    device: str = DEFAULT_DEVICE
    seed: int = DEFAULT_SEED
    supernet: Any = None
    elastic: Any = None
    filter: Any = None
    first_bits: Any = None
    last_bits: Any = None
    ssl_a: float = DEFAULT_SSL_A
    tau_max: float = DEFAULT_TAU_MAX
    tau_decay: Any = None

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
        self._check_inr_options()
        object.__setattr__(self, "effort", _int_in("effort", self.effort, MIN_EFFORT, MAX_EFFORT))
        if self.device not in DEVICES:
            raise _fail("device", "one of " + ", ".join(DEVICES), self.device)
        object.__setattr__(self, "seed", _int_in("seed", self.seed, 0, 2**63 - 1))
        object.__setattr__(self, "ssl_a", _real_in("ssl_a", self.ssl_a, MIN_SSL_A, MAX_SSL_A))
        object.__setattr__(self, "tau_max", _real_in("tau_max", self.tau_max, MIN_TAU_MAX, MAX_TAU_MAX))
        if self.tau_decay is not None:
            object.__setattr__(self, "tau_decay", _real_in("tau_decay", self.tau_decay, MIN_TAU_DECAY, MAX_TAU_DECAY))

    def _check_inr_options(self) -> None:
        inr = self.model in INR_MODELS
        for name in ("supernet", "elastic", "filter", "first_bits", "last_bits"):
            if getattr(self, name) is not None and not (inr and (name != "filter" or self.model == "mfn")):
                models = "mfn" if name == "filter" else " and ".join(INR_MODELS)
                raise _fail(name, f"only with model {models} (model is {self.model})", getattr(self, name))
        if not inr:
            if self.subnet not in NAMED_SUBNETS:
                raise _fail("subnet", "one of " + ", ".join(NAMED_SUBNETS) + f" for model {self.model}", self.subnet)
            return
        if self.supernet is not None:
            object.__setattr__(self, "supernet", _pair("supernet", self.supernet, MAX_SUPERNET_DEPTH, MAX_SUPERNET_WIDTH))
            if self.supernet[1] % 4:
                raise _fail("supernet", "(depth, width) with width a multiple of 4", self.supernet)
        if self.elastic is not None and self.elastic not in ELASTIC:
            raise _fail("elastic", "one of " + ", ".join(ELASTIC), self.elastic)
        if self.filter is not None and self.filter not in FILTERS:
            raise _fail("filter", "one of " + ", ".join(FILTERS), self.filter)
        for name in ("first_bits", "last_bits"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _int_in(name, getattr(self, name), MIN_BITS, MAX_LAYER_BITS))
        depths, widths = self.elastic_choices()
        if isinstance(self.subnet, str):
            if self.subnet not in INR_NAMED_SUBNETS:
                raise _fail("subnet", "one of " + ", ".join(INR_NAMED_SUBNETS) + " or (depth, width)", self.subnet)
            return
        try:
            pair = _pair("subnet", self.subnet, MAX_SUPERNET_DEPTH, MAX_SUPERNET_WIDTH)
        except AniOptionError:
            raise _fail("subnet", "one of " + ", ".join(INR_NAMED_SUBNETS) + " or (depth, width)", self.subnet) from None
        if pair[0] not in depths or pair[1] not in widths:
            raise _fail("subnet", f"(depth, width) with depth in {list(depths)} and width in {list(widths)} "
                        f"(the supernet's sub-networks; see supernet and elastic)", self.subnet)
        object.__setattr__(self, "subnet", pair)

    def resolved_supernet(self) -> tuple[int, int]:
        return self.supernet if self.supernet is not None else DEFAULT_SUPERNET

    def resolved_elastic(self) -> str:
        return self.elastic if self.elastic is not None else DEFAULT_ELASTIC

    def resolved_filter(self) -> str:
        return self.filter if self.filter is not None else DEFAULT_FILTER

    def resolved_layer_bits(self) -> tuple[int, int]:
        """(first, last) layer bit-widths."""
        return (self.first_bits if self.first_bits is not None else DEFAULT_FIRST_BITS,
                self.last_bits if self.last_bits is not None else DEFAULT_LAST_BITS)

    def resolved_tau_decay(self) -> float:
        """``c`` of the SGA temperature the fit uses (set, or by quality)."""
        return self.tau_decay if self.tau_decay is not None else default_tau_decay(self.quality)

    def elastic_choices(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The supernet's depth and width choices (siren/mfn)."""
        from .inr.layout import elastic_choices

        return elastic_choices(*self.resolved_supernet(), self.resolved_elastic())

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
