"""An exclusive lock on an output folder, held for the length of one camkit run.

Two runs writing into the same folder corrupt each other silently (interleaved records, a summary
of one run's options holding the other's metrics), so every command that writes a run folder holds
this lock. It is ``fcntl.flock`` on ``<folder>/.camkit.lock``: the kernel drops it when the holder
exits or dies (``kill -9`` included), so a lock file left by a dead process is never stale; the file
only carries the holder's pid and command for the refusal message. The file is never deleted: an
unlink between one process's unlock and another's lock would let two processes hold "the" lock on
two different inodes.

On platforms without ``fcntl`` (Windows) the lock is a no-op.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import ModuleType, TracebackType

from camkit.errors import RunDirectoryError

fcntl: ModuleType | None  # None where the platform has no fcntl (Windows)
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".camkit.lock"


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    pid = info.get("pid")
    what = info.get("command")
    if pid is None:
        return "another process"
    return f"pid {pid}" + (f" ({what})" if what else "")


class RunLock:
    """Exclusive, non-blocking lock on ``directory`` (created if missing), as a context manager.

    >>> with RunLock(out_dir, "camkit evaluate"):   # doctest: +SKIP
    ...     write_outputs(out_dir)

    Raises :class:`~camkit.errors.RunDirectoryError` (one line, naming the folder) when the folder
    is a file, cannot be created or written, or is locked by another live process.
    """

    def __init__(self, directory: str | Path, command: str = "camkit") -> None:
        self.directory = Path(directory)
        self.command = command
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self.directory / LOCK_NAME

    def acquire(self) -> RunLock:
        d = self.directory
        if d.exists() and not d.is_dir():
            raise RunDirectoryError(f"{d} is a file, not a folder: choose another output folder")
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunDirectoryError(f"cannot write to {d}: {e.strerror or e}; choose a writable output folder") from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise RunDirectoryError(
                    f"{d} is in use by {_holder(self.path)}: wait for that run to finish or choose another output folder"
                ) from None
        info = json.dumps({"pid": os.getpid(), "command": self.command, "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, info.encode(), 0)
        except OSError as e:
            os.close(fd)
            raise RunDirectoryError(f"cannot write to {d}: {e.strerror or e}; choose a writable output folder") from None
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)  # closing drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
