"""ILSVRC-style localization and classification accuracy (CVPR16 Table 2 reports errors).

Definitions (delta = ``iou_threshold``, 0.5 by default; boxes from the CVPR16 rule,
:func:`camkit.localize.cvpr16_box`, IoU with inclusive pixels, best over the image's GT boxes):

- top-1 loc: the top-1 predicted class is the GT class AND that class's box has IoU >= delta.
- top-5 loc: some prediction among the top 5 is the GT class AND that class's box has IoU >= delta.
- GT-known loc: the GT class's own box has IoU >= delta (classification ignored).
- top-1 / top-5 classification: the GT class is the first / among the first five predictions.

Results are percentages; every ``<name>`` also comes as ``<name>_error`` = 100 - accuracy.
Counts are integers, so accumulation order does not matter.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LocalizationAccuracy", "ClassificationAccuracy"]


def _topk(gt_class: np.ndarray, topk_classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt = np.asarray(gt_class).reshape(-1)
    pred = np.asarray(topk_classes)
    if pred.ndim == 1:
        pred = pred[:, None]
    if pred.ndim != 2 or len(pred) != len(gt):
        raise ValueError(f"top-k classes must be (B, K) with B = {len(gt)}; got {pred.shape}")
    if pred.shape[1] < 5:
        raise ValueError(f"top-5 metrics need at least 5 predictions per image; got {pred.shape[1]}")
    return gt, pred[:, :5]


def _with_errors(acc: dict[str, float]) -> dict[str, float]:
    out = dict(acc)
    out.update({f"{k}_error": 100.0 - v for k, v in acc.items()})
    return out


class ClassificationAccuracy:
    """Streaming top-1 / top-5 classification accuracy."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every accumulated image."""
        self.top1 = 0
        self.top5 = 0
        self.n_images = 0

    def accumulate(self, gt_class: np.ndarray, topk_classes: np.ndarray) -> None:
        """``gt_class[B]`` int, ``topk_classes[B, K>=5]`` int in descending score order."""
        gt, pred = _topk(gt_class, topk_classes)
        hit = pred == gt[:, None]
        self.top1 += int(hit[:, 0].sum())
        self.top5 += int(hit.any(axis=1).sum())
        self.n_images += len(gt)

    def compute(self) -> dict[str, float]:
        """``top1``, ``top5`` (percent) and ``top1_error``, ``top5_error``."""
        if self.n_images == 0:
            raise ValueError("no images accumulated; call accumulate() first")
        return _with_errors({"top1": 100.0 * self.top1 / self.n_images, "top5": 100.0 * self.top5 / self.n_images})


class LocalizationAccuracy:
    """Streaming top-1 loc, top-5 loc and GT-known loc (see module docstring)."""

    def __init__(self, iou_threshold: float = 0.5) -> None:
        self.iou_threshold = float(iou_threshold)
        self.reset()

    def reset(self) -> None:
        """Forget every accumulated image."""
        self.top1_loc = 0
        self.top5_loc = 0
        self.gt_known_loc = 0
        self.n_images = 0

    def accumulate(
        self,
        gt_class: np.ndarray,
        topk_classes: np.ndarray,
        topk_ious: np.ndarray,
        gt_known_iou: np.ndarray,
    ) -> None:
        """Add a batch.

        Args:
            gt_class: int ``[B]``.
            topk_classes: int ``[B, K>=5]``, predictions in descending score order.
            topk_ious: float ``[B, K]``: IoU of each predicted class's box with the image's GT
                boxes (best over GT boxes).
            gt_known_iou: float ``[B]``: IoU of the GT class's box (best over GT boxes).
        """
        gt, pred = _topk(gt_class, topk_classes)
        ious = np.asarray(topk_ious, dtype=np.float64)
        if ious.ndim == 1:
            ious = ious[:, None]
        if ious.shape[0] != len(gt) or ious.shape[1] < 5:
            raise ValueError(f"top-k IoUs must be (B, K>=5) with B = {len(gt)}; got {ious.shape}")
        known = np.asarray(gt_known_iou, dtype=np.float64).reshape(-1)
        if len(known) != len(gt):
            raise ValueError(f"GT-known IoUs must have length {len(gt)}; got {len(known)}")
        good = (pred == gt[:, None]) & (ious[:, :5] >= self.iou_threshold)
        self.top1_loc += int(good[:, 0].sum())
        self.top5_loc += int(good.any(axis=1).sum())
        self.gt_known_loc += int((known >= self.iou_threshold).sum())
        self.n_images += len(gt)

    def compute(self) -> dict[str, float]:
        """``top1_loc``, ``top5_loc``, ``gt_known_loc`` (percent) and their ``_error`` keys."""
        if self.n_images == 0:
            raise ValueError("no images accumulated; call accumulate() first")
        n = self.n_images
        return _with_errors(
            {
                "top1_loc": 100.0 * self.top1_loc / n,
                "top5_loc": 100.0 * self.top5_loc / n,
                "gt_known_loc": 100.0 * self.gt_known_loc / n,
            }
        )
