"""Faithfulness in the evaluator: per-image values while the loop runs, their means in the summary.

Deletion/insertion AUC (RISE) and the confidence change behind average drop / increase in
confidence (Grad-CAM++), all of the GT-class map; see :mod:`camkit.metrics.faithfulness`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from camkit.evaluate.results import FaithfulnessResult, ImageRecord, Record

if TYPE_CHECKING:
    import torch


def faithfulness_results(model, x: torch.Tensor, maps_gt: np.ndarray, gt: torch.Tensor, steps: int) -> list[FaithfulnessResult]:
    """One :class:`FaithfulnessResult` per image of the batch ``x [B, 3, S, S]`` with maps ``[B, h, w]``."""
    import torch

    from camkit.metrics.faithfulness import auc, confidence_change, deletion_insertion_curves

    m = torch.from_numpy(np.ascontiguousarray(maps_gt))
    d = auc(deletion_insertion_curves(model, x, m, gt, "deletion", steps=steps))
    ins = auc(deletion_insertion_curves(model, x, m, gt, "insertion", steps=steps))
    y, o = confidence_change(model, x, m, gt)
    return [
        FaithfulnessResult(round(float(d[b]), 8), round(float(ins[b]), 8), round(float(y[b]), 8), round(float(o[b]), 8))
        for b in range(len(y))
    ]


@dataclass(frozen=True)
class FaithfulnessSummary:
    """Means over the images with faithfulness values (``n``); drop and increase in percent."""

    n: int
    deletion_auc: float
    insertion_auc: float
    average_drop: float
    increase_in_confidence: float

    def to_dict(self) -> dict:
        return asdict(self)


def summarize_faithfulness(records: Iterable[Record]) -> FaithfulnessSummary | None:
    """The means over the records that carry faithfulness values; None when none does."""
    rows = [r.faithfulness for r in records if isinstance(r, ImageRecord) and r.faithfulness is not None]
    if not rows:
        return None
    y = np.array([r.score for r in rows])
    o = np.array([r.masked_score for r in rows])
    return FaithfulnessSummary(
        n=len(rows),
        deletion_auc=float(np.mean([r.deletion_auc for r in rows])),
        insertion_auc=float(np.mean([r.insertion_auc for r in rows])),
        average_drop=float(100.0 * np.mean(np.maximum(0.0, y - o) / y)),
        increase_in_confidence=float(100.0 * np.mean(o > y)),
    )
