"""Per-image results on disk: an append-only JSON Lines file that survives ``kill -9``.

One line per image, keyed by ``i`` (the image's position in the dataset): either a result or a
failure (``{"i", "id", "error"}``); the keys are listed in :mod:`camkit.evaluate.results`. Lines are written a batch at a time with one ``write`` followed by
``flush`` + ``os.fsync``, so after a crash the file holds every finished batch and at most one torn
(partial, newline-less) last line. :func:`read_records` ignores that line; :class:`RecordWriter`
cuts it off before appending, so a resumed run never glues a new line onto a fragment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from camkit.errors import CamkitError, RunDirectoryError

RECORDS_NAME = "records.jsonl"


@dataclass
class RecordLog:
    """What :func:`read_records` found: ``records`` by index, torn bytes dropped, duplicate lines seen."""

    records: dict[int, dict]
    torn_bytes: int = 0
    duplicates: int = 0


def _complete_length(data: bytes) -> int:
    """Length of the prefix made of complete (newline-terminated) lines."""
    return data.rfind(b"\n") + 1


def iter_records(path: str | Path) -> Iterator[dict]:
    """Stream the records of ``path`` in file order: each index once (the first), torn last line skipped.

    Memory is one line plus the set of indices seen. Malformed complete lines raise as in
    :func:`read_records`.
    """
    path = Path(path)
    if not path.exists():
        return
    seen: set[int] = set()
    with open(path, "rb") as f:
        for no, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                return  # torn by a kill mid-write; the writer cuts it before appending
            if not line.strip():
                continue
            rec = _parse(path, no, line)
            if rec["i"] in seen:
                continue
            seen.add(rec["i"])
            yield rec


def _parse(path: Path, no: int, line: bytes) -> dict:
    try:
        rec = json.loads(line)
        rec["i"] = int(rec["i"])
    except (ValueError, KeyError, TypeError):
        raise RunDirectoryError(
            f"{path} line {no} is not a camkit record; delete {path.parent} (or choose another output folder) and run again."
        ) from None
    return rec


def read_records(path: str | Path) -> RecordLog:
    """Read a records file written by :class:`RecordWriter`.

    A torn last line (no trailing newline, from a kill mid-write) is ignored and counted in
    ``torn_bytes``. A malformed *complete* line is corruption, not a crash artefact: it raises
    :class:`CamkitError` naming the file and line. An index seen twice keeps its first record
    (``duplicates`` counts the rest; the writer never produces any).
    """
    path = Path(path)
    if not path.exists():
        return RecordLog({})
    data = path.read_bytes()
    end = _complete_length(data)
    log = RecordLog({}, torn_bytes=len(data) - end)
    for no, line in enumerate(data[:end].split(b"\n")[:-1], 1):
        if not line.strip():
            continue
        rec = _parse(path, no, line)
        i = rec["i"]
        if i in log.records:
            log.duplicates += 1
            continue
        log.records[i] = rec
    return log


class RecordWriter:
    """Append records to ``path``; each :meth:`write` is durable (fsync'd) when it returns.

    Opening cuts a torn last line left by a killed run, so appends always start on a line boundary.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "ab")
        size = self._f.seek(0, os.SEEK_END)
        if size:
            with open(self.path, "rb") as r:
                keep = _complete_length(r.read())
            if keep != size:
                self._f.truncate(keep)
                self._f.seek(keep)
                self._sync()

    def _sync(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def write(self, records: Iterable[dict]) -> None:
        """Append the records as lines in one write, then flush and fsync."""
        lines = [json.dumps(r, separators=(",", ":"), ensure_ascii=False) for r in records]
        if not lines:
            return
        self._f.write(("\n".join(lines) + "\n").encode("utf-8"))
        self._sync()

    def close(self) -> None:
        if not self._f.closed:
            self._sync()
            self._f.close()

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
