"""The summary: a pure function of the per-image records (their order does not matter).

Accuracies are percentages (``100 * hits / n_images``, as wsolevaluation reports them) over the
images that were evaluated; images that could not be read are listed under ``failed`` and are not in
the denominator. The counting is camkit.metrics' streaming evaluators (MaxBoxAccEvaluator,
LocalizationAccuracy, ClassificationAccuracy) fed from the records; their counts are integers, so
any order of records gives bit-identical numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from camkit.evaluate.protocol import Protocol

LOC_IOU = 0.5  # CVPR16 top-k / GT-known localization and MaxBoxAcc (V1)


def iou_key(delta: float) -> str:
    """``0.3 -> "30"``: the keys wsolevaluation uses for IoU thresholds."""
    return str(int(round(delta * 100)))


def summarize(
    records: Iterable[Mapping],
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
    ``curves`` (``taus`` and BoxAcc per tau for each version and IoU), ``protocol``, ``model``,
    ``dataset``. Accuracies are percentages; None when no image was evaluated.
    """
    from camkit.metrics import ClassificationAccuracy, LocalizationAccuracy, MaxBoxAccEvaluator

    taus = protocol.taus
    deltas = tuple(protocol.iou_thresholds)
    boxacc = {v: MaxBoxAccEvaluator(taus, deltas, multi_contour=(v == "v2")) for v in ("v1", "v2")}
    cls_acc = ClassificationAccuracy()
    loc_acc = LocalizationAccuracy(LOC_IOU)
    failed = []
    for r in records:
        if "error" in r:
            failed.append({"index": int(r["i"]), "image_id": r.get("id", ""), "error": r["error"]})
            continue
        gt = np.array([int(r["gt"])])
        top = np.array([r["topk"]], dtype=np.int64)
        ious = r["cvpr16_ious"]  # [GT class, top-1, ..., top-k]
        cls_acc.accumulate(gt, top)
        loc_acc.accumulate(gt, top, np.array([ious[1:]]), np.array([ious[0]]))
        for v in ("v1", "v2"):
            boxacc[v].accumulate_ious(np.asarray([r[v]], dtype=np.float64))
    n = cls_acc.n_images
    failed.sort(key=lambda f: f["index"])
    curves: dict = {"taus": [round(float(t), 10) for t in taus]}
    best_tau: dict = {}
    per_iou: dict = {}
    for v in ("v1", "v2"):
        res = boxacc[v].compute() if n else None
        curves[v] = {iou_key(d): (res["boxacc"][d].tolist() if res else None) for d in deltas}
        best_tau[v] = {iou_key(d): (round(res["best_tau"][d], 10) if res else None) for d in deltas}
        per_iou[v] = {iou_key(d): (res["maxboxacc"][d] if res else None) for d in deltas}
    cls = cls_acc.compute() if n else {}
    loc = loc_acc.compute() if n else {}
    return {
        "n_images": n,
        "n_failed": len(failed),
        "failed": failed,
        "top1_cls": cls.get("top1"),
        "top5_cls": cls.get("top5"),
        "top1_loc": loc.get("top1_loc"),
        "top5_loc": loc.get("top5_loc"),
        "gt_known_loc": loc.get("gt_known_loc"),
        "maxboxacc": per_iou["v1"].get(iou_key(LOC_IOU)),
        "maxboxacc_v2": boxacc["v2"].compute()["mean_maxboxacc"] if n else None,
        "maxboxacc_per_iou": per_iou["v1"],
        "maxboxacc_v2_per_iou": per_iou["v2"],
        "best_tau": best_tau,
        "curves": curves,
        "protocol": protocol.to_dict(),
        "model": dict(model or {}),
        "dataset": dict(dataset or {}),
    }


METRIC_KEYS = (
    "n_images", "n_failed", "top1_cls", "top5_cls", "top1_loc", "top5_loc", "gt_known_loc",
    "maxboxacc", "maxboxacc_v2", "maxboxacc_per_iou", "maxboxacc_v2_per_iou", "best_tau", "curves",
)
