"""Where documents come from: paths (directories recursively) and '-' for stdin."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pipeline.errors import UsageError


class SourceError(UsageError):
    pass


@dataclass(frozen=True)
class Source:
    name: str
    path: Path | None  # None: standard input

    def open(self) -> BinaryIO:
        return sys.stdin.buffer if self.path is None else open(self.path, "rb")

    def size(self) -> int | None:
        return None if self.path is None else self.path.stat().st_size


def resolve(paths: Iterable[str]) -> list[Source]:
    """Every file named or found under a named directory; raises SourceError before anything is read."""
    sources: list[Source] = []
    problems: list[str] = []
    for raw in paths:
        if raw == "-":
            sources.append(Source("-", None))
            continue
        path = Path(raw)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                sources.extend(Source(str(Path(root) / f), Path(root) / f) for f in sorted(files))
        elif path.is_file():
            sources.append(Source(raw, path))
        elif path.exists():
            problems.append(f"{raw}: not a regular file or directory")
        else:
            problems.append(f"{raw}: no such file or directory")
    for source in sources:
        if source.path is not None and not os.access(source.path, os.R_OK):
            problems.append(f"{source.name}: permission denied")
    if problems:
        raise SourceError("; ".join(problems))
    if not sources:
        raise SourceError("no input: name files, directories or '-' for standard input")
    return sources
