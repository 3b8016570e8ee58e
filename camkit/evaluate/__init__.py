"""Localization benchmarks: ``evaluate(dataset, model, ...)`` -> summary (MaxBoxAcc, MaxBoxAccV2, top-k loc on
box datasets; PxAP on mask datasets such as OpenImages30k).

Modules: :mod:`.protocol` (what is measured, one image at a time), :mod:`.results` (typed per-image
records and their ``records.jsonl`` keys), :mod:`.records` (the crash-safe log), :mod:`.rundir` (lock,
fingerprint, resume), :mod:`.loop` (the fixed batch partition -> records), :mod:`.summary` (records ->
summary), :mod:`.outputs` (summary.json, per_image.csv, figures, report), :mod:`.runner` (``evaluate``).
torch is imported only when an evaluation runs.
"""

from camkit.cam.sources import MapSource, make_map_source
from camkit.evaluate.protocol import Protocol, image_record, rescale_gt_boxes
from camkit.evaluate.records import RecordWriter, iter_records, read_records
from camkit.evaluate.results import FailedImage, ImageRecord, record_from_dict
from camkit.evaluate.runner import evaluate
from camkit.evaluate.summary import METRIC_KEYS, summarize

__all__ = [
    "METRIC_KEYS", "FailedImage", "ImageRecord", "MapSource", "Protocol", "RecordWriter", "evaluate", "image_record",
    "iter_records", "make_map_source", "read_records", "record_from_dict", "rescale_gt_boxes", "summarize",
]
