"""``per_image.csv``: one row per image, streamed from the records.

Boxes are ``x0 y0 x1 y1`` on the squashed input (inclusive pixels), several joined by ``;``.
``gt_known_*`` is the CVPR16 box of the GT class's map, ``top1_*`` that of the top-1 class's map;
``v1_best_iou`` / ``v2_best_iou`` are the image's best wsolevaluation IoU over all taus (and the
first tau reaching it) — per image, unlike MaxBoxAcc, which fixes one tau for the whole split.
``pxap`` (mask datasets) is the image's own PxAP (percent) from its fg/bg bin counts: how well the
GT-class map ranks this image's object pixels above its background pixels, useful to find the images
that pull the split down. The split's PxAP pools every image's pixels, so it is not the mean of this
column (large objects weigh more). Columns that do not apply (box columns on a mask-only dataset,
``pxap`` without masks or when the mask has no foreground pixel at the input size) are empty.

Text cells (image ids, class names, errors) that a spreadsheet would run as a formula (starting with
``=``, ``+``, ``-``, ``@``, tab or carriage return) are prefixed with a single quote, as the OWASP
CSV-injection guidance recommends; numbers are written as they are.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from camkit.evaluate.protocol import Protocol, unpack_counts
from camkit.evaluate.results import FailedImage, ImageRecord, Record, as_record
from camkit.metrics.pxap import PxAPEvaluator

COLUMNS = (
    "index", "image_id", "width", "height", "gt_class", "gt_name", "top1_class", "top1_name", "top1_score",
    "top5_classes", "top5_scores", "gt_boxes", "gt_known_box", "gt_known_iou", "top1_box", "top1_iou",
    "top1_loc", "top5_loc", "v1_best_iou", "v1_best_tau", "v2_best_iou", "v2_best_tau", "pxap", "error",
)


def _boxes(boxes) -> str:
    return ";".join(" ".join(str(int(v)) for v in b) for b in np.asarray(boxes).reshape(-1, 4))


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_text(value: str) -> str:
    """``value`` with a leading ``'`` when a spreadsheet would read it as a formula (OWASP)."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _name(names: Sequence[str] | None, c: int) -> str:
    return safe_text(names[c]) if names is not None and 0 <= c < len(names) else ""


def image_pxap(record: Record | dict, protocol: Protocol) -> float | None:
    """One record's own PxAP (percent) from its bin counts; None without counts or foreground pixels."""
    record = as_record(record)
    if not isinstance(record, ImageRecord) or record.pixels is None:
        return None
    ev = PxAPEvaluator(protocol.taus)
    n_bins = len(ev.fg_hist)
    ev.accumulate_counts(unpack_counts(record.pixels.fg, n_bins), unpack_counts(record.pixels.bg, n_bins))
    return ev.compute()["pxap"] if ev.fg_hist.sum() else None


def write_per_image_csv(path: str | Path, records: Iterable[Record | dict], protocol: Protocol, names: Sequence[str] | None) -> int:
    """Write the CSV (columns :data:`COLUMNS`); returns the number of rows. Failed images keep ``error``."""
    taus = protocol.taus
    n = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in map(as_record, records):
            n += 1
            if isinstance(r, FailedImage):
                w.writerow([r.index, safe_text(r.image_id)] + [""] * (len(COLUMNS) - 3) + [safe_text(r.error)])
                continue
            gt, top = r.gt_class, r.topk
            row = [
                r.index, safe_text(r.image_id), r.width, r.height, gt, _name(names, gt), top[0], _name(names, top[0]),
                f"{r.scores[0]:.6f}", " ".join(map(str, top)), " ".join(f"{s:.6f}" for s in r.scores),
            ]
            if r.boxes is not None:
                b = r.boxes
                ious = b.cvpr16_ious
                v1, v2 = np.asarray(b.v1), np.asarray(b.v2)
                j1, j2 = int(np.argmax(v1)), int(np.argmax(v2))
                row += [
                    _boxes(b.gt_boxes), _boxes(b.cvpr16_boxes[0]), f"{ious[0]:.6f}",
                    _boxes(b.cvpr16_boxes[1]), f"{ious[1]:.6f}",
                    int(top[0] == gt and ious[0] >= 0.5),  # a guess counts with the GT class's box
                    int(gt in top and ious[0] >= 0.5),
                    f"{v1[j1]:.6f}", f"{taus[j1]:.4g}", f"{v2[j2]:.6f}", f"{taus[j2]:.4g}",
                ]
            else:
                row += [""] * 11
            pxap = image_pxap(r, protocol)
            row += ["" if pxap is None else f"{pxap:.4f}", ""]
            w.writerow(row)
    return n
