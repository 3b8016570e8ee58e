"""The report's thumbnails: each photo squashed to a :data:`THUMB_SIDE` square, JPEG, as a data URI.

A thumbnail is the photo alone (the page draws the boxes over it as SVG), so it depends on nothing but
the photo file: it can be made before a run has any result. ``camkit evaluate`` uses that to have its
figure process make them while the evaluating process imports torch (:class:`ThumbnailPrefetch`), on the
core that import leaves idle.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from camkit.app.imaging import data_uri, jpeg_bytes

__all__ = ["MAX_THUMBNAILS", "THUMB_SIDE", "ThumbnailPrefetch", "start_every_thumbnail", "start_thumbnails",
           "thumbnail_threads", "thumbnail_uri", "thumbnails_of"]

#: At most this many thumbnails are embedded in a report (worst images first, then the best), ~8 KB each.
MAX_THUMBNAILS = 2000
#: Side of the thumbnail square in pixels (the page shows it at 112 CSS px: sharp on 1.5x screens).
THUMB_SIDE = 160


def thumbnail_uri(path: Path) -> str | None:
    """A ``data:image/jpeg`` URI: the photo at ``path`` squashed (aspect ignored, as the network's input)
    to :data:`THUMB_SIDE` x :data:`THUMB_SIDE` with Pillow's antialiased bilinear, JPEG quality 80.
    None when the photo cannot be read."""
    from camkit.io import load_image
    from camkit.pil_resize import resize_rgb

    try:
        # a JPEG is decoded at the smallest DCT scale that still covers the thumbnail
        img = load_image(path, reduce_to=(THUMB_SIDE, THUMB_SIDE))
    except Exception:  # noqa: BLE001 - a missing photo leaves its thumbnail out, the row stays
        return None
    # camkit's kernel of Pillow's resize, read from the PIL image's memory: no array copy first
    out = np.ascontiguousarray(resize_rgb(img, (THUMB_SIDE, THUMB_SIDE), "bilinear"))
    return data_uri(jpeg_bytes(out, 80), "image/jpeg")


def thumbnail_threads() -> int:
    """Threads for thumbnails: one per core (decoding, resizing and JPEG encoding release the GIL)."""
    return max(1, min(8, os.cpu_count() or 1))


def start_thumbnails(pool: Executor, items: Iterable[tuple[int, Path]]) -> dict[int, Future]:
    """Start on ``pool`` the thumbnails of ``items`` (record index, photo path). Returns record index ->
    future of the data URI (None when the photo cannot be read), for
    :func:`camkit.app.report_html.write_report_html`'s ``thumbnails``: a caller starts them while it does other work."""
    return {i: pool.submit(thumbnail_uri, path) for i, path in items}


def start_every_thumbnail(pool: Executor, items: Iterable[tuple[int, Path]]) -> dict[int, Future]:
    """:func:`start_thumbnails` of a run whose report shows every image: ``items`` are all its images (record
    index, photo). More than :data:`MAX_THUMBNAILS`: nothing is started ({}), since the report then shows the
    worst and best by the run's best tau, known once the summary is written."""
    chosen: list[tuple[int, Path]] = []
    for item in items:
        if len(chosen) == MAX_THUMBNAILS:
            return {}
        chosen.append(item)
    return start_thumbnails(pool, chosen)


def thumbnails_of(paths: Iterable[str | Path], made: dict[str, str | None] | None = None) -> dict[str, str | None]:
    """path (as given) -> :func:`thumbnail_uri` for every path: taken from ``made`` (str(path) -> URI) when
    there, else made now on one thread per core."""
    made = dict(made or {})
    missing = list(dict.fromkeys(str(p) for p in paths if str(p) not in made))
    if missing:
        with ThreadPoolExecutor(thumbnail_threads()) as pool:
            made.update(zip(missing, pool.map(thumbnail_uri, map(Path, missing)), strict=True))
    return {str(p): made[str(p)] for p in paths}


class ThumbnailPrefetch:
    """Thumbnails of a list of photos made ahead, in order, on a background thread of low priority.

    :meth:`take` returns the thumbnails asked for: those made already, the others made then, on the caller's
    thread (the background thread stops at its next photo). The low priority (nice 19 on Linux) means
    that once the machine is busy (the evaluation's forwards) the thread only gets what is left over.
    """

    def __init__(self, photos: Callable[[], Sequence[Path]]) -> None:
        """``photos`` is called on the background thread (e.g. reading a dataset's layout); an error there
        just leaves nothing made ahead."""
        self._made: dict[str, str | None] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(photos,), name="camkit-thumbnail-prefetch", daemon=True)
        self._thread.start()

    def _run(self, photos: Callable[[], Sequence[Path]]) -> None:
        _lower_this_threads_priority()
        try:
            paths = photos()
        except Exception:  # noqa: BLE001 - the caller reads the dataset itself and reports its errors
            return
        if len(paths) > MAX_THUMBNAILS:
            return  # the report will show only the worst and best, not known yet
        for path in paths:
            if self._stop.is_set():
                return
            self._made[str(path)] = thumbnail_uri(Path(path))

    def take(self, paths: Iterable[str | Path]) -> dict[str, str | None]:
        """path (as given) -> its thumbnail's data URI (None when unreadable), for every path."""
        self._stop.set()
        # a snapshot: the thread may add one more, made again there (the same bytes)
        return thumbnails_of(paths, dict(self._made))


def _lower_this_threads_priority() -> None:
    # On Linux a thread is a task of its own: setpriority on its id renices this thread only.
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except OSError:
            pass
