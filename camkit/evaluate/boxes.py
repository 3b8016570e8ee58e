"""Box and IoU helpers the evaluator needs, on top of :mod:`camkit.localize`.

Boxes are int ``x0, y0, x1, y1``, inclusive pixels, on the map (the network input); IoU is
:func:`camkit.metrics.iou.box_iou_inclusive` (wsolevaluation's ``calculate_multiple_iou``).
"""

from __future__ import annotations

import numpy as np

from camkit.localize.cvpr16 import cvpr16_box
from camkit.localize.sweep import native_map_ious, resolve_backend, sweep_boxes_pair
from camkit.localize.wsol import level_boxes, threshold_levels, unit_map_to_uint8
from camkit.metrics.boxacc import best_iou_per_tau
from camkit.metrics.iou import box_iou_inclusive
from camkit.normalize import normalize_maps

__all__ = ["box_iou_inclusive", "cvpr16_box", "wsol_best_ious", "wsol_map_ious"]


def wsol_best_ious(
    cam_normalized: np.ndarray, taus: np.ndarray, gt_boxes: np.ndarray, backend: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Per tau, the best IoU of wsolevaluation's V1 and V2 boxes with any GT box: float64 ``([T], [T])``.

    ``cam_normalized``: float ``[H, W]`` in [0, 1]; ``gt_boxes``: int ``[n, 4]`` on the same grid.
    V1 scores the contour of largest ``cv2.contourArea`` (first in OpenCV's order on ties), V2 the best
    of every contour; no contour gives the box ``(0, 0, 0, 0)``. ``backend`` (see
    :func:`camkit.localize.sweep.resolve_backend`): ``"native"`` takes the boxes of all levels from the
    compiled sweep kernel, V1 and V2 from one call (one pass over the map for every level; ``bench/bench_sweep.py`` times it
    against the per-level calls); ``"numpy"`` runs the reference's procedure
    (:func:`camkit.localize.wsol.level_boxes`), one ``cv2.findContours`` per *distinct* integer level
    ``int(tau * u.max())`` shared by V1 and V2, which beats the pure-numpy sweep. Same IoUs either way.
    """
    if resolve_backend(backend, np.shape(cam_normalized)) == "native":
        pair = sweep_boxes_pair(cam_normalized, taus, backend="native")
        return best_iou_per_tau(pair[0], gt_boxes), best_iou_per_tau(pair[1], gt_boxes)
    u = unit_map_to_uint8(cam_normalized)
    levels, tau_level = np.unique(threshold_levels(taus, u.max()), return_inverse=True)
    per_level = [level_boxes(u, level) for level in levels.tolist()]
    counts = np.array([len(b) for b, _ in per_level], dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])  # first box of each level
    largest = start + np.array([i for _, i in per_level], dtype=np.int64)  # V1's box of each level
    best = box_iou_inclusive(np.concatenate([b for b, _ in per_level]), gt_boxes).max(axis=1)
    tau_level = tau_level.reshape(-1)
    return best[largest][tau_level], np.maximum.reduceat(best, start)[tau_level]


def wsol_map_ious(
    cam: np.ndarray, taus: np.ndarray, gt_boxes: np.ndarray, backend: str = "auto", want_unit: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`wsol_best_ious` of the min-max normalised ``cam``: ``(v1 [T], v2 [T], unit)``.

    ``cam``: the raw GT-class map at input size, float ``[H, W]``; ``unit``: its min-max normalised map
    (float, ``[H, W]``) when ``want_unit``, else None. With the native backend a float32 map, float64 taus
    and integer boxes take one kernel call (:func:`camkit.localize.sweep.native_map_ious`: the same
    arithmetic with the GIL released, so the evaluator's helper threads run side by side); anything else
    takes :func:`camkit.normalize.normalize_maps` and :func:`wsol_best_ious`. Same numbers either way.
    """
    if resolve_backend(backend, np.shape(cam)) == "native":
        fused = native_map_ious(cam, taus, gt_boxes, want_unit)
        if fused is not None:
            return fused
    unit = normalize_maps(np.asarray(cam), "minmax")
    v1, v2 = wsol_best_ious(unit, taus, gt_boxes, backend)
    return v1, v2, unit if want_unit else None
