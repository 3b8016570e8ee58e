"""The console script ends the process without the interpreter's teardown (cli.app._exit_now): exit codes,
atexit handlers, flushed output and a still-running thread are what a normal exit would give."""

from __future__ import annotations

import subprocess
import sys
import textwrap

RUN = textwrap.dedent("""
    import atexit, sys, threading, time
    {setup}
    sys.argv = ["camkit", *{args!r}]
    from camkit.cli.app import main
    main()
    print("main returned", flush=True)
""")


def _run(args: list[str], setup: str = "") -> subprocess.CompletedProcess:
    code = RUN.format(setup=textwrap.dedent(setup), args=args)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_success_runs_atexit_handlers_and_flushes_piped_output():
    r = _run(["models"], setup="atexit.register(lambda: print('atexit ran', flush=True))")
    assert r.returncode == 0, r.stderr
    assert "efficientnet_lite0" in r.stdout  # the whole table reached the pipe
    assert r.stdout.rstrip().endswith("atexit ran")
    assert "main returned" not in r.stdout  # the process ended inside main()


def test_input_error_keeps_its_exit_code_and_one_line():
    r = _run(["evaluate", "--dataset", "ilsvrc", "--root", "/nonexistent/camkit-root", "--out", "/tmp/camkit-unused"])
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error:")
    assert "main returned" not in r.stdout


def test_usage_error_exit_code():
    r = _run(["no-such-command"])
    assert r.returncode == 2
    assert "No such command" in r.stderr


def test_a_running_non_daemon_thread_gets_the_normal_exit():
    # a normal exit waits for the thread; ending the process at once would cut it off
    setup = """
        def late():
            time.sleep(1.0)
            print("thread finished", flush=True)
        threading.Thread(target=late).start()
    """
    r = _run(["models"], setup=setup)
    assert r.returncode == 0, r.stderr
    assert "thread finished" in r.stdout
