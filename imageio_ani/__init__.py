"""imageio plugin for ``.ani`` neural images.

``import imageio_ani`` registers the v3 plugin ``"ani"`` and puts it first for
the ``.ani`` extension, so that::

    import imageio_ani
    import imageio.v3 as iio

    iio.imwrite("photo.ani", pixels, bits=4, quality=80)   # our codec, 4-bit parameters
    pixels = iio.imread("photo.ani")                       # or imageio.imread (v2)
    small = iio.imread("photo.ani", size=(96, 64))         # rendered at that size

Without it, imageio's Pillow plugin would take ``bits=4`` as a palette size.
The plugin class lives in :mod:`imageio_ani.plugin`; importing this package
does not import torch.
"""
from __future__ import annotations

import warnings

from imageio.config import FileExtension, PluginConfig, extension_list, known_extensions, known_plugins

PLUGIN_NAME = "ani"
EXTENSION = ".ani"

_config = PluginConfig(name=PLUGIN_NAME, class_name="AniPlugin", module_name="imageio_ani.plugin")
_extension = FileExtension(
    name="ANI neural image",
    extension=EXTENSION,
    priority=[PLUGIN_NAME],
    description="A small quantized neural network fitted to an image (ANI codec)",
)


def register() -> None:
    """Register the ``ani`` plugin with imageio (idempotent).

    * ``imageio.config.known_plugins["ani"]``, placed first so that ``.ani``
      data without an extension is recognised by its signature before other
      plugins try it; the plugin refuses anything else at once.
    * a ``FileExtension`` for ``.ani`` placed ahead of any other entry for that
      extension (other plugins stay listed after it).

    Nothing of other plugins is removed or replaced (a plugin already named
    ``ani`` is left alone, with a ``RuntimeWarning``); :func:`unregister`
    undoes exactly these two changes.
    """
    current = known_plugins.get(PLUGIN_NAME)
    if current is not None and current is not _config:
        warnings.warn(f"an imageio plugin named {PLUGIN_NAME!r} is already registered ({current.module_name}."
                      f"{current.class_name}); imageio_ani is not registered", RuntimeWarning, stacklevel=2)
        return
    others = [(k, v) for k, v in known_plugins.items() if k != PLUGIN_NAME]
    known_plugins.clear()
    known_plugins[PLUGIN_NAME] = _config
    known_plugins.update(others)
    entries = known_extensions.setdefault(EXTENSION, [])
    if _extension in entries:
        entries.remove(_extension)
    entries.insert(0, _extension)
    if _extension not in extension_list:
        extension_list.insert(0, _extension)


def unregister() -> None:
    """Remove the ``ani`` plugin and its ``.ani`` extension entry."""
    if known_plugins.get(PLUGIN_NAME) is _config:
        del known_plugins[PLUGIN_NAME]
    entries = known_extensions.get(EXTENSION, [])
    if _extension in entries:
        entries.remove(_extension)
        if not entries:
            del known_extensions[EXTENSION]
    if _extension in extension_list:
        extension_list.remove(_extension)


register()

__all__ = ["register", "unregister", "PLUGIN_NAME", "EXTENSION"]
