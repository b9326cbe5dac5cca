"""The built-in model families (grid, siren, mfn) and rounding methods, registered through the same
hooks (:mod:`core.hooks`) as a third-party plugin: the core has no other list
of them. Values are dotted paths, so registering imports neither torch nor the
fitting code."""
from __future__ import annotations

from .hooks import hookimpl

ROUNDING_METHODS = {
    # without a temperature (core.rounding)
    "ste": "core.rounding:ste",
    "noise": "core.rounding:noise_then_ste",
    "softround": "core.rounding:softround_noise",
    # Stochastic Gumbel Annealing and SGA+ (core.sga)
    "sga": "core.sga:sga",
    "linear": "core.sga:linear",
    "cosine": "core.sga:cosine",
    "ssl": "core.sga:ssl",
    "linear3": "core.sga:linear3",
    "cosine3": "core.sga:cosine3",
    "ssl3": "core.sga:ssl3",
}


@hookimpl
def ani_model_families():
    inr = {"decode": "core.inr.decode:decode_inr", "describe": "core.inr.decode:describe",
           "extract": "core.inr.decode:extract"}
    return {
        "grid": {"code": 0, "fit": "core.grid.fit:fit_grid", "decode": "core.grid.decode:decode_grid"},
        "siren": {"code": 1, "fit": "core.siren:fit", **inr},
        "mfn": {"code": 2, "fit": "core.mfn:fit", **inr},
    }


@hookimpl
def ani_rounding_methods():
    return dict(ROUNDING_METHODS)
