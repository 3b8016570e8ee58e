"""Turn what a user typed (files, directories, glob patterns) into an ordered list of image paths.

Rules (``find_images``):

- A path to an existing file is kept whatever its extension, so a bad file reaches the loader and gets
  its specific error ("is a text file, not an image", "truncated", ...).
- A directory contributes its files whose extension is in ``IMAGE_EXTENSIONS`` (case-insensitive),
  searched recursively by default. Hidden entries (names starting with ``.``, e.g. macOS ``._IMG.jpg``
  resource forks or ``.thumbnails/``) are skipped, and symlinked subdirectories are not followed
  (no cycles); symlinked files are kept.
- Anything else containing ``*``, ``?`` or ``[`` is a glob pattern (``photos/*.jpg``; ``**`` matches any
  number of directories). Matching files with an image extension are kept; matched directories and other
  files are not (write the directory itself to include it; name a file to force it). Hidden names are
  matched only when the pattern spells the dot, as in the shell.
- camkit's own outputs are never inputs of a directory scan or a pattern: files listed by an explain
  index (``explanations.json``, see :mod:`camkit.io.explanation_folder`) in their folder are skipped,
  so an output folder inside (or equal to) the input folder is not explained again. A file named
  directly is kept.
- Order: inputs in the given order; each directory or pattern's files sorted by their path components
  (code-point order, so ``a/x.jpg`` < ``a.jpg`` < ``b.jpg``). Duplicates (the same file reached twice,
  compared by resolved path) are dropped, keeping the first.

Returned paths keep the form of the input (relative stays relative): ``dir/sub/x.jpg``, never resolved.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from camkit.errors import ImageError
from camkit.io.explanation_folder import own_output_files

#: Lower-case file suffixes (with the dot) that directories and patterns are searched for.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")

_GLOB_CHARS = frozenset("*?[")


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """True if ``path``'s suffix is in ``IMAGE_EXTENSIONS`` (case-insensitive). No file access."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def find_images(
    inputs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    recursive: bool = True,
    on_error: Callable[[str, ImageError], None] | None = None,
) -> list[Path]:
    """Expand files, directories and glob patterns into image paths (rules in the module docstring).

    Args:
        inputs: paths and/or patterns, in the order the images should come out. A single str or Path
            is accepted as a one-element list.
        recursive: search subdirectories of directory inputs (patterns use ``**`` for that instead).
        on_error: called as ``on_error(input, error)`` for an input that finds nothing, which is then
            skipped; without it the first such input raises.

    Returns:
        A list of ``Path``, without duplicates, in input order.

    Raises:
        ImageError: an input that neither exists nor matches anything; a directory without images;
            a pattern that matches files but no images. One line each, naming the input. Not raised
            when ``on_error`` is given.

    Example:
        >>> find_images(["photos/cat.jpg", "photos/more", "other/*.png"])  # doctest: +SKIP
        [PosixPath('photos/cat.jpg'), PosixPath('photos/more/a.jpg'), PosixPath('other/b.png')]
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: list[Path] = []
    seen: set[Path] = set()
    skip = _OwnOutputs()
    for item in inputs:
        try:
            expanded = _expand(item, recursive, skip)
        except ImageError as e:
            if on_error is None:
                raise
            on_error(os.fspath(item), e)
            continue
        for path in expanded:
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                found.append(path)
    return found


class _OwnOutputs:
    """``skip(path)``: is ``path`` listed by its folder's explain index? (one index read per folder)"""

    def __init__(self) -> None:
        self._own: dict[Path, set[str]] = {}

    def __call__(self, path: Path) -> bool:
        folder = path.parent.resolve()
        if folder not in self._own:
            self._own[folder] = own_output_files(folder)
        return path.name in self._own[folder]


def _expand(item: str | os.PathLike[str], recursive: bool, skip: _OwnOutputs) -> list[Path]:
    path = Path(item)
    if path.is_dir():
        images = _sorted(p for p in _scan_directory(path, recursive) if not skip(p))
        if not images:
            scope = "" if recursive else " (subdirectories not searched)"
            raise ImageError(
                f"no images ({_extension_list()}) in directory {path}{scope}; "
                "pass image files or a folder that contains them"
            )
        return images
    if path.exists() or path.is_symlink():
        return [path]  # a file (or a broken link): the loader gives the precise error
    text = os.fspath(item)
    if _GLOB_CHARS.isdisjoint(text):
        raise ImageError(f"no such file or directory: {text}; check the path")
    matches = [Path(m) for m in glob.glob(text, recursive=True)]
    if not matches:
        raise ImageError(f"no such file or directory: {text} (the pattern matches nothing); check it")
    images = _sorted(m for m in matches if m.is_file() and is_image_path(m) and not skip(m))
    if not images:
        raise ImageError(
            f"no images ({_extension_list()}) match {text}; "
            "name files directly to load other extensions"
        )
    return images


def _scan_directory(root: Path, recursive: bool) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        # Pruning dirnames in place stops os.walk from descending into hidden directories.
        dirnames[:] = [d for d in dirnames if not d.startswith(".")] if recursive else []
        base = Path(dirpath)
        for name in filenames:
            if not name.startswith(".") and is_image_path(name) and (base / name).is_file():
                yield base / name


def _sorted(paths: Iterable[Path]) -> list[Path]:
    return sorted(paths, key=lambda p: p.parts)


def _extension_list() -> str:
    return ", ".join(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)
