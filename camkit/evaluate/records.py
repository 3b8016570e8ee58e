"""Per-image results on disk: an append-only JSON Lines file that survives ``kill -9``.

One line per image, keyed by ``i`` (the image's position in the dataset): either a result or a
failure (``{"i", "id", "error"}``); the keys are listed in :mod:`camkit.evaluate.results`. Lines are written a batch at a time with one ``write`` followed by
``flush`` + ``os.fsync``, so after a crash the file holds every finished batch and at most one torn
(partial, newline-less) last line. :func:`read_records` ignores that line; :class:`RecordWriter`
cuts it off before appending, so a resumed run never glues a new line onto a fragment.

A distributed run (:mod:`camkit.distributed`) has each rank append to its own ``records.rank<r>.jsonl``
(:func:`shard_path`); rank 0 folds them into ``records.jsonl`` at the end (:func:`merge_shards`).
What a resumed run has done is the union over all of them (:func:`done_indices`), whatever number
of processes wrote them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from camkit.errors import RunDirectoryError

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

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------
# One file per rank. A distributed run (see camkit.distributed) has every rank append to its own
# ``records.rank<r>.jsonl``; rank 0 folds them into ``records.jsonl`` at the end. Resume reads all of
# them, whatever the world size that wrote them.

SHARD_PREFIX = "records.rank"
_INDEX_PREFIX = re.compile(rb'\{"i":(\d+)[,}]')  # RecordWriter writes "i" first, without spaces


def shard_path(out_dir: str | Path, rank: int) -> Path:
    """Rank ``rank``'s records file in ``out_dir``."""
    return Path(out_dir) / f"{SHARD_PREFIX}{int(rank)}.jsonl"


def record_files(out_dir: str | Path) -> list[Path]:
    """The records files of ``out_dir`` that exist: ``records.jsonl`` first, then the rank shards by rank."""
    out = Path(out_dir)
    shards = []
    for p in out.glob(f"{SHARD_PREFIX}*.jsonl"):
        rank = p.name[len(SHARD_PREFIX) : -len(".jsonl")]
        if rank.isdigit():
            shards.append((int(rank), p))
    main = out / RECORDS_NAME
    return ([main] if main.exists() else []) + [p for _, p in sorted(shards)]


def _complete_lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(line number, index, line) of each complete, non-blank line of ``path`` (a torn last line is left out)."""
    data = path.read_bytes()
    for no, line in enumerate(data[: _complete_length(data)].split(b"\n")[:-1], 1):
        if not line.strip():
            continue
        m = _INDEX_PREFIX.match(line)
        yield no, (int(m.group(1)) if m else _parse(path, no, line)["i"]), line


def done_indices(out_dir: str | Path) -> set[int]:
    """Indices that have a record in any records file of ``out_dir`` (torn last lines ignored)."""
    return {i for path in record_files(out_dir) for _, i, _ in _complete_lines(path)}


def iter_all_records(out_dir: str | Path) -> Iterator[dict]:
    """Every record of ``out_dir`` once (the first file in :func:`record_files` order wins), file by file."""
    seen: set[int] = set()
    for path in record_files(out_dir):
        for rec in iter_records(path):
            if rec["i"] not in seen:
                seen.add(rec["i"])
                yield rec


def merge_shards(out_dir: str | Path) -> int:
    """Fold the rank shards of ``out_dir`` into ``records.jsonl`` in index (dataset) order; returns the record count.

    Each index is kept once, from the first file holding it (``records.jsonl``, then shards by rank;
    a resumed run only ever appends indices that had no record, so copies are identical anyway). The
    new ``records.jsonl`` is written to a temporary file, fsync'd and renamed over the old one before
    the shards are deleted, so a kill at any point leaves every record on disk and a rerun with
    ``--resume`` merges again. Lines are copied as bytes (not re-encoded). Without shards nothing changes.
    """
    out = Path(out_dir)
    files = record_files(out)
    shards = [p for p in files if p.name != RECORDS_NAME]
    if not shards:
        main = out / RECORDS_NAME
        return sum(1 for _ in _complete_lines(main)) if main.exists() else 0
    lines: dict[int, bytes] = {}
    for path in files:
        for _, i, line in _complete_lines(path):
            lines.setdefault(i, line)
    tmp = out / (RECORDS_NAME + ".merging")
    with open(tmp, "wb") as f:
        f.writelines(lines[i] + b"\n" for i in sorted(lines))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(out / RECORDS_NAME)
    _fsync_dir(out)
    for p in shards:
        p.unlink()
    return len(lines)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # directories cannot be opened on Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LineCounter:
    """Complete lines in a folder's records files, read incrementally (rank 0's global progress count)."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self._offsets: dict[Path, int] = {}
        self._count = 0

    def count(self) -> int:
        for path in record_files(self.out_dir):
            start = self._offsets.get(path, 0)
            try:
                with open(path, "rb") as f:
                    f.seek(start)
                    chunk = f.read()
            except FileNotFoundError:
                continue
            end = chunk.rfind(b"\n") + 1
            self._count += chunk[:end].count(b"\n")
            self._offsets[path] = start + end
        return self._count
