"""RunLock: one run per output folder; the refusal names the folder and the holder; dead holders free it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from camkit.errors import RunDirectoryError
from camkit.io.run_lock import LOCK_NAME, RunLock

HOLD = """
import sys, time
from camkit.io.run_lock import RunLock
with RunLock(sys.argv[1], "camkit evaluate"):
    print("locked", flush=True)
    time.sleep(60)
"""


def _start_holder(folder: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "locked"  # bounded: the child sleeps at most 60 s
    return p


def test_second_process_is_refused_with_folder_and_pid(tmp_path):
    out = tmp_path / "run"
    holder = _start_holder(out)
    try:
        with pytest.raises(RunDirectoryError) as err:
            RunLock(out, "camkit explain").acquire()
        msg = str(err.value)
        assert str(out) in msg and f"pid {holder.pid}" in msg and "camkit evaluate" in msg
        assert "\n" not in msg
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_lock_of_a_killed_process_is_not_stale(tmp_path):
    out = tmp_path / "run"
    holder = _start_holder(out)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    assert (out / LOCK_NAME).exists()  # the file stays; the kernel dropped the flock
    with RunLock(out, "camkit evaluate") as lock:
        assert lock.held


def test_released_on_exit_and_reentrant_after(tmp_path):
    out = tmp_path / "run"
    with RunLock(out):
        pass
    with RunLock(out) as again:
        assert again.held
    assert not again.held


def test_same_process_second_lock_is_refused(tmp_path):
    # flock locks belong to open file descriptions, so a second open in one process conflicts too
    with RunLock(tmp_path / "r"):
        with pytest.raises(RunDirectoryError, match="in use by pid"):
            RunLock(tmp_path / "r").acquire()


def test_a_file_or_unwritable_folder_is_refused_in_one_line(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(RunDirectoryError, match="is a file, not a folder"):
        RunLock(f).acquire()
    with pytest.raises(RunDirectoryError, match="cannot write to"):
        RunLock(Path("/proc/camkit-no-such/run")).acquire()
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(RunDirectoryError, match="cannot write to"):
                RunLock(ro).acquire()
        finally:
            ro.chmod(0o700)


def test_holder_info_is_cleared_after_release(tmp_path):
    with RunLock(tmp_path / "r"):
        assert "pid" in (tmp_path / "r" / LOCK_NAME).read_text()
    assert (tmp_path / "r" / LOCK_NAME).read_text() == ""
