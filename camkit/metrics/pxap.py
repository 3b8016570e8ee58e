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

Counts are integers (int64), so accumulation order does not matter. :func:`pxap_bin_counts` gives one
map's counts, so a caller can store them per image and sum them later with
:meth:`PxAPEvaluator.accumulate_counts` (exactly the same result as accumulating the maps).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["PxAPEvaluator", "pxap_bin_counts", "pxap_edges"]


def pxap_edges(taus: Iterable[float] | np.ndarray) -> np.ndarray:
    """The bin edges for the threshold grid ``taus``: float64 ``[T + 3]`` = ``taus`` then ``1, 2, 3``.

    ``taus`` must be a non-empty ascending grid in [0, 1), e.g. ``np.arange(0, 1, 0.01)``.
    """
    t = np.asarray(taus, dtype=np.float64).reshape(-1)
    if t.size == 0 or (np.diff(t) <= 0).any():
        raise ValueError("taus must be a non-empty ascending grid, e.g. np.arange(0, 1, 0.01)")
    return np.append(t, [1.0, 2.0, 3.0])


def pxap_bin_counts(scoremaps: np.ndarray, masks: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Histogram counts of the scores at foreground and at background pixels: int64 ``([T + 2], [T + 2])``.

    ``scoremaps[..., H, W]`` float in [0, 1] (no NaN); ``masks`` the same shape, uint8: 1 foreground,
    0 background, 255 ignore (left out); ``edges`` from :func:`pxap_edges`. Bin ``i`` is
    ``[edges[i], edges[i + 1])`` (``np.histogram``), so a score of exactly 1 falls in ``[1, 2)``.
    """
    s = np.asarray(scoremaps, dtype=np.float64)
    m = np.asarray(masks)
    if s.shape != m.shape:
        raise ValueError(f"score maps {s.shape} and masks {m.shape} must have the same shape")
    if np.isnan(s).any() or (s < 0).any() or (s > 1).any():
        raise ValueError("score maps must be in [0, 1] without NaN; normalise them first")
    if not np.isin(m, (0, 1, 255)).all():
        raise ValueError("masks must hold 0 (background), 1 (foreground) or 255 (ignore)")
    fg = np.histogram(s[m == 1], bins=edges)[0].astype(np.int64)
    bg = np.histogram(s[m == 0], bins=edges)[0].astype(np.int64)
    return fg, bg


class PxAPEvaluator:
    """Streaming PxAP.

    Args:
        taus: threshold grid in [0, 1), ascending, e.g. ``np.arange(0, 1, 0.01)``.
    """

    def __init__(self, taus: Iterable[float] | np.ndarray) -> None:
        self.edges = pxap_edges(taus)
        self.taus = self.edges[:-3]
        self.reset()

    def reset(self) -> None:
        """Forget every accumulated map."""
        self.fg_hist = np.zeros(len(self.edges) - 1, dtype=np.int64)
        self.bg_hist = np.zeros(len(self.edges) - 1, dtype=np.int64)

    def accumulate(self, scoremaps: np.ndarray, masks: np.ndarray) -> None:
        """Add ``scoremaps[B, H, W]`` (float in [0, 1]) with ``masks[B, H, W]`` (uint8: 1 foreground,
        0 background, 255 ignore); a single ``[H, W]`` pair is accepted too."""
        fg, bg = pxap_bin_counts(scoremaps, masks, self.edges)
        self.fg_hist += fg
        self.bg_hist += bg

    def accumulate_counts(self, fg_counts: np.ndarray, bg_counts: np.ndarray) -> None:
        """Add bin counts from :func:`pxap_bin_counts` (same ``taus``): int ``[T + 2]`` each."""
        fg = np.asarray(fg_counts)
        bg = np.asarray(bg_counts)
        if fg.shape != self.fg_hist.shape or bg.shape != self.bg_hist.shape:
            raise ValueError(f"counts must have {len(self.fg_hist)} bins (this grid); got {fg.shape} and {bg.shape}")
        if (fg < 0).any() or (bg < 0).any() or fg.dtype.kind not in "iu" or bg.dtype.kind not in "iu":
            raise ValueError("counts must be non-negative integers")
        self.fg_hist += fg.astype(np.int64)
        self.bg_hist += bg.astype(np.int64)

    def compute(self) -> dict:
        """``pxap`` (percent), the ``precision`` / ``recall`` / ``thresholds`` curves (from the top), and
        ``predicted`` (bool, per threshold: some pixel scores at or above it)."""
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
        return {"pxap": pxap, "precision": precision, "recall": recall, "thresholds": self.edges[-2::-1],
                "predicted": predicted}
