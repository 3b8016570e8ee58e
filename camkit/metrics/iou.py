"""IoU of boxes with inclusive pixel coordinates (wsolevaluation's convention).

A box ``x0, y0, x1, y1`` covers the pixels ``x0..x1`` and ``y0..y1`` inclusive, so its area is
``(x1 - x0 + 1) * (y1 - y0 + 1)`` and ``(0, 0, 0, 0)`` is a one-pixel box. This is the convention
of ``calculate_multiple_iou`` in clovaai/wsolevaluation and of the ILSVRC/CUB annotations.
"""

from __future__ import annotations

import numpy as np

__all__ = ["box_iou_inclusive"]


def _as_boxes(boxes: np.ndarray, name: str) -> np.ndarray:
    b = np.asarray(boxes)
    if b.ndim == 1 and b.shape[0] == 4:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{name} must have shape (n, 4) as x0, y0, x1, y1; got {b.shape}")
    if ((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])).any():
        raise ValueError(f"{name} must satisfy x1 >= x0 and y1 >= y0 (inclusive x0, y0, x1, y1 boxes)")
    return b


def box_iou_inclusive(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU, float64 ``[N, M]``, of ``a[N, 4]`` and ``b[M, 4]`` inclusive-pixel boxes.

    Example (the reference's golden case, IoU 8/27):
        >>> box_iou_inclusive(np.array([[1, 2, 5, 6]]), np.array([[3, 1, 4, 5]]))[0, 0] * 27
        8.0
    """
    a = _as_boxes(a, "boxes a").astype(np.float64)
    b = _as_boxes(b, "boxes b").astype(np.float64)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)
