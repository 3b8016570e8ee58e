"""Boxes of one map at every threshold of the page's slider, under both of camkit's conventions.

The grid is ``tau = i / 100`` for ``i = 0..100`` (:data:`TAUS`). For each map the server computes
every threshold's box once, so the slider redraws from arrays in the page without asking again:

- ``"cvpr16"``: :func:`camkit.localize.cvpr16_box` on the map inside the window the network saw
  (ReLU, divide by the max, keep >= tau, largest 8-connected component), inclusive pixels in the
  photo's coordinates: exactly what ``camkit explain --tau T`` prints.
- ``"wsol"`` (wsolevaluation): the window's map min-max normalised, then
  :func:`camkit.localize.sweep_boxes` (keep > int(tau * 255-max), OpenCV contours; V1 = the
  largest contour, V2 = every contour), boxes ``x, y, x + w, y + h`` as the reference writes them.
"""

from __future__ import annotations

import numpy as np

from camkit.localize import cvpr16_box, normalize_scoremap, sweep_boxes

__all__ = ["TAUS", "tau_index", "cvpr16_boxes_over_taus", "wsol_boxes_over_taus", "wsol_empty_over_taus"]

#: The slider's thresholds: 0.00, 0.01, ..., 1.00 (``i / 100`` is the same float as the literal).
TAUS: np.ndarray = np.arange(101) / 100


def tau_index(tau: float) -> int:
    """Index of ``tau`` in :data:`TAUS` (nearest step)."""
    return int(np.clip(round(float(tau) * 100), 0, 100))


def _window(cam: np.ndarray, window: tuple[int, int, int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    h, w = cam.shape
    x0, y0, x1, y1 = window if window is not None else (0, 0, w - 1, h - 1)
    return cam[y0 : y1 + 1, x0 : x1 + 1], np.array([x0, y0, x0, y0], dtype=np.int64)


def cvpr16_boxes_over_taus(cam: np.ndarray, window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """int64 ``[101, 4]``: the CVPR16 box at each of :data:`TAUS` (inclusive pixels, photo coordinates).

    ``window``: inclusive pixel bounds of the part of ``cam [H, W]`` the network saw (None: all of it).
    Thresholds that keep the same pixel set share a box: the map's distinct relu/max levels decide,
    so consecutive taus with no level between them reuse the previous answer.
    """
    part, offset = _window(np.asarray(cam, dtype=np.float64), window)
    out = np.empty((len(TAUS), 4), dtype=np.int64)
    peak = part.max()
    if not peak > 0:
        out[:] = cvpr16_box(part, 0.0) + offset
        return out
    levels = np.sort(np.unique(np.maximum(part, 0.0) / peak))
    prev_count = -1
    for i, tau in enumerate(TAUS.tolist()):
        # the kept set {v >= tau} is fixed by how many distinct levels lie below tau
        count = int(np.searchsorted(levels, tau, side="left"))
        if count != prev_count:
            box = cvpr16_box(part, tau) + offset
            prev_count = count
        out[i] = box
    return out


def wsol_boxes_over_taus(
    cam: np.ndarray, window: tuple[int, int, int, int] | None = None, multi_contour: bool = False
) -> list[np.ndarray]:
    """wsolevaluation boxes at each of :data:`TAUS`: a list of 101 int64 ``[n, 4]`` arrays (photo coordinates).

    The window's map is min-max normalised first; ``[[0, 0, 0, 0]]`` (shifted by the window's corner)
    marks a threshold that keeps no pixel, as in the reference.
    """
    part, offset = _window(np.asarray(cam, dtype=np.float32), window)
    per_tau = sweep_boxes(normalize_scoremap(part), TAUS, multi_contour)
    return [b + offset for b in per_tau]


def wsol_empty_over_taus(cam: np.ndarray, window: tuple[int, int, int, int] | None = None) -> list[bool]:
    """True at each of :data:`TAUS` where no pixel exceeds the wsolevaluation level (the reference's
    ``[[0, 0, 0, 0]]`` is then a placeholder, not a box)."""
    part, _ = _window(np.asarray(cam, dtype=np.float32), window)
    top = int((normalize_scoremap(part) * 255).astype(np.uint8).max())
    return [top <= int(t * top) for t in TAUS.tolist()]
