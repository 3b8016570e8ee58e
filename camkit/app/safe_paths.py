"""Resolve a client-supplied relative path inside one folder, refusing everything that leaves it.

Refused: absolute paths (``/etc/passwd``, ``C:\\x``), any ``..`` component, NUL bytes, and paths whose
real location (symlinks resolved) is outside the folder. The folder itself is resolved once.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from camkit.errors import CamkitError

__all__ = ["OutsideFolderError", "resolve_inside"]


class OutsideFolderError(CamkitError):
    """A requested path is absolute, climbs out with ``..``, or is a symlink leading outside the folder."""


def resolve_inside(root: str | os.PathLike[str], relative: str) -> Path:
    """The real path of ``relative`` under ``root``; raises :class:`OutsideFolderError` when it is not inside.

    Args:
        root: the folder the server was given (any form; resolved here).
        relative: a ``/``-separated path relative to ``root`` as the client sent it.

    Returns:
        The fully resolved path (symlinks followed), guaranteed to lie inside ``root``'s real path.
        It may not exist; callers report that as a missing file.
    """
    base = Path(root).resolve()
    text = str(relative)
    if "\x00" in text:
        raise OutsideFolderError("path contains a NUL byte; pass a path relative to the served folder")
    if not text or PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute() or PureWindowsPath(text).drive:
        raise OutsideFolderError(f"{text!r} is not a path relative to the served folder; pick a file from its list")
    parts = PurePosixPath(text.replace("\\", "/")).parts
    if any(p == ".." for p in parts):
        raise OutsideFolderError(f"{text!r} leaves the served folder ('..'); pick a file from its list")
    real = (base / Path(*parts)).resolve()
    if real != base and base not in real.parents:
        raise OutsideFolderError(f"{text!r} leads outside the served folder (symlink); pick a file from its list")
    return real
