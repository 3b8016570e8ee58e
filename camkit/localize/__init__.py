"""Maps -> boxes, under two named conventions that are never mixed up.

- ``"cvpr16"`` (Zhou et al. 2016, the paper's text): ReLU, divide by the max, keep >= tau (0.2),
  box of the largest 8-connected component; inclusive pixel box. See :mod:`.cvpr16`.
- ``"wsol"`` (wsolevaluation, Choe et al. 2020): min-max normalise, uint8, keep > int(tau * max),
  OpenCV contours; the largest-area contour (V1) or every contour (V2); the reference's
  ``(x, y, x + w, y + h)`` box. See :mod:`.wsol`; :mod:`.sweep` gives every tau of a grid at once.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from camkit.errors import ParameterError
from camkit.localize.cvpr16 import cvpr16_box, cvpr16_boxes
from camkit.localize.sweep import SweepResult, sweep_boxes, sweep_boxes_flat
from camkit.localize.wsol import (
    normalize_scoremap,
    scoremap_to_uint8,
    wsol_boxes,
    wsol_boxes_per_threshold,
)

__all__ = [
    "localize",
    "cvpr16_box",
    "cvpr16_boxes",
    "normalize_scoremap",
    "scoremap_to_uint8",
    "wsol_boxes",
    "wsol_boxes_per_threshold",
    "sweep_boxes",
    "sweep_boxes_flat",
    "SweepResult",
]

Convention = Literal["cvpr16", "wsol"]


def localize(
    cams: np.ndarray,
    convention: Convention = "cvpr16",
    tau: float = 0.2,
    multi_contour: bool = False,
) -> np.ndarray | list[np.ndarray]:
    """Boxes from raw class activation maps under a named convention.

    Args:
        cams: ``[H, W]`` or ``[N, H, W]`` raw maps (any scale), at the resolution the boxes should
            be in (e.g. upsampled to the image).
        convention: ``"cvpr16"`` or ``"wsol"`` (see the package docstring).
        tau: threshold as a fraction (cvpr16: of the max after ReLU; wsol: of the min-max
            normalised uint8 map's max). Default 0.2, the CVPR16 value; wsolevaluation sweeps tau.
        multi_contour: wsol only: False = one box (largest contour, V1), True = every contour (V2).

    Returns:
        cvpr16: int64 ``[4]`` for one map, ``[N, 4]`` for a batch (inclusive pixel boxes).
        wsol: int64 ``[n, 4]`` for one map, a list of ``N`` such arrays for a batch (reference
        boxes; ``[[0, 0, 0, 0]]`` when nothing exceeds the threshold).
    """
    cams = np.asarray(cams)
    if cams.ndim not in (2, 3):
        raise ValueError(f"maps must be (H, W) or (N, H, W); got shape {cams.shape}")
    if convention == "cvpr16":
        if multi_contour:
            raise ParameterError("multi_contour", multi_contour, "applies to the 'wsol' convention only")
        return cvpr16_box(cams, tau) if cams.ndim == 2 else cvpr16_boxes(cams, tau)
    if convention == "wsol":
        if cams.ndim == 2:
            return wsol_boxes(normalize_scoremap(cams), tau, multi_contour)
        return [wsol_boxes(normalize_scoremap(c), tau, multi_contour) for c in cams]
    raise ParameterError("convention", convention, "is not a box convention; use 'cvpr16' or 'wsol'")
