"""Plugin hooks (pluggy): model families and latent rounding methods.

The built-in families and methods register through the same hooks a
third-party package would use, via the ``ani`` entry-point group::

    [project.entry-points.ani]
    my_plugin = "my_package.ani_plugin"

Hook implementations return *dotted paths* (``"package.module:attr"``) rather
than objects, so registering never imports torch: reading a header stays
cheap. :func:`resolve` imports the object when it is needed.
"""
from __future__ import annotations

import importlib
import os
from functools import lru_cache
from typing import Any

import pluggy

PROJECT = "ani"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: Set to "0" to skip entry-point plugins (tests use it to isolate the core).
AUTOLOAD_ENV = "ANI_PLUGIN_AUTOLOAD"
#: The module holding the built-in family and rounding methods (registered like any plugin).
BUILTIN_PLUGIN = "core.builtin_plugin"


class AniSpec:
    """Hook specifications."""

    @hookspec
    def ani_model_families(self) -> dict[str, dict[str, Any]]:
        """Return ``{name: {"code": int, "fit": "mod:attr", "decode": "mod:attr"}}``.

        ``code`` is the byte stored in the file header (0..255, unique);
        ``fit(image, options, progress)`` returns an object with ``sections``
        (a list of ``(tag, bytes)``), ``n_latents``, ``n_params`` and
        ``stats`` (and optionally ``flags``, the header flags byte);
        ``decode(header, sections, (width, height), subnet, device)``
        returns uint8 pixels of shape (H, W, C). A family must refuse
        sections with an unknown upper-case (critical) tag. Optional keys:
        ``describe(header, sections) -> dict`` (shown by ``ani info``, must
        not import torch) and ``extract(header, sections, subnet) -> (arch,
        sections)`` (cut one sub-network out of a file).
        """

    @hookspec
    def ani_rounding_methods(self) -> dict[str, str]:
        """Return ``{name: "mod:attr"}`` of rounding methods for latents.

        The attribute is a callable ``method(latents, step) -> tensor`` where
        ``step`` is a :class:`core.rounding.RoundingStep` (iteration index,
        step count, temperature ``tau``, the encode options, the seeded
        generator). It returns what the synthesis and the rate model see at
        that step; the file always stores ``round(latent)``. Names already
        registered (the built-ins first) are not replaced.
        """


def make_plugin_manager(load_entrypoints: bool | None = None) -> pluggy.PluginManager:
    """Build a plugin manager with the built-ins and, unless switched off, the
    ``ani`` entry points of installed packages."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(AniSpec)
    pm.register(importlib.import_module(BUILTIN_PLUGIN), name="ani-builtins")
    if load_entrypoints is None:
        load_entrypoints = os.environ.get(AUTOLOAD_ENV, "1") != "0"
    if load_entrypoints:
        pm.load_setuptools_entrypoints(PROJECT)
    return pm


@lru_cache(maxsize=1)
def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (built once, on first use)."""
    return make_plugin_manager()


def _merged(results: list[dict]) -> dict:
    merged: dict = {}
    for result in reversed(results):  # later-registered plugins override nothing silently
        for key, value in (result or {}).items():
            merged.setdefault(key, value)
    return merged


def model_families(pm: pluggy.PluginManager | None = None) -> dict[str, dict[str, Any]]:
    return _merged((pm or plugin_manager()).hook.ani_model_families())


def rounding_methods(pm: pluggy.PluginManager | None = None) -> dict[str, str]:
    return _merged((pm or plugin_manager()).hook.ani_rounding_methods())


def known_models() -> tuple[str, ...]:
    return tuple(sorted(model_families()))


def known_roundings() -> tuple[str, ...]:
    return tuple(sorted(rounding_methods()))


def family_by_code(code: int) -> tuple[str, dict[str, Any]] | None:
    for name, fam in model_families().items():
        if fam["code"] == code:
            return name, fam
    return None


def resolve(path: str) -> Any:
    """Import ``"package.module:attr"`` and return the attribute."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)
