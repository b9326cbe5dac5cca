"""Stochastic Gumbel Annealing (SGA, Yang et al. 2020) and its SGA+ logits
(Perugachi-Diaz et al. 2024, ``shared/papers/003``) for rounding latents
during fitting.

A latent ``v`` is replaced by a relaxed sample over a few integer candidates
``c_k``. Each candidate gets an unnormalised log-probability ``l_k = log f(u_k)``
from its distance ``u_k`` to ``v`` (scaled to 0..1, below); at temperature
``tau`` the candidate probabilities are

    p_k = softmax_k(l_k / tau)

and the relaxed sample is a Gumbel-softmax draw at the same temperature, as in
the SGA reference code (``RelaxedOneHotCategorical(tau, logits=l / tau)``):

    w_k = softmax_k((l_k / tau + g_k) / tau),  g_k ~ Gumbel(0, 1),
    v~  = sum_k w_k c_k.

As ``tau`` falls, ``p`` and ``w`` concentrate on the nearest integer: every
method tends to hard rounding. The schedule ``tau(t) = min(exp(-c t), tau_max)``
is :func:`core.rounding.temperature`.

The two-class forms take ``c = (floor v, floor v + 1)`` with distances
``u = (v - floor v, floor v + 1 - v)``. The functions ``f`` of ``u`` in 0..1,
each with ``f(0) = 1``, ``f(1) = 0`` and ``f(u) + f(1 - u) = 1`` (so at
``tau = 1``, ``p = (f(u_0), f(u_1))``):

* ``sga``: ``log f(u) = -atanh(u)`` (Yang et al.; not normalised; its
  probabilities have an infinite slope at the integers, the reason SGA+
  replaces it);
* ``linear``: ``f(u) = 1 - u``;
* ``cosine``: ``f(u) = cos^2(pi u / 2)``;
* ``ssl`` (sigmoid scaled logit): ``f(u) = sigmoid(-a logit(u))``, which is
  ``linear`` at ``a = 1`` and tends to hard rounding as ``a`` grows; ``a`` is the
  option ``ssl_a`` (SGA+ reports ``a = 2.3`` best).

The three-class forms (``linear3``, ``cosine3``, ``ssl3``) take
``c = (round v - 1, round v, round v + 1)`` and ``l_k = n log f(min(|v - c_k| / r, 1))``,
so a latent may move by one integer past its neighbour in a single draw;
candidates ``r`` or more away get zero mass. ``r = THREE_CLASS_RANGE`` and
``n = THREE_CLASS_POWER``; with ``r = 1, n = 1`` they equal the two-class forms.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .options import DEFAULT_SSL_A
from .rounding import RoundingStep

#: distances are kept this far inside 0..1 where a logit function is singular
EPS = 1e-6
#: distance (in integers) at which a three-class candidate's mass reaches zero
THREE_CLASS_RANGE = 1.25
#: power ``n`` of the three-class probabilities (``f ** n``)
THREE_CLASS_POWER = 1.0

LogF = Callable[[torch.Tensor, float], torch.Tensor]


def atanh_logits(u: torch.Tensor, a: float) -> torch.Tensor:
    """SGA's logits ``-atanh(u)`` (Yang et al. 2020, eq. 4); ``a`` unused."""
    return -torch.atanh(u.clamp(0, 1 - EPS))


def linear_logits(u: torch.Tensor, a: float) -> torch.Tensor:
    """``log(1 - u)`` (SGA+ linear); ``a`` unused."""
    return torch.log((1 - u).clamp(min=EPS))


def cosine_logits(u: torch.Tensor, a: float) -> torch.Tensor:
    """``log cos^2(pi u / 2)`` (SGA+ cosine); ``a`` unused."""
    return 2 * torch.log(torch.cos(u * (math.pi / 2)).clamp(min=EPS))


def ssl_logits(u: torch.Tensor, a: float) -> torch.Tensor:
    """``log sigmoid(-a logit(u)) = -softplus(a logit(u))`` (SGA+ sigmoid scaled logit)."""
    u = u.clamp(EPS, 1 - EPS)
    return -torch.nn.functional.softplus(a * (torch.log(u) - torch.log1p(-u)))


def candidates(y: torch.Tensor, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer candidates ``c`` and scaled distances ``u`` (last axis: classes)."""
    if classes == 2:
        lo = torch.floor(y).detach()
        c = torch.stack([lo, lo + 1], dim=-1)
    elif classes == 3:
        mid = torch.round(y).detach()
        c = torch.stack([mid - 1, mid, mid + 1], dim=-1)
    else:
        raise ValueError(f"classes must be 2 or 3, not {classes!r}")
    u = (y[..., None] - c).abs()
    if classes == 3:
        u = u / THREE_CLASS_RANGE
    return c, u


def logits(y: torch.Tensor, log_f: LogF, classes: int, a: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidates and their unnormalised log-probabilities at ``tau = 1``;
    ``-inf`` (zero mass) for candidates at scaled distance 1 or more."""
    c, u = candidates(y, classes)
    inside = u < 1
    lf = log_f(torch.where(inside, u, torch.zeros_like(u)), a)  # no singular value reaches autograd
    if classes == 3:
        lf = THREE_CLASS_POWER * lf
    return c, torch.where(inside, lf, torch.full_like(lf, -math.inf))


def probabilities(y: torch.Tensor, log_f: LogF, classes: int, tau: float, a: float = DEFAULT_SSL_A):
    """Candidates ``c`` and their probabilities ``softmax(l / tau)``."""
    c, lg = logits(y, log_f, classes, a)
    return c, torch.softmax(lg / tau, dim=-1)


def gumbel(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)
    return -torch.log(-torch.log(u.clamp(1e-20, 1 - 1e-7)))


def relaxed_round(y: torch.Tensor, log_f: LogF, classes: int, tau: float, a: float = DEFAULT_SSL_A,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """One Gumbel-softmax sample ``sum_k w_k c_k``, ``w = softmax((l / tau + g) / tau)``.

    With two classes this is ``floor v + sigmoid((l_1 - l_0) / tau^2 + L / tau)``
    with ``L = g_1 - g_0`` logistic, computed so (one random number per latent).
    """
    if classes == 2:
        lo = torch.floor(y).detach()
        u = y - lo
        inside = u > 0  # at an integer the upper candidate is at distance 1: zero mass
        safe = torch.where(inside, u, torch.full_like(u, 0.5))
        diff = log_f(1 - safe, a) - log_f(safe, a)
        diff = torch.where(inside, diff, torch.full_like(u, -math.inf))
        r = torch.rand(y.shape, generator=generator, device=y.device, dtype=y.dtype).clamp(1e-7, 1 - 1e-7)
        logistic = torch.log(r) - torch.log1p(-r)
        return lo + torch.sigmoid(diff / (tau * tau) + logistic / tau)
    c, w = relaxed_weights(y, log_f, classes, tau, a, generator)
    return (w * c).sum(dim=-1)


def relaxed_weights(y: torch.Tensor, log_f: LogF, classes: int, tau: float, a: float = DEFAULT_SSL_A,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidates and one Gumbel-softmax draw of their weights ``w``."""
    c, lg = logits(y, log_f, classes, a)
    return c, torch.softmax((lg / tau + gumbel(lg.shape, y, generator)) / tau, dim=-1)


@dataclass(frozen=True)
class SGARounding:
    """A rounding method of the SGA family: ``method(latents, step)``.

    Attributes:
        log_f: the logit function of the scaled distance (and ``a``).
        classes: 2 or 3 candidates per latent.
    """

    log_f: LogF
    classes: int = 2

    def __call__(self, y: torch.Tensor, step: RoundingStep) -> torch.Tensor:
        return relaxed_round(y, self.log_f, self.classes, step.tau, step.options.ssl_a, step.generator)


sga = SGARounding(atanh_logits)
linear = SGARounding(linear_logits)
cosine = SGARounding(cosine_logits)
ssl = SGARounding(ssl_logits)
linear3 = SGARounding(linear_logits, 3)
cosine3 = SGARounding(cosine_logits, 3)
ssl3 = SGARounding(ssl_logits, 3)
