"""MaxBoxAcc and MaxBoxAccV2 (Choe et al., CVPR 2020), streaming: accumulate() then compute().

Per image, for every CAM threshold tau the map's candidate boxes (:func:`camkit.localize.sweep_boxes`,
equal to wsolevaluation's per-threshold ``findContours`` loop) are matched to the ground-truth
boxes; the image's IoU at tau is the best IoU over candidates and GT boxes (inclusive pixels,
:func:`camkit.metrics.iou.box_iou_inclusive`). The image is a hit at (tau, delta) when that IoU
is >= delta. ``BoxAcc(tau, delta)`` = hits / images (percent); ``MaxBoxAcc(delta)`` = max over tau.

Two definitions, two constructors:

- :func:`maxboxacc_v1` - MaxBoxAcc (the "V1" of the paper and of wsolevaluation's first
  release): the single largest-area contour, delta = 0.5 only.
- :func:`maxboxacc_v2` - MaxBoxAccV2 (the number papers report now): every contour is a
  candidate, delta in {0.3, 0.5, 0.7}, and the score is the mean of the three MaxBoxAccs.

Maps are min-max normalised ``[H, W]`` floats in [0, 1] at the resolution of the GT boxes
(wsolevaluation: the 224x224 input, GT boxes resized with its ``resize_bbox``). Counts are kept
as integers, so the order in which images are accumulated cannot change the result.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from camkit.localize.sweep import SweepResult, sweep_boxes_flat
from camkit.metrics.iou import box_iou_inclusive

__all__ = ["MaxBoxAccEvaluator", "best_iou_per_tau", "maxboxacc_v1", "maxboxacc_v2"]


def best_iou_per_tau(sweep: SweepResult, gt_boxes: np.ndarray) -> np.ndarray:
    """Per tau, the best IoU of the sweep's boxes at that tau with any GT box: float64 ``[T]``."""
    per_box = box_iou_inclusive(sweep.boxes, gt_boxes).max(axis=1)
    return np.maximum.reduceat(per_box, sweep.level_start[:-1])[sweep.tau_level]


class MaxBoxAccEvaluator:
    """Streaming MaxBoxAcc over a CAM-threshold grid.

    Args:
        taus: CAM thresholds, e.g. ``np.arange(0, 1, 0.001)`` (wsolevaluation's training code) or
            ``np.arange(0, 1, 0.01)`` (its standalone evaluator).
        iou_thresholds: IoU thresholds delta (fractions).
        multi_contour: False = largest contour only (V1), True = every contour (V2).
        backend: the sweep's implementation, ``"auto"``, ``"native"`` or ``"numpy"``
            (:func:`camkit.localize.sweep.resolve_backend`); the numbers are the same.
    """

    def __init__(
        self,
        taus: Iterable[float] | np.ndarray,
        iou_thresholds: Sequence[float] = (0.3, 0.5, 0.7),
        multi_contour: bool = True,
        backend: str = "auto",
    ) -> None:
        self.taus = np.asarray(taus).reshape(-1)
        if self.taus.size == 0:
            raise ValueError("taus must not be empty")
        self.iou_thresholds = tuple(float(d) for d in iou_thresholds)
        if not self.iou_thresholds:
            raise ValueError("iou_thresholds must not be empty")
        self.multi_contour = bool(multi_contour)
        self.backend = backend
        self.reset()

    def reset(self) -> None:
        """Forget every accumulated image."""
        self.hits = np.zeros((len(self.iou_thresholds), len(self.taus)), dtype=np.int64)
        self.n_images = 0

    def image_ious(self, cam_normalized: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
        """Best IoU per tau for one image: float64 ``[T]``.

        ``cam_normalized``: float ``[H, W]`` in [0, 1]; ``gt_boxes``: ``[n, 4]`` inclusive
        ``x0, y0, x1, y1`` in the map's pixels.
        """
        return best_iou_per_tau(sweep_boxes_flat(cam_normalized, self.taus, self.multi_contour, backend=self.backend), gt_boxes)

    def accumulate_ious(self, ious: np.ndarray) -> None:
        """Add images given their per-tau best IoUs, ``[B, T]`` (e.g. replayed from disk)."""
        ious = np.asarray(ious, dtype=np.float64)
        if ious.ndim == 1:
            ious = ious[None]
        if ious.ndim != 2 or ious.shape[1] != len(self.taus):
            raise ValueError(f"ious must have shape (B, {len(self.taus)}); got {ious.shape}")
        for i, delta in enumerate(self.iou_thresholds):
            self.hits[i] += (ious >= delta).sum(axis=0)
        self.n_images += ious.shape[0]

    def accumulate(self, cams: np.ndarray, gt_boxes: Sequence[np.ndarray]) -> np.ndarray:
        """Add a batch: ``cams[B, H, W]`` normalised maps, ``gt_boxes`` one ``[n_i, 4]`` per map.

        Returns the per-image IoUs ``[B, T]`` (so a caller can persist them).
        """
        cams = np.asarray(cams)
        if cams.ndim == 2:
            cams = cams[None]
        if len(cams) != len(gt_boxes):
            raise ValueError(f"{len(cams)} maps but {len(gt_boxes)} ground-truth box sets")
        ious = np.stack([self.image_ious(c, g) for c, g in zip(cams, gt_boxes, strict=True)]) if len(cams) else (
            np.zeros((0, len(self.taus)))
        )
        self.accumulate_ious(ious)
        return ious

    def compute(self) -> dict:
        """Results so far (percentages).

        Keys: ``boxacc`` {delta: float64 [T] curve}, ``maxboxacc`` {delta: float},
        ``best_tau`` {delta: float, the first tau reaching the max}, ``mean_maxboxacc`` (mean over
        the deltas: MaxBoxAccV2 for the V2 evaluator), ``taus``, ``iou_thresholds``,
        ``multi_contour``, ``n_images``.
        """
        if self.n_images == 0:
            raise ValueError("no images accumulated; call accumulate() first")
        curves = self.hits * 100.0 / self.n_images
        best = curves.argmax(axis=1)
        maxacc = {d: float(curves[i, best[i]]) for i, d in enumerate(self.iou_thresholds)}
        return {
            "boxacc": {d: curves[i] for i, d in enumerate(self.iou_thresholds)},
            "maxboxacc": maxacc,
            "best_tau": {d: float(self.taus[best[i]]) for i, d in enumerate(self.iou_thresholds)},
            "mean_maxboxacc": float(np.mean(list(maxacc.values()))),
            "taus": self.taus,
            "iou_thresholds": self.iou_thresholds,
            "multi_contour": self.multi_contour,
            "n_images": self.n_images,
        }


def maxboxacc_v1(taus: Iterable[float] | np.ndarray) -> MaxBoxAccEvaluator:
    """MaxBoxAcc (V1): largest-area contour, IoU >= 0.5; read ``compute()["maxboxacc"][0.5]``."""
    return MaxBoxAccEvaluator(taus, iou_thresholds=(0.5,), multi_contour=False)


def maxboxacc_v2(taus: Iterable[float] | np.ndarray) -> MaxBoxAccEvaluator:
    """MaxBoxAccV2: every contour, IoU in {0.3, 0.5, 0.7}; read ``compute()["mean_maxboxacc"]``."""
    return MaxBoxAccEvaluator(taus, iou_thresholds=(0.3, 0.5, 0.7), multi_contour=True)
