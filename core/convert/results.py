"""What a batch conversion reports: one :class:`FileResult` per input, gathered
in a :class:`ConvertSummary`, and the one-line error text of a failure."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import AniError


@dataclass(frozen=True)
class FileResult:
    """The outcome of one input.

    Attributes:
        source: the input file.
        output: the output file it maps to (``None`` if none could be named).
        status: ``converted``, ``skipped`` (output existed) or ``failed``.
        error: one-line message of a failure (without the source path), else ``None``.
        seconds: wall time spent on this file.
    """

    source: Path
    output: Path | None
    status: Literal["converted", "skipped", "failed"]
    error: str | None = None
    seconds: float = 0.0


@dataclass
class ConvertSummary:
    """What a batch did: every input lands in exactly one of the three lists."""

    converted: list[FileResult] = field(default_factory=list)
    skipped: list[FileResult] = field(default_factory=list)
    failed: list[FileResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no input failed."""
        return not self.failed

    @property
    def total(self) -> int:
        return len(self.converted) + len(self.skipped) + len(self.failed)

    def add(self, result: FileResult) -> None:
        {"converted": self.converted, "skipped": self.skipped, "failed": self.failed}[result.status].append(result)

    def __str__(self) -> str:
        return f"{len(self.converted)} converted, {len(self.skipped)} skipped, {len(self.failed)} failed"


def error_text(exc: BaseException, source: Path | None = None) -> str:
    """One-line message of ``exc``, without a leading ``source: ``."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = exc.strerror if source is not None and _same_name(exc.filename, source) else f"{exc.filename}: {exc.strerror}"
    elif isinstance(exc, (AniError, OSError)):
        text = str(exc) or type(exc).__name__
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    if source is not None and text.startswith(f"{source}: "):
        text = text[len(f"{source}: "):]
    return text


def _same_name(a: Any, b: Path) -> bool:
    try:
        return os.path.abspath(a) == os.path.abspath(b)
    except (TypeError, ValueError):
        return False
