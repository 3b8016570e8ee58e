"""wsolevaluation box extraction (Choe et al., CVPR 2020), the per-threshold reference.

This module reproduces ``compute_bboxes_from_scoremaps`` of clovaai/wsolevaluation step by step,
one ``cv2.findContours`` call per threshold. :mod:`camkit.localize.sweep` computes the same boxes
for a whole threshold grid in one pass; this loop is what it is checked against.

Conventions (all from the reference):

- The input map is min-max normalised to [0, 1] (:func:`scoremap_to_uint8` does it; a constant
  or NaN map becomes all zeros) and scaled to uint8 by truncation: ``(cam * 255).astype(uint8)``,
  computed in the map's own float dtype.
- For a threshold ``tau`` the binary map is ``u > int(tau * u.max())`` (``cv2.threshold`` with
  ``THRESH_BINARY`` keeps pixels strictly greater than the integer threshold).
- ``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)``: one outer contour per 8-connected
  foreground component and one hole contour per bounded 4-connected background region.
- V1 (``multi_contour=False``): the contour of largest ``cv2.contourArea`` (polygon area through
  pixel centres, so a 1-pixel or 1-pixel-wide component has area 0); ties go to the first contour
  in OpenCV's order (Python's ``max``). V2 (``multi_contour=True``): every contour.
- Box = ``boundingRect`` -> ``(x, y, x + w, y + h)`` with x1/y1 clipped to ``W - 1`` / ``H - 1``;
  note this is one pixel wider than the inclusive pixel box except at the right/bottom border
  (the reference's quirk, kept). No contour -> ``[[0, 0, 0, 0]]``.
- Boxes are int64 ``[n, 4]`` arrays of ``x0, y0, x1, y1`` in map pixels. The reference's row
  order is OpenCV's contour order, which carries no meaning; camkit returns rows sorted
  lexicographically (duplicates kept, so ``n`` equals the reference's number of contours).
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from camkit.normalize import normalize_maps

__all__ = ["scoremap_to_uint8", "normalize_scoremap", "wsol_boxes", "wsol_boxes_per_threshold"]

EMPTY_BOX = np.zeros((1, 4), dtype=np.int64)


def normalize_scoremap(cam: np.ndarray) -> np.ndarray:
    """Min-max normalise a ``[H, W]`` map to [0, 1] as wsolevaluation's ``normalize_scoremap``.

    A map containing NaN, or a constant map, becomes all zeros. Float inputs keep their dtype,
    integer inputs become float64. The input is not modified
    (:func:`camkit.normalize.normalize_maps` ``"minmax"`` on one map).
    """
    cam = np.asarray(cam)
    if cam.ndim != 2:
        raise ValueError(f"a score map must be 2-D (H, W); got shape {cam.shape}")
    return normalize_maps(cam, "minmax")


def _as_unit_map(cam_normalized: np.ndarray) -> np.ndarray:
    cam = np.asarray(cam_normalized)
    if cam.ndim != 2:
        raise ValueError(f"a score map must be 2-D (H, W); got shape {cam.shape}")
    if not np.issubdtype(cam.dtype, np.floating):
        raise ValueError(f"a normalised score map must be float in [0, 1]; got dtype {cam.dtype}")
    if np.isnan(cam).any():
        raise ValueError("the score map contains NaN; normalise it with scoremap_to_uint8 first")
    if cam.size and (cam.min() < 0 or cam.max() > 1):
        raise ValueError(
            f"the score map must be in [0, 1] (min {cam.min():.4g}, max {cam.max():.4g}); "
            "normalise it first (normalize_scoremap or camkit.normalize.normalize_maps 'minmax')"
        )
    return cam


def unit_map_to_uint8(cam_normalized: np.ndarray) -> np.ndarray:
    """``(cam * 255).astype(uint8)`` in the map's own dtype, exactly as the reference (truncation)."""
    cam = _as_unit_map(cam_normalized)
    return (cam * 255).astype(np.uint8)


def scoremap_to_uint8(cam: np.ndarray) -> np.ndarray:
    """Raw ``[H, W]`` map -> uint8 ``[H, W]``: :func:`normalize_scoremap`, then ``*255`` truncated."""
    return unit_map_to_uint8(normalize_scoremap(cam))


def threshold_levels(taus: Iterable[float] | np.ndarray, top: int | np.integer) -> np.ndarray:
    """Integer thresholds ``int(tau * top)`` for each tau, int64 ``[T]``.

    Same arithmetic as the reference's ``int(threshold * np.max(scoremap_image))``: the product
    keeps the taus' float dtype (float32 taus stay float32, as numpy scalars would) and ``int``
    truncates toward zero.
    """
    t = np.asarray(taus)
    if t.ndim != 1:
        t = t.reshape(-1)
    if not np.issubdtype(t.dtype, np.floating):
        t = t.astype(np.float64)
    if not np.isfinite(t).all():
        raise ValueError("thresholds must be finite numbers")
    return np.trunc(t * np.uint8(top)).astype(np.int64)


def _binary(u: np.ndarray, level: int) -> np.ndarray:
    # cv2.threshold on uint8 keeps src > thresh; thresholds outside [0, 255) saturate.
    _, binary = cv2.threshold(u, int(level), 255, cv2.THRESH_BINARY)
    return binary


def level_boxes(u: np.ndarray, level: int) -> tuple[np.ndarray, int]:
    """The reference's boxes of one integer level of a uint8 map, in OpenCV's contour order.

    Returns (int64 ``[n, 4]`` boxes ``x, y, min(x + w, W - 1), min(y + h, H - 1)`` of every
    ``RETR_TREE`` contour, index of V1's box: the largest ``cv2.contourArea``, the first on ties as
    Python's ``max``). No contour: ``([[0, 0, 0, 0]], 0)``.
    """
    height, width = u.shape
    contours = cv2.findContours(_binary(u, level), cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if len(contours) == 0:
        return EMPTY_BOX.copy(), 0
    areas = [cv2.contourArea(c) for c in contours]
    boxes = np.empty((len(contours), 4), dtype=np.int64)
    for i, contour in enumerate(contours):
        x, y, w, h = cv2.boundingRect(contour)
        boxes[i] = (x, y, min(x + w, width - 1), min(y + h, height - 1))
    return boxes, areas.index(max(areas))


def _contour_boxes(u: np.ndarray, level: int, multi_contour: bool) -> np.ndarray:
    boxes, largest = level_boxes(u, level)
    if not multi_contour:
        return boxes[largest : largest + 1]
    if len(boxes) > 1:
        boxes = boxes[np.lexsort(boxes.T[::-1])]
    return boxes


def wsol_boxes(cam_normalized: np.ndarray, tau: float, multi_contour: bool = False) -> np.ndarray:
    """Boxes of one threshold, as the reference: int64 ``[n, 4]`` ``x0, y0, x1, y1`` (see module doc).

    ``cam_normalized`` is a float ``[H, W]`` map in [0, 1] at the resolution the boxes are wanted
    in (wsolevaluation: the 224x224 input). V1 (``multi_contour=False``) gives one box.
    """
    u = unit_map_to_uint8(cam_normalized)
    level = int(threshold_levels([tau], u.max())[0])
    return _contour_boxes(u, level, multi_contour)


def wsol_boxes_per_threshold(
    cam_normalized: np.ndarray, taus: Iterable[float] | np.ndarray, multi_contour: bool = False
) -> list[np.ndarray]:
    """The reference loop: :func:`wsol_boxes` for each tau, one ``findContours`` call each.

    Returns a list with one int64 ``[n_t, 4]`` array per tau (rows sorted, see module doc).
    """
    u = unit_map_to_uint8(cam_normalized)
    levels = threshold_levels(taus, u.max())
    return [_contour_boxes(u, int(level), multi_contour) for level in levels]
