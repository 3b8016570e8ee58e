"""The summary: a pure function of the per-image records (their order does not matter).

Accuracies are percentages (``100 * hits / n_images``, as wsolevaluation reports them) over the
images that were evaluated; images that could not be read are listed under ``failed`` and are not in
the denominator. The counting is camkit.metrics' streaming evaluators (MaxBoxAccEvaluator,
LocalizationAccuracy, ClassificationAccuracy) fed from the records; their counts are integers, so
any order of records gives bit-identical numbers.

Box metrics come from the records that carry box fields, PxAP from those that carry ``pxap`` bin
counts (:func:`camkit.evaluate.protocol.image_record`); a dataset with masks but no boxes has the box
metrics None, a dataset without masks has ``pxap`` None.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from camkit.evaluate.protocol import Protocol, unpack_counts
from camkit.evaluate.results import FailedImage, Record, as_record

LOC_IOU = 0.5  # CVPR16 top-k / GT-known localization and MaxBoxAcc (V1)
_CHUNK = 2048  # records counted per evaluator call


def iou_key(delta: float) -> str:
    """``0.3 -> "30"``: the keys wsolevaluation uses for IoU thresholds."""
    return str(int(round(delta * 100)))


def summarize(
    records: Iterable[Record | Mapping],
    protocol: Protocol,
    *,
    model: Mapping | None = None,
    dataset: Mapping | None = None,
) -> dict:
    """Aggregate per-image records into the summary dict written as ``summary.json``.

    Keys: ``n_images`` (evaluated), ``n_failed`` and ``failed`` (``index``, ``image_id``, ``error``,
    by index), ``top1_cls``, ``top5_cls``, ``top1_loc``, ``top5_loc``, ``gt_known_loc`` (CVPR16 box,
    IoU >= 0.5), ``maxboxacc`` (V1 at IoU 0.5), ``maxboxacc_v2`` (mean over the IoU thresholds),
    ``maxboxacc_per_iou`` / ``maxboxacc_v2_per_iou`` (``{"30": .., "50": .., "70": ..}``),
    ``best_tau`` (``{"v1": {"50": tau, ...}, "v2": {...}}``, first tau reaching the maximum),
    ``curves`` (``taus`` and BoxAcc per tau for each version and IoU), ``n_box_images`` and
    ``n_pxap_images`` (images each metric family was computed on), ``pxap`` (percent) and
    ``pxap_curve`` (``precision``, ``recall``, ``thresholds`` from the top, only at thresholds where
    some pixel is predicted positive), ``protocol``, ``model``, ``dataset``. Accuracies are
    percentages; None when no image was evaluated or the metric does not apply (box metrics without
    boxes, PxAP without masks or without a single foreground pixel).
    """
    from camkit.metrics import ClassificationAccuracy, LocalizationAccuracy, MaxBoxAccEvaluator, PxAPEvaluator

    taus = protocol.taus
    deltas = tuple(protocol.iou_thresholds)
    boxacc = {v: MaxBoxAccEvaluator(taus, deltas, multi_contour=(v == "v2")) for v in ("v1", "v2")}
    cls_acc = ClassificationAccuracy()
    loc_acc = LocalizationAccuracy(LOC_IOU)
    pxap_eval = PxAPEvaluator(taus)
    n_bins = len(pxap_eval.fg_hist)
    n_pxap = 0
    failed: list[dict[str, Any]] = []
    # The evaluators take batches: records are counted CHUNK at a time (integer counts, so the same numbers).
    cls_rows: list[tuple[int, list[int]]] = []
    box_rows: list[tuple[int, list[int], float, Any, Any]] = []

    def flush() -> None:
        if cls_rows:
            cls_acc.accumulate(np.array([g for g, _ in cls_rows]), np.array([t for _, t in cls_rows], dtype=np.int64))
            cls_rows.clear()
        if box_rows:
            gt = np.array([b[0] for b in box_rows])
            top = np.array([b[1] for b in box_rows], dtype=np.int64)
            # A top-k guess localizes only when its class is the GT class, whose box is the GT class's:
            # every guess can carry the GT-class IoU (records keep other classes' boxes for display only)
            gt_iou = np.array([b[2] for b in box_rows], dtype=np.float64)
            loc_acc.accumulate(gt, top, np.repeat(gt_iou[:, None], top.shape[1], axis=1), gt_iou)
            boxacc["v1"].accumulate_ious(np.array([b[3] for b in box_rows], dtype=np.float64))
            boxacc["v2"].accumulate_ious(np.array([b[4] for b in box_rows], dtype=np.float64))
            box_rows.clear()

    for r in map(as_record, records):
        if isinstance(r, FailedImage):
            failed.append({"index": r.index, "image_id": r.image_id, "error": r.error})
            continue
        if cls_rows and len(r.topk) != len(cls_rows[0][1]):
            flush()  # a batch needs one top-k length
        cls_rows.append((r.gt_class, r.topk))
        if r.boxes is not None:
            box_rows.append((r.gt_class, r.topk, r.boxes.cvpr16_ious[0], r.boxes.v1, r.boxes.v2))
        if r.pixels is not None:
            pxap_eval.accumulate_counts(unpack_counts(r.pixels.fg, n_bins), unpack_counts(r.pixels.bg, n_bins))
            n_pxap += 1
        if len(cls_rows) == _CHUNK:
            flush()
    flush()
    n = cls_acc.n_images
    nb = loc_acc.n_images
    failed.sort(key=lambda f: f["index"])
    curves: dict = {"taus": [round(float(t), 10) for t in taus]}
    best_tau: dict = {}
    per_iou: dict = {}
    for v in ("v1", "v2"):
        res = boxacc[v].compute() if nb else None
        curves[v] = {iou_key(d): (res["boxacc"][d].tolist() if res else None) for d in deltas}
        best_tau[v] = {iou_key(d): (round(res["best_tau"][d], 10) if res else None) for d in deltas}
        per_iou[v] = {iou_key(d): (res["maxboxacc"][d] if res else None) for d in deltas}
    cls = cls_acc.compute() if n else {}
    loc = loc_acc.compute() if nb else {}
    pxap, pxap_curve = _pxap(pxap_eval) if n_pxap else (None, None)
    return {
        "n_images": n,
        "n_failed": len(failed),
        "failed": failed,
        "n_box_images": nb,
        "n_pxap_images": n_pxap,
        "top1_cls": cls.get("top1"),
        "top5_cls": cls.get("top5"),
        "top1_loc": loc.get("top1_loc"),
        "top5_loc": loc.get("top5_loc"),
        "gt_known_loc": loc.get("gt_known_loc"),
        "maxboxacc": per_iou["v1"].get(iou_key(LOC_IOU)),
        "maxboxacc_v2": boxacc["v2"].compute()["mean_maxboxacc"] if nb else None,
        "maxboxacc_per_iou": per_iou["v1"],
        "maxboxacc_v2_per_iou": per_iou["v2"],
        "best_tau": best_tau,
        "curves": curves,
        "pxap": pxap,
        "pxap_curve": pxap_curve,
        "protocol": protocol.to_dict(),
        "model": dict(model or {}),
        "dataset": dict(dataset or {}),
    }


def _pxap(ev) -> tuple[float | None, dict | None]:
    """PxAP (percent) and its precision-recall curve, or (None, None) when no foreground pixel was seen."""
    if ev.fg_hist.sum() == 0:
        return None, None
    res = ev.compute()
    keep = res["predicted"]
    curve = {k: [round(float(x), 10) for x in res[k][keep]] for k in ("precision", "recall", "thresholds")}
    return res["pxap"], curve


METRIC_KEYS = (
    "n_images", "n_failed", "n_box_images", "n_pxap_images", "top1_cls", "top5_cls", "top1_loc", "top5_loc",
    "gt_known_loc", "maxboxacc", "maxboxacc_v2", "maxboxacc_per_iou", "maxboxacc_v2_per_iou", "best_tau", "curves",
    "pxap", "pxap_curve",
)
"""The summary keys that are a pure function of the records (equal between a run and its resumption)."""
