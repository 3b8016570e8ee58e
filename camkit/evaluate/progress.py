"""Progress of an evaluation across the ranks of a process group: ``progress(done, total)`` counted
over every rank's records, reported by rank 0 while it waits for the others."""

from __future__ import annotations

import threading

from camkit.distributed import Group
from camkit.evaluate.loop import Progress
from camkit.evaluate.records import LineCounter
from camkit.evaluate.rundir import RunDirectory


class RunProgress:
    """``report(done, total)`` for the batch loop. One process: ``progress`` itself. In a process group,
    rank 0 counts every rank's records instead (:class:`camkit.evaluate.records.LineCounter`, polled
    twice a second on a thread, so the count moves while rank 0 waits for the others); other ranks: None."""

    def __init__(self, progress: Progress | None, rundir: RunDirectory, total: int, group: Group) -> None:
        self.progress = progress
        self.total = total
        self.distributed = group.distributed
        self._counter = LineCounter(rundir.path)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Progress | None:
        if self.progress is None or not self.distributed:
            return self.progress
        self._poll()
        self._thread = threading.Thread(target=self._run, name="camkit-progress", daemon=True)
        self._thread.start()
        return None

    def _poll(self) -> None:
        assert self.progress is not None
        self.progress(min(self._counter.count(), self.total), self.total)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._poll()

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._poll()
