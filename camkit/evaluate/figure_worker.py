"""The drawing side of :mod:`camkit.evaluate.figure_process`: ``python -m camkit.evaluate.figure_worker``.

Imports what the figures need at once (the parent starts this before it imports torch, so the two
imports run on different cores), then does each job it is sent until its stdin closes: draws a figure,
or makes the report's thumbnails ahead (:class:`camkit.app.thumbnails.ThumbnailPrefetch`) and hands
them over. torch is never imported here.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from pathlib import Path
from typing import Any


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
    state: dict[str, Any] = {}
    while (payload := figure_process.read_frame(jobs)) is not None:
        name, args = pickle.loads(payload)
        error, value = None, None
        try:
            if name in figure_process.FIGURES:
                getattr(plots, name)(*args)
            elif name in figure_process.VALUE_JOBS:
                value = _value_job(name, args, state)
            else:
                raise ValueError(f"unknown figure {name!r}")
        except Exception as e:  # noqa: BLE001 - reported to the parent, which does the job itself
            error, value = f"{type(e).__name__}: {e}", None
        figure_process.write_frame(answers, pickle.dumps((error, value), protocol=pickle.HIGHEST_PROTOCOL))


def _value_job(name: str, args: tuple, state: dict[str, Any]) -> Any:
    from camkit.app.thumbnails import ThumbnailPrefetch, thumbnails_of

    if name == "prefetch_thumbnails":
        kind, root, annotations, split, mask_root, limit = args
        state["prefetch"] = ThumbnailPrefetch(lambda: _dataset_photos(kind, root, annotations, split, mask_root, limit))
        return None
    (paths,) = args
    prefetch = state.pop("prefetch", None)
    return prefetch.take(paths) if prefetch is not None else thumbnails_of(paths)


def _dataset_photos(kind: str, root: str, annotations: str | None, split: str | None, mask_root: str | None,
                    limit: int | None) -> list[Path]:
    """The photo paths of the first ``limit`` samples, as ``camkit.evaluate.evaluate`` takes them."""
    from camkit.datasets import read_layout

    ds = read_layout(kind, Path(root), None if annotations is None else Path(annotations), split,
                     None if mask_root is None else Path(mask_root))
    return [Path(s.image_path) for s in ds.samples[:limit]]


if __name__ == "__main__":
    main()
