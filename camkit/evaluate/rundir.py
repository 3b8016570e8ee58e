"""The run directory of one evaluation: its lock, its fingerprint, and what ``resume`` continues.

Files (all in the output folder):

- ``.camkit.lock``: :class:`camkit.io.run_lock.RunLock`, held from the first check to the last output;
  a second run into the same folder is refused naming the folder and the holder's pid.
- ``run.json``: the fingerprint (:func:`run_fingerprint`): protocol, model, dataset ids digest, number of
  images and batch size. ``resume`` continues only a run with the same fingerprint.
- ``records.jsonl``: the per-image records (:mod:`camkit.evaluate.records`, keys in
  :mod:`camkit.evaluate.results`), appended and fsync'd a batch at a time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from camkit.errors import RunDirectoryError
from camkit.evaluate.protocol import Protocol
from camkit.evaluate.records import RECORDS_NAME, RecordWriter, iter_records
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


class RunDirectory:
    """An output folder opened for one run (a context manager holding its :class:`RunLock`).

    Entering it takes the lock, then either starts a new run (refusing a folder that already holds
    records) or, with ``resume``, checks that ``run.json`` matches ``fingerprint``.
    """

    def __init__(self, path: str | Path, fingerprint: dict, resume: bool = False) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.resume = resume
        self._lock = RunLock(self.path, "camkit evaluate")

    @property
    def records_path(self) -> Path:
        return self.path / RECORDS_NAME

    def __enter__(self) -> "RunDirectory":
        self._lock.acquire()
        try:
            self._prepare()
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._lock.release()

    def _prepare(self) -> None:
        run_path = self.path / RUN_NAME
        if self.resume and run_path.exists():
            try:
                old = json.loads(run_path.read_text(encoding="utf-8"))
            except ValueError:
                raise RunDirectoryError(f"{run_path} is not valid JSON; delete {self.path} and start the run again") from None
            if old != self.fingerprint:
                what = [k for k in self.fingerprint if old.get(k) != self.fingerprint[k]]
                raise ResumeError(self.path, what)
            return
        if self.records_path.exists() and self.records_path.stat().st_size and not self.resume:
            raise ResumeError(self.path, None)
        tmp = run_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.fingerprint, indent=1), encoding="utf-8")
        tmp.replace(run_path)

    def done_indices(self) -> set[int]:
        """Indices of the images that already have a record (empty unless resuming)."""
        return {r["i"] for r in iter_records(self.records_path)} if self.resume else set()

    def writer(self) -> RecordWriter:
        return RecordWriter(self.records_path)

    def records(self) -> Iterator[dict]:
        return iter_records(self.records_path)
