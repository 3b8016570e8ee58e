"""Localization metrics: IoU, MaxBoxAcc (V1/V2), ILSVRC loc/cls accuracy, PxAP.

Every evaluator streams: ``accumulate(...)`` per batch, ``compute()`` at the end, integer counts
inside (the order of accumulation does not change the result), percentages out.
"""

from camkit.metrics.faithfulness import FaithfulnessEvaluator
from camkit.metrics.boxacc import MaxBoxAccEvaluator, maxboxacc_v1, maxboxacc_v2
from camkit.metrics.iou import box_iou_inclusive
from camkit.metrics.locacc import ClassificationAccuracy, LocalizationAccuracy
from camkit.metrics.pxap import PxAPEvaluator

__all__ = [
    "box_iou_inclusive",
    "MaxBoxAccEvaluator",
    "maxboxacc_v1",
    "maxboxacc_v2",
    "LocalizationAccuracy",
    "ClassificationAccuracy",
    "PxAPEvaluator",
    "FaithfulnessEvaluator",
]
