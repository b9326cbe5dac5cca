"""Writing an output atomically: a temporary file in the final folder, flushed
to disk, then linked (or renamed) to the final name. A process killed at any
moment leaves either the whole output or nothing under the final name; its
temporary file (a hidden name with the writer's pid) is removed by the next
writer of that output once the pid no longer runs."""
from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

_TMP_PREFIX = "."
_TMP_SUFFIX = ".ani-tmp"
_TMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]+" + re.escape(_TMP_SUFFIX) + "$")


class OutputExistsError(FileExistsError):
    """The output file exists and overwriting was not asked for."""


def is_temp_name(name: str) -> bool:
    """True for the name of a temporary file of :func:`write_atomic`."""
    return _TMP_RE.match(name) is not None


def write_atomic(path: str | os.PathLike, data: bytes, *, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder.

    The final name appears only once the data is complete and flushed to disk.
    With ``overwrite=False`` an existing ``path`` is left alone and
    :class:`OutputExistsError` (a :class:`FileExistsError`) is raised.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}.{os.getpid()}-{secrets.token_hex(4)}{_TMP_SUFFIX}")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            # link() fails if the name exists: no window in which another
            # writer's finished output could be replaced.
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise OutputExistsError(f"{path} already exists (use --force to overwrite)") from None
            except OSError:  # file systems without hard links
                if path.exists():
                    raise OutputExistsError(f"{path} already exists (use --force to overwrite)") from None
                os.replace(tmp, path)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _remove_stale_temps(path: Path) -> None:
    """Remove temporary files left for ``path`` by writers that no longer run."""
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        m = _TMP_RE.match(entry.name)
        if not m or m.group("name") != path.name:
            continue
        if _pid_alive(int(m.group("pid"))):
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            pass


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True
