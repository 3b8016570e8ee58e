"""The output folder of an explain run: checked and locked before any work, its index always true.

Layout: per image ``<stem>_cam.png``, ``<stem>_maps.npy``, ``<stem>.json``; and the index
``explanations.json`` (``INDEX_NAME``) holding the run's document with, per image, ``outputs`` (the
file names written for it) and at the top ``complete`` and ``planned_outputs``.

Rules (:class:`ExplanationFolder`):

- The folder is checked (created if missing, writable) and locked with
  :class:`~camkit.io.run_lock.RunLock` when the run opens, before a model is loaded.
- A folder holding files that are not a previous explain run's (no index) is refused unless
  ``overwrite=True``, which writes beside them (they are never deleted; same-named files are replaced).
  Hidden files (``.DS_Store``, the lock) do not count.
- A previous explain run (it has an index) is replaced: the files its index lists are deleted first,
  then the new index is written with ``complete: false`` and the files this run will write
  (``planned_outputs``); the full index replaces it (temporary file + ``os.replace``) when the run
  ends. So at any moment - a Ctrl-C or ``kill -9`` included - every explain file in the folder is
  listed by the index, and an index with ``complete: true`` lists exactly the files there.
- :func:`own_output_files` lists the files an index names, so image discovery can skip them: an
  output folder inside the input folder is never explained again.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from types import TracebackType

from camkit.errors import RunDirectoryError
from camkit.io.run_lock import LOCK_NAME, RunLock

INDEX_NAME = "explanations.json"


class ForeignFilesError(RunDirectoryError):
    """The output folder holds files no explain run wrote; ``names`` lists them (sorted)."""

    def __init__(self, folder: Path, names: list[str], option: str = "overwrite=True") -> None:
        self.folder = folder
        self.names = names
        super().__init__(self.render(option))

    def render(self, option: str) -> str:
        """The message with the way to allow it spelled ``option`` (the CLI's ``--overwrite``)."""
        shown = ", ".join(self.names[:3]) + (", ..." if len(self.names) > 3 else "")
        return (
            f"{self.folder} already holds {len(self.names)} file(s) that are not from a camkit explain run "
            f"({shown}); choose an empty or new folder, or pass {option} to write beside them"
        )

#: Suffixes of the per-image files, by role (``<stem><suffix>``).
OUTPUT_SUFFIXES = {"overlay": "_cam.png", "maps": "_maps.npy", "json": ".json"}


def output_names(stem: str) -> dict[str, str]:
    """File names written for one image: ``{"overlay": "<stem>_cam.png", "maps": ..., "json": ...}``."""
    return {role: stem + suffix for role, suffix in OUTPUT_SUFFIXES.items()}


def unique_stems(paths: list[str | None]) -> list[str]:
    """One output stem per input: the file's stem, ``_1``, ``_2``... for repeated names, ``image`` for None."""
    used: dict[str, int] = {}
    stems = []
    for p in paths:
        stem = Path(p).stem if p else "image"
        n = used.get(stem, 0)
        used[stem] = n + 1
        stems.append(stem if n == 0 else f"{stem}_{n}")
    return stems


def read_index(folder: str | Path) -> dict | None:
    """The folder's explain index as a dict, or None when there is none (or it is not one of ours)."""
    try:
        doc = json.loads((Path(folder) / INDEX_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("images"), list) else None


def own_output_files(folder: str | Path) -> set[str]:
    """Names of the files in ``folder`` that its explain index says a run wrote (empty without one)."""
    doc = read_index(folder)
    if doc is None:
        return set()
    names: set[str] = set(n for n in doc.get("planned_outputs") or [] if isinstance(n, str))
    recorded = False
    for im in doc["images"]:
        outputs = im.get("outputs") if isinstance(im, dict) else None
        if isinstance(outputs, dict):
            recorded = True
            names.update(n for n in outputs.values() if isinstance(n, str))
    if not recorded and not names:
        # An index without file lists: the files follow from the recorded paths' stems.
        paths = [im.get("path") for im in doc["images"] if isinstance(im, dict) and "predictions" in im]
        for stem in unique_stems(paths):
            names.update(output_names(stem).values())
    return {n for n in names if n and Path(n).name == n}  # plain names only: never outside the folder


class ExplanationFolder:
    """Context manager: lock ``out_dir``, clear a previous run, keep the index true (module docstring).

    >>> with ExplanationFolder("out", overwrite=False) as folder:   # doctest: +SKIP
    ...     folder.plan(["chelsea", "coffee"])
    ...     ...; folder.finish(document)

    Raises :class:`~camkit.errors.RunDirectoryError` (one line, naming the folder): a file, an
    unwritable folder, a folder in use by another run, or foreign files without ``overwrite``.
    """

    def __init__(self, out_dir: str | Path, overwrite: bool = False, command: str = "camkit explain") -> None:
        self.out_dir = Path(out_dir)
        self.overwrite = overwrite
        self._lock = RunLock(self.out_dir, command)
        self._planned: list[str] = []

    def open(self) -> ExplanationFolder:
        self._lock.acquire()
        try:
            _check_writable(self.out_dir)
            previous = own_output_files(self.out_dir) if read_index(self.out_dir) is not None else None
            foreign = sorted(
                p.name for p in self.out_dir.iterdir()
                if not p.name.startswith(".") and p.name != INDEX_NAME and p.name not in (previous or set())
            )
            if foreign and previous is None and not self.overwrite:
                raise ForeignFilesError(self.out_dir, foreign)
            for name in sorted(previous or ()):
                try:
                    (self.out_dir / name).unlink()
                except FileNotFoundError:
                    pass
                except OSError as e:
                    raise RunDirectoryError(
                        f"cannot remove {self.out_dir / name} from the previous run: {e.strerror or e}; "
                        "remove it or choose another folder"
                    ) from None
        except BaseException:
            self._lock.release()
            raise
        return self

    def plan(self, stems: list[str], header: dict | None = None) -> None:
        """Record the files this run will write (``complete: false``) before writing any of them."""
        self._planned = [n for s in stems for n in output_names(s).values()]
        doc = dict(header or {})
        doc.update({"complete": False, "planned_outputs": self._planned, "images": []})
        self._write_index(doc)

    def finish(self, document: dict) -> Path:
        """Replace the index with the run's full document (``complete: true``); returns its path."""
        doc = dict(document)
        doc["complete"] = True
        doc.pop("planned_outputs", None)
        return self._write_index(doc)

    def _write_index(self, doc: dict) -> Path:
        target = self.out_dir / INDEX_NAME
        fd, tmp = tempfile.mkstemp(prefix=".explanations-", suffix=".tmp", dir=self.out_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(doc, indent=2) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return target

    def close(self) -> None:
        self._lock.release()

    def __enter__(self) -> ExplanationFolder:
        return self if self._lock.held else self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _check_writable(folder: Path) -> None:
    """Create and delete a file in ``folder``: the only test that holds for root and read-only mounts."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".camkit-write-test-", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise RunDirectoryError(f"cannot write to {folder}: {e.strerror or e}; choose a writable output folder") from None


__all__ = ["INDEX_NAME", "LOCK_NAME", "ExplanationFolder", "ForeignFilesError", "output_names", "own_output_files", "read_index", "unique_stems"]
