"""The run directory of one evaluation: its lock, its fingerprint, and what ``resume`` continues.

Files (all in the output folder):

- ``.camkit.lock``: :class:`camkit.io.run_lock.RunLock`, held from the first check to the last output;
  a second run into the same folder is refused naming the folder and the holder's pid.
- ``run.json``: the fingerprint (:func:`run_fingerprint`): protocol, model, dataset ids digest, number of
  images and batch size. ``resume`` continues only a run with the same fingerprint.
- ``records.jsonl``: the per-image records (:mod:`camkit.evaluate.records`, keys in
  :mod:`camkit.evaluate.results`), appended and fsync'd a batch at a time.
- ``records.rank<r>.jsonl``: in a distributed run, each rank's records, folded into ``records.jsonl``
  by rank 0 at the end (:meth:`RunDirectory.merge`); a resumed run counts the records of every file.

Distributed runs: only rank 0 opens the directory (lock, checks, ``run.json``); every rank writes
its own records file through :meth:`RunDirectory.writer`. ``run.json`` also lists ``world_sizes``,
the number of processes of each start of the run (``[1]``; ``[2, 4]`` for a 2-process run resumed on
4); it is not part of the fingerprint, so a run may be resumed with another number of processes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from camkit.errors import RunDirectoryError
from camkit.evaluate.protocol import Protocol
from camkit.evaluate.records import (
    RECORDS_NAME,
    RecordWriter,
    done_indices,
    iter_records,
    merge_shards,
    record_files,
    shard_path,
)
from camkit.io.run_lock import RunLock

RUN_NAME = "run.json"


class ResumeError(RunDirectoryError):
    """The folder holds another run's results: a run with other options (``differs`` names them), or
    any results when not resuming (``differs`` is None). Front ends word the fix in their own terms."""

    def __init__(self, path: Path, differs: list[str] | None) -> None:
        self.path = path
        self.differs = differs
        if differs is None:
            msg = f"{path} already holds results ({RECORDS_NAME}); pass resume=True to continue it, or another out_dir"
        else:
            msg = (f"cannot resume {path}: it holds a run with a different {', '.join(differs)}; use the same dataset, "
                   "model and options (batch_size included), or another out_dir")
        super().__init__(msg)


def ids_digest(samples: Sequence) -> str:
    """SHA-1 of the samples' ids, classes, boxes (and mask paths when there are masks), in order."""
    h = hashlib.sha1()
    for s in samples:
        h.update(f"{s.image_id}\t{s.class_index}\t{s.boxes.tolist()}\n".encode())
        if s.mask_paths:  # only then, so box datasets keep the digest they had before masks existed
            h.update(f"masks\t{[str(m) for m in s.mask_paths]}\t{s.ignore_path}\n".encode())
    return h.hexdigest()


def run_fingerprint(protocol: Protocol, model: dict, dataset: dict, batch_size: int) -> dict:
    """What must match for ``resume`` to continue a run (timing and file locations may differ).

    The batch size fixes which images share a forward pass (:func:`camkit.evaluate.loop.batch_partition`),
    so it must match too.
    """
    return {"protocol": protocol.to_dict(), "model": model, "ids_sha1": dataset["ids_sha1"],
            "n_images": dataset["n_images"], "batch_size": batch_size}


#: Model fingerprint keys that say how the network is computed (its maps differ by float rounding), with the
#: words for a resume that differs only there.
_COMPUTE_KEYS = {
    "layout": "the model's weight layout (channels-last or NCHW: set CAMKIT_CHANNELS_LAST=0 for a run made with "
              "NCHW weights, unset it for a channels-last one)",
    "batchnorm": "folded batch norms (set CAMKIT_FOLD_BATCHNORM=0 for a run made without them, unset it for one "
                 "made with them)",
}


def _difference(key: str, old, new) -> str:
    """How a fingerprint entry differs, in words: its key, or for a model that differs only in how the network is
    computed (camkit.models.memory_format, camkit.models.batchnorm_fold), that and the switch that sets it."""
    if key == "model" and isinstance(old, dict) and isinstance(new, dict):
        differ = [k for k in {*old, *new} if old.get(k) != new.get(k)]
        if differ and all(k in _COMPUTE_KEYS for k in differ):
            return "; ".join(_COMPUTE_KEYS[k] for k in sorted(differ))
    return key


class RunDirectory:
    """An output folder opened for one run (a context manager holding its :class:`RunLock`).

    Entering it takes the lock, then either starts a new run (refusing a folder that already holds
    records) or, with ``resume``, checks that ``run.json`` matches ``fingerprint``. ``world_size``: the
    number of processes writing records (each through :meth:`writer` with its rank).
    """

    def __init__(self, path: str | Path, fingerprint: dict, resume: bool = False, world_size: int = 1) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.resume = resume
        self.world_size = world_size
        self._lock = RunLock(self.path, "camkit evaluate")

    @property
    def records_path(self) -> Path:
        return self.path / RECORDS_NAME

    def __enter__(self) -> RunDirectory:
        self._lock.acquire()
        try:
            self._prepare()
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._lock.release()

    def open(self) -> None:
        """Take the lock and check/start the run, as entering the context does (rank 0 of a distributed run)."""
        self.__enter__()

    def close(self) -> None:
        self._lock.release()

    def _prepare(self) -> None:
        run_path = self.path / RUN_NAME
        world_sizes: list[int] = []
        if self.resume and run_path.exists():
            try:
                old = json.loads(run_path.read_text(encoding="utf-8"))
            except ValueError:
                raise RunDirectoryError(f"{run_path} is not valid JSON; delete {self.path} and start the run again") from None
            what = [_difference(k, old.get(k), v) for k, v in self.fingerprint.items() if old.get(k) != v]
            if what:
                raise ResumeError(self.path, what)
            world_sizes = [int(w) for w in old.get("world_sizes", [])]
        elif not self.resume and any(p.stat().st_size for p in record_files(self.path)):
            raise ResumeError(self.path, None)
        tmp = run_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**self.fingerprint, "world_sizes": [*world_sizes, self.world_size]}, indent=1),
                       encoding="utf-8")
        tmp.replace(run_path)

    def done_indices(self) -> set[int]:
        """Indices of the images that already have a record in any records file (empty unless resuming)."""
        return done_indices(self.path) if self.resume else set()

    def writer(self, rank: int = 0) -> RecordWriter:
        """Where ``rank`` appends its records: ``records.jsonl`` in a one-process run, else its own file."""
        return RecordWriter(self.records_path if self.world_size == 1 else shard_path(self.path, rank))

    def merge(self) -> int:
        """Fold the per-rank records files into ``records.jsonl`` (:func:`merge_shards`); the record count."""
        return merge_shards(self.path)

    def records(self) -> Iterator[dict]:
        return iter_records(self.records_path)
