"""Localization metrics: IoU, MaxBoxAcc (V1/V2), ILSVRC loc/cls accuracy, PxAP.

Every evaluator follows :class:`Evaluator`, as wsolevaluation's evaluators do: ``accumulate(...)`` per
batch, ``compute()`` at the end, ``reset()`` to start over; integer counts inside (the order of
accumulation does not change the result), percentages out.
"""

from typing import Any, Protocol, runtime_checkable

from camkit.metrics.boxacc import MaxBoxAccEvaluator, maxboxacc_v1, maxboxacc_v2
from camkit.metrics.faithfulness import FaithfulnessEvaluator
from camkit.metrics.iou import box_iou_inclusive
from camkit.metrics.locacc import ClassificationAccuracy, LocalizationAccuracy
from camkit.metrics.pxap import PxAPEvaluator


@runtime_checkable
class Evaluator(Protocol):
    """A streaming metric: ``accumulate`` a batch, ``compute`` the result so far, ``reset`` to empty."""

    def accumulate(self, *args: Any, **kwargs: Any) -> Any: ...

    def compute(self) -> Any: ...

    def reset(self) -> None: ...


__all__ = [
    "Evaluator",
    "box_iou_inclusive",
    "MaxBoxAccEvaluator",
    "maxboxacc_v1",
    "maxboxacc_v2",
    "LocalizationAccuracy",
    "ClassificationAccuracy",
    "PxAPEvaluator",
    "FaithfulnessEvaluator",
]
