"""The drawing side of :mod:`camkit.evaluate.figure_process`: ``python -m camkit.evaluate.figure_worker``.

Imports what the figures need at once (the parent starts this before it imports torch, so the two
imports run on different cores), then draws each figure it is sent until its stdin closes. torch is
never imported here.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys


def main() -> None:
    # Ctrl-C reaches the whole process group: it is the parent's to handle; this process ends when the
    # parent closes its stdin (or dies).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Answers go to a private copy of stdout; anything printed while drawing goes to stderr instead.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    from camkit.evaluate import figure_process, plots

    plots.preload()
    jobs = sys.stdin.buffer
    while (payload := figure_process.read_frame(jobs)) is not None:
        name, args = pickle.loads(payload)
        error = None
        try:
            if name not in figure_process.FIGURES:
                raise ValueError(f"unknown figure {name!r}")
            getattr(plots, name)(*args)
        except Exception as e:  # noqa: BLE001 - reported to the parent, which draws the figure itself
            error = f"{type(e).__name__}: {e}"
        figure_process.write_frame(answers, pickle.dumps(error))


if __name__ == "__main__":
    main()
