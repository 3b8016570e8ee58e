"""A run's figures drawn by a second Python process while this one writes the rest of its outputs.

Drawing the BoxAcc curves and the two galleries (matplotlib: one thread holding the GIL) takes ~0.5 s
after the last forward, and importing matplotlib ~0.25 s more. ``camkit evaluate`` starts this process
before it imports torch (:func:`start_early`): its imports run on the core that torch's single-threaded
import leaves idle, it sleeps through the evaluation (blocked on a pipe, no CPU), and it draws while
this process writes ``per_image.csv``, ``summary.json`` and the report.

Anything going wrong over there (no interpreter, a crash, an error, no answer in time) costs only the
overlap: :class:`FigureDrawer` draws here every figure the process did not confirm, exactly as without
it, so an error surfaces here as it always did. Every wait is bounded (:data:`WAIT_S`).

Protocol: pickles over the child's stdin / stdout, each framed by its 8-byte little-endian length;
``(name, args)`` -> ``(None, value)`` when the job was done (a figure: ``camkit.evaluate.plots.<name>(*args)``
drew it, value None), else ``(error, None)`` with the error's ``"Type: message"``. The child ends when its
stdin closes, so it never outlives this process (a parent killed by SIGKILL closes it too).
"""

from __future__ import annotations

import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any

__all__ = ["FIGURES", "VALUE_JOBS", "FigureDrawer", "FigureProcess", "FigureProcessError", "WAIT_S", "discard_early",
           "prefetch_thumbnails_early", "start_early", "take_early"]

#: The functions of :mod:`camkit.evaluate.plots` the process may be asked to call.
FIGURES = frozenset({"plot_curves", "plot_pxap_curve", "plot_gallery"})

#: The other jobs, which answer a value: ``prefetch_thumbnails`` (a dataset's layout arguments and ``limit``:
#: start making the report's thumbnails of its photos, answers None at once) and ``thumbnails`` (photo paths:
#: answers path -> data URI, see :class:`camkit.app.thumbnails.ThumbnailPrefetch`).
VALUE_JOBS = frozenset({"prefetch_thumbnails", "thumbnails"})

#: Longest wait for the process to finish the figures it was given (it normally needs well under 1 s); after
#: it, the process is killed and the figures are drawn here.
WAIT_S = 120.0

_FRAME = struct.Struct("<Q")


def write_frame(stream: IO[bytes], payload: bytes) -> None:
    """One message: its length, then its bytes."""
    stream.write(_FRAME.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def read_frame(stream: IO[bytes]) -> bytes | None:
    """The next message, or None at the end of the stream (also when it ends inside a message)."""
    head = stream.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return None
    (n,) = _FRAME.unpack(head)
    payload = stream.read(n)
    return payload if len(payload) == n else None


class FigureProcess:
    """The drawing process and the thread that talks to it (sends a job, reads its answer, in turn)."""

    def __init__(self, popen: subprocess.Popen) -> None:
        self._popen = popen
        self._outbox: queue.Queue[tuple[bytes, Future] | None] = queue.Queue()
        self._answers: list[str | None] = []  # per job answered, in order: None = done, else the error
        self._pending: list[Future] = []  # sent or queued, not answered yet
        self._lock = threading.Lock()
        self._closed = False  # no more answers will come
        self._answered = threading.Event()  # every job sent has its answer, or never will
        self._thread = threading.Thread(target=self._talk, name="camkit-figures", daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, command: Sequence[str] | None = None) -> FigureProcess | None:
        """Start the worker (:mod:`camkit.evaluate.figure_worker`), or ``command``; None when it cannot be started."""
        # The child gets this process's sys.path, so it imports this camkit (installed or a source tree) and
        # the same libraries.
        bootstrap = f"import sys; sys.path[:] = {sys.path!r}; from camkit.evaluate.figure_worker import main; main()"
        cmd = list(command) if command is not None else [sys.executable, "-c", bootstrap]
        try:
            popen = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except (OSError, ValueError):  # no interpreter to run, a sandbox without fork/exec
            return None
        return cls(popen)

    def submit(self, name: str, args: tuple) -> Future:
        """Queue one job (a figure of :data:`FIGURES` or a job of :data:`VALUE_JOBS`). ``args`` are pickled now, so
        the caller may change them afterwards. The future gets the job's value (None for a figure), or
        :class:`FigureProcessError` when it failed over there or the process ended without answering."""
        future: Future = Future()
        payload = pickle.dumps((name, args), protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            if self._closed:
                future.set_exception(FigureProcessError("the figure process has ended"))
                return future
            self._pending.append(future)
            self._outbox.put((payload, future))
        return future

    def _talk(self) -> None:
        stdin, stdout = self._popen.stdin, self._popen.stdout
        assert stdin is not None and stdout is not None
        try:
            while (job := self._outbox.get()) is not None:
                payload, future = job
                write_frame(stdin, payload)
                answer = read_frame(stdout)
                if answer is None:
                    return  # the process ended
                error, value = pickle.loads(answer)
                with self._lock:
                    self._answers.append(error)
                    self._pending.remove(future)
                if error is None:
                    future.set_result(value)
                else:
                    future.set_exception(FigureProcessError(error))
        except (OSError, ValueError, TypeError, pickle.UnpicklingError, EOFError):
            return  # a broken pipe, a closed stream, garbage: what was not answered is done by the caller
        finally:
            try:
                stdin.close()  # the child's signal to end
            except OSError:
                pass
            with self._lock:
                self._closed = True
                unanswered, self._pending = self._pending, []
            for future in unanswered:
                future.set_exception(FigureProcessError("the figure process ended without answering"))
            self._answered.set()
            # Reaped here, so the caller does not wait for the child's own exit (~0.1 s of interpreter teardown).
            self._popen.wait()
            stdout.close()

    def finish(self, timeout: float = WAIT_S) -> list[str | None]:
        """Wait (at most ``timeout`` s) for every job sent; the process then ends by itself (or is killed).

        Returns one entry per job the process answered, in the order sent: None when it did it, else its
        error. Jobs after the last entry were not answered (their futures hold a :class:`FigureProcessError`).
        """
        self._outbox.put(None)
        if not self._answered.wait(timeout):
            self.kill()  # unblocks the thread: its pipes break
            self._answered.wait(5.0)
        return list(self._answers)

    def kill(self) -> None:
        """End the process now (no-op when it has ended); the thread talking to it ends too."""
        self._outbox.put(None)  # a thread still waiting for a job to send stops there
        if self._popen.poll() is None:
            self._popen.kill()
            try:
                self._popen.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                pass


class FigureProcessError(RuntimeError):
    """A job the figure process failed (its error as ``"Type: message"``) or never answered."""


class FigureDrawer:
    """Draws figures of :mod:`camkit.evaluate.plots` (by name) in ``process`` when given, else at once, here.

    With a process, :meth:`draw` only queues the figure; :meth:`finish` waits for the process and draws
    here every figure it did not draw (an error raised by that second attempt propagates as usual).
    """

    def __init__(self, process: FigureProcess | None, timeout: float = WAIT_S) -> None:
        self._process, self._timeout = process, timeout
        self._jobs: list[tuple[str, tuple, Future]] = []

    def draw(self, name: str, *args: Any) -> None:
        if name not in FIGURES:
            raise ValueError(f"unknown figure {name!r}; one of {sorted(FIGURES)}")
        if self._process is None:
            _draw_here(name, args)
            return
        self._jobs.append((name, args, self._process.submit(name, args)))

    def finish(self) -> None:
        """Every figure is on disk when this returns (or its error has been raised)."""
        if self._process is None:
            return
        process, self._process = self._process, None
        process.finish(self._timeout)
        for name, args, done in self._jobs:
            if done.exception() is not None:  # every future is settled once finish returns
                _draw_here(name, args)


def _draw_here(name: str, args: tuple) -> None:
    from camkit.evaluate import plots

    getattr(plots, name)(*args)


_early: FigureProcess | None = None
_early_lock = threading.Lock()


def start_early() -> None:
    """Start the figure process now, so that its imports overlap this process's; the next run's outputs
    take it (:func:`take_early`). No-op when one is waiting already."""
    global _early
    with _early_lock:
        if _early is None:
            _early = FigureProcess.start()


def prefetch_thumbnails_early(kind: str, root: Path, annotations: Path | None, split: str | None,
                               mask_root: Path | None, limit: int | None) -> None:
    """Have the process :func:`start_early` started read the dataset (the arguments of
    :func:`camkit.datasets.read_layout`) and make the report's thumbnails of its first ``limit`` photos
    while this process imports torch and evaluates. No-op without such a process."""
    with _early_lock:
        if _early is not None:
            _early.submit("prefetch_thumbnails", (kind, str(root), None if annotations is None else str(annotations), split,
                                                  None if mask_root is None else str(mask_root), limit))


def take_early() -> FigureProcess | None:
    """The process :func:`start_early` started (the caller now owns it), or None."""
    global _early
    with _early_lock:
        process, _early = _early, None
    return process


def discard_early() -> None:
    """Stop a process :func:`start_early` started that no run took (e.g. the run failed before its outputs)."""
    process = take_early()
    if process is not None:
        process.kill()
