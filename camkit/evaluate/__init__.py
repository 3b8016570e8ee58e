"""Localization benchmarks: ``evaluate(dataset, model, ...)`` -> summary (MaxBoxAcc, MaxBoxAccV2, top-k loc on
box datasets; PxAP on mask datasets such as OpenImages30k).

Modules: :mod:`.protocol` (what is measured, one image at a time), :mod:`.results` (typed per-image
records and their ``records.jsonl`` keys), :mod:`.records` (the crash-safe log), :mod:`.rundir` (lock,
fingerprint, resume), :mod:`.loop` (the fixed batch partition -> records), :mod:`.summary` (records ->
summary), :mod:`.outputs` (summary.json, per_image.csv, figures, report), :mod:`.runner` (``evaluate``).

The names below are imported on first use, so importing a submodule that needs no torch (the figures, the
file names) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from camkit._lazy import lazy_getattr

_LAZY = {
    "MapSource": ("camkit.cam.sources", "MapSource"),
    "make_map_source": ("camkit.cam.sources", "make_map_source"),
    "Protocol": ("camkit.evaluate.protocol", "Protocol"),
    "image_record": ("camkit.evaluate.protocol", "image_record"),
    "rescale_gt_boxes": ("camkit.evaluate.protocol", "rescale_gt_boxes"),
    "RecordWriter": ("camkit.evaluate.records", "RecordWriter"),
    "iter_records": ("camkit.evaluate.records", "iter_records"),
    "read_records": ("camkit.evaluate.records", "read_records"),
    "FailedImage": ("camkit.evaluate.results", "FailedImage"),
    "ImageRecord": ("camkit.evaluate.results", "ImageRecord"),
    "record_from_dict": ("camkit.evaluate.results", "record_from_dict"),
    "evaluate": ("camkit.evaluate.runner", "evaluate"),
    "METRIC_KEYS": ("camkit.evaluate.summary", "METRIC_KEYS"),
    "summarize": ("camkit.evaluate.summary", "summarize"),
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:
    # `X as X`: explicit re-exports for type checkers (the names are served lazily by __getattr__)
    from camkit.cam.sources import MapSource as MapSource
    from camkit.cam.sources import make_map_source as make_map_source
    from camkit.evaluate.protocol import Protocol as Protocol
    from camkit.evaluate.protocol import image_record as image_record
    from camkit.evaluate.protocol import rescale_gt_boxes as rescale_gt_boxes
    from camkit.evaluate.records import RecordWriter as RecordWriter
    from camkit.evaluate.records import iter_records as iter_records
    from camkit.evaluate.records import read_records as read_records
    from camkit.evaluate.results import FailedImage as FailedImage
    from camkit.evaluate.results import ImageRecord as ImageRecord
    from camkit.evaluate.results import record_from_dict as record_from_dict
    from camkit.evaluate.runner import evaluate as evaluate
    from camkit.evaluate.summary import METRIC_KEYS as METRIC_KEYS
    from camkit.evaluate.summary import summarize as summarize

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
