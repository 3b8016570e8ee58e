"""PxAP: pixel average precision of score maps against masks (wsolevaluation's MaskEvaluator).

As the reference: the thresholds ``taus`` (``[0, bw, 2bw, ..., 1 - bw]``) plus ``1, 2, 3`` are
histogram bin edges, so the bins are ``[0, bw), ..., [1 - bw, 1), [1, 2), [2, 3]``; per bin,
counts of scores at foreground (mask 1) and background (mask 0) pixels; pixels marked 255
("ignore": inside an ignore box but not foreground) are left out. Reading the bins from the top,
``tp`` / ``fp`` are the cumulative counts at "score >= edge"; ``precision = tp / (tp + fp)``,
``recall = tp / (tp + fn)``, and ``PxAP = 100 * sum(precision[i] * (recall[i] - recall[i-1]))``
over the edges where some pixel is predicted positive.

Relation to ``sklearn.metrics.average_precision_score``: sklearn uses every distinct score as a
threshold, this uses the bin edges, i.e. scores rounded down to the tau grid. They agree exactly
when every score lies on the grid (and within the grid's resolution otherwise).

Counts are integers (int64), so accumulation order does not matter.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

__all__ = ["PxAPEvaluator"]


class PxAPEvaluator:
    """Streaming PxAP.

    Args:
        taus: threshold grid in [0, 1), ascending, e.g. ``np.arange(0, 1, 0.01)``.
    """

    def __init__(self, taus: Iterable[float] | np.ndarray) -> None:
        self.taus = np.asarray(taus, dtype=np.float64).reshape(-1)
        if self.taus.size == 0 or (np.diff(self.taus) <= 0).any():
            raise ValueError("taus must be a non-empty ascending grid, e.g. np.arange(0, 1, 0.01)")
        self.edges = np.append(self.taus, [1.0, 2.0, 3.0])
        self.fg_hist = np.zeros(len(self.edges) - 1, dtype=np.int64)
        self.bg_hist = np.zeros(len(self.edges) - 1, dtype=np.int64)

    def accumulate(self, scoremaps: np.ndarray, masks: np.ndarray) -> None:
        """Add ``scoremaps[B, H, W]`` (float in [0, 1]) with ``masks[B, H, W]`` (uint8: 1 foreground,
        0 background, 255 ignore); a single ``[H, W]`` pair is accepted too."""
        s = np.asarray(scoremaps, dtype=np.float64)
        m = np.asarray(masks)
        if s.shape != m.shape:
            raise ValueError(f"score maps {s.shape} and masks {m.shape} must have the same shape")
        if np.isnan(s).any() or (s < 0).any() or (s > 1).any():
            raise ValueError("score maps must be in [0, 1] without NaN; normalise them first")
        if not np.isin(m, (0, 1, 255)).all():
            raise ValueError("masks must hold 0 (background), 1 (foreground) or 255 (ignore)")
        self.fg_hist += np.histogram(s[m == 1], bins=self.edges)[0]
        self.bg_hist += np.histogram(s[m == 0], bins=self.edges)[0]

    def compute(self) -> dict:
        """``pxap`` (percent), and the ``precision`` / ``recall`` / ``thresholds`` curves (from the top)."""
        tp = self.fg_hist[::-1].cumsum()
        fp = self.bg_hist[::-1].cumsum()
        n_pos = int(self.fg_hist.sum())
        if n_pos == 0:
            raise ValueError("no foreground pixel accumulated: PxAP is undefined")
        if (tp + fp == 0).all():
            raise ValueError("no pixel accumulated: PxAP is undefined")
        predicted = tp + fp > 0
        precision = np.divide(tp, tp + fp, out=np.zeros(len(tp)), where=predicted)
        recall = tp / n_pos
        pxap = 100.0 * float((precision[1:] * np.diff(recall))[predicted[1:]].sum())
        return {"pxap": pxap, "precision": precision, "recall": recall, "thresholds": self.edges[-2::-1]}
