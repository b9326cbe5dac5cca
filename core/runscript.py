"""Run an unmodified Python script with the ``.ani`` plugins registered.

``ani run script.py [args...]`` or ``python -m core.runscript script.py [args...]``
registers the Pillow and imageio plugins (those whose library is installed) and
then runs the script as ``python script.py [args...]`` would: ``__name__`` is
``"__main__"``, ``sys.argv`` is ``[script.py, args...]`` and the script's folder
comes first on ``sys.path``. ``-m module`` runs a module instead, as ``python -m``.

So an asset script that calls ``Image.open(...).save("x.ani", bits=4)`` or
``imageio.v3.imwrite("x.ani", img)`` works without an edit.
"""
from __future__ import annotations

import importlib
import os
import runpy
import sys

USAGE = "usage: ani run script.py [args...] | ani run -m module [args...]"
#: Adapter packages registered before the script runs (each registers on import).
PLUGIN_PACKAGES = ("pillow_ani", "imageio_ani")
#: The libraries they adapt: a missing library skips its adapter silently.
_LIBRARIES = {"pillow_ani": "PIL", "imageio_ani": "imageio"}


def register_plugins() -> list[str]:
    """Import (and so register) every adapter whose library is installed;
    returns the names of the registered adapters."""
    registered = []
    for package in PLUGIN_PACKAGES:
        try:
            importlib.import_module(_LIBRARIES[package])
        except ImportError:
            continue
        module = importlib.import_module(package)
        module.register()
        registered.append(package)
    return registered


def main(argv: list[str] | None = None) -> int:
    """Register the plugins and run ``argv = [script.py, args...]`` (or
    ``["-m", module, args...]``) as ``__main__``.

    Returns 0 when the script finishes; a ``SystemExit`` of the script (its
    ``sys.exit(code)``) propagates unchanged, as with ``python script.py``.
    ``sys.argv`` and ``sys.path`` are restored afterwards.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        return 0 if argv else 2
    run_module = argv[0] == "-m"
    if run_module:
        if len(argv) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        target, args = argv[1], argv[2:]
    else:
        target, args = argv[0], argv[1:]
        if not os.path.isfile(target):
            print(f"ani run: cannot open script {target!r}: no such file", file=sys.stderr)
            return 2
    register_plugins()
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    try:
        if run_module:
            sys.argv = [target, *args]  # runpy replaces argv[0] with the module's path
            sys.path.insert(0, os.getcwd())
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            sys.argv = [target, *args]
            sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
            runpy.run_path(target, run_name="__main__")
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path
    return 0


if __name__ == "__main__":
    sys.exit(main())
