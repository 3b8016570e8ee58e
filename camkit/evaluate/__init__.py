"""Localization benchmarks: ``evaluate(dataset, model, ...)`` -> summary (MaxBoxAcc, MaxBoxAccV2, top-k loc on
box datasets; PxAP on mask datasets such as OpenImages30k).

See :mod:`camkit.evaluate.protocol` for the exact protocol (wsolevaluation's, plus the CAM paper's
top-1/top-5 localization) and :mod:`camkit.evaluate.records` for the crash-safe per-image log that
makes ``resume=True`` exact. torch is imported only when an evaluation runs.
"""

from camkit.evaluate.protocol import Protocol, image_record, rescale_gt_boxes
from camkit.evaluate.records import RecordWriter, iter_records, read_records
from camkit.evaluate.runner import evaluate, make_map_source
from camkit.evaluate.summary import METRIC_KEYS, summarize

__all__ = [
    "METRIC_KEYS", "Protocol", "RecordWriter", "evaluate", "image_record", "iter_records", "make_map_source",
    "read_records", "rescale_gt_boxes", "summarize",
]
