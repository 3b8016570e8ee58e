"""The evaluation loop: DataLoader -> batched forward -> maps -> per-image records -> summary.

:func:`evaluate` streams: per-image results go to an append-only, fsync'd records file as each
batch finishes (:mod:`camkit.evaluate.records`), and the summary, the CSV and the figures are computed
from that file at the end. Memory does not grow with the number of images, and ``resume=True``
after a crash (even ``kill -9``) evaluates only the images without a record, giving the same
summary as an uninterrupted run.

Maps come from one pluggable function (:data:`MapSource`): the default is the exact CAM from one
forward pass (``model.features`` -> ``model.head`` -> ``cams_from_features`` for the GT class and
the top-k classes); other methods go through :func:`camkit.cam.methods.compute_method_maps`.

Which metrics apply follows the dataset: box metrics when every image has a GT box, PxAP when every
image has masks (OpenImages30k; the masks are read in the DataLoader workers, and a missing or
unreadable mask fails its image exactly like an unreadable photo).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from camkit.datasets.sample import LocDataset
from camkit.errors import CamkitError, DatasetError
from camkit.evaluate.protocol import Protocol, image_record, rescale_gt_boxes, upsample_map
from camkit.evaluate.records import RECORDS_NAME, RecordWriter, iter_records
from camkit.evaluate.summary import summarize

if TYPE_CHECKING:
    import torch

    from camkit.models.cam_model import CAMModel

RUN_NAME = "run.json"
SUMMARY_NAME = "summary.json"
PER_IMAGE_NAME = "per_image.csv"
CURVES_NAME = "boxacc_vs_tau.png"
PXAP_CURVE_NAME = "pxap_pr_curve.png"
GALLERY_BEST_NAME = "gallery_best.png"
GALLERY_WORST_NAME = "gallery_worst.png"
REPORT_NAME = "report.md"

# map_source(x [B,3,S,S], gt [B] int64) -> (classes [B, 1+k] int64 (GT first, then top-k by score),
#                                          scores [B, k] float softmax of the top-k, maps [B, 1+k, h, w] float32)
MapSource = Callable[["torch.Tensor", "torch.Tensor"], tuple[np.ndarray, np.ndarray, np.ndarray]]


def make_map_source(model: "CAMModel", method: str = "cam", topk: int = 5, layer: str | None = None) -> MapSource:
    """The map function for ``method``.

    ``"cam"``: one forward under ``torch.inference_mode()``; the maps of the GT class and the top-k
    classes come from the same feature map (one einsum). Any other method: a forward for the top-k,
    then :func:`camkit.cam.methods.compute_method_maps` with those classes.
    """
    import torch

    from camkit.cam.engine import cams_from_features

    if method == "cam":

        def cam_source(x: torch.Tensor, gt: torch.Tensor):
            with torch.inference_mode():
                feats = model.features(x)
                logits = model.head(feats)
                top = logits.topk(topk, dim=1).indices
                scores = logits.float().softmax(dim=1).gather(1, top)
                idx = torch.cat([gt.to(top.device).view(-1, 1), top], dim=1)
                maps = cams_from_features(model, feats, idx).float()
            return idx.cpu().numpy(), scores.cpu().numpy(), maps.cpu().numpy()

        return cam_source

    from camkit.cam.methods import compute_method_maps

    def method_source(x: torch.Tensor, gt: torch.Tensor):
        with torch.inference_mode():
            logits = model(x)
            top = logits.topk(topk, dim=1).indices
            scores = logits.float().softmax(dim=1).gather(1, top)
        idx = torch.cat([gt.view(-1, 1), top], dim=1).clone()
        r = compute_method_maps(model, x, method=method, classes=idx, layer=layer)
        return idx.numpy(), scores.numpy(), r.maps.detach().float().cpu().numpy()

    return method_source


class SquashTransform:
    """PIL RGB image -> normalised float tensor ``[3, S, S]``, whole image squashed (picklable for workers)."""

    def __init__(self, preprocess) -> None:
        self.preprocess = preprocess

    def __call__(self, image):
        import torch

        return torch.from_numpy(self.preprocess.to_array(image, "squash")[0])


@dataclass
class _RunInfo:
    protocol: Protocol
    model: dict
    dataset: dict
    batch_size: int

    def fingerprint(self) -> dict:
        # What must match for --resume to continue a run (timing and file locations may differ).
        # The batch size fixes which images share a forward pass (see run_records), so it must too.
        return {"protocol": self.protocol.to_dict(), "model": self.model, "ids_sha1": self.dataset["ids_sha1"],
                "n_images": self.dataset["n_images"], "batch_size": self.batch_size}


def _ids_digest(samples) -> str:
    h = hashlib.sha1()
    for s in samples:
        h.update(f"{s.image_id}\t{s.class_index}\t{s.boxes.tolist()}\n".encode())
        if s.mask_paths:  # only then, so box datasets keep the digest they had before masks existed
            h.update(f"masks\t{[str(m) for m in s.mask_paths]}\t{s.ignore_path}\n".encode())
    return h.hexdigest()


def _prepare_out_dir(out_dir: Path, info: _RunInfo, resume: bool) -> None:
    run_path = out_dir / RUN_NAME
    records_path = out_dir / RECORDS_NAME
    fp = info.fingerprint()
    if resume and run_path.exists():
        try:
            old = json.loads(run_path.read_text(encoding="utf-8"))
        except ValueError:
            raise CamkitError(f"{run_path} is not valid JSON; delete {out_dir} and run without --resume.") from None
        if old != fp:
            what = [k for k in fp if old.get(k) != fp[k]]
            raise CamkitError(
                f"--resume: {out_dir} holds a run with a different {', '.join(what)}; "
                "use the same dataset, model and options (--batch-size included), or another --out."
            )
        return
    if records_path.exists() and records_path.stat().st_size and not resume:
        raise CamkitError(f"{out_dir} already holds results ({RECORDS_NAME}); pass --resume to continue it, or another --out.")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(fp, indent=1), encoding="utf-8")
    tmp.replace(run_path)


def _progress(enabled: bool, total: int, done: int):
    from contextlib import nullcontext

    if not enabled:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.text import Text

    class ImagesPerSecond(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            if not speed and task.elapsed:  # too few updates for Rich's windowed speed
                speed = (task.completed - task.fields.get("first", 0)) / task.elapsed
            return Text(f"{speed:.1f} img/s" if speed else "- img/s")

    return Progress(
        TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), ImagesPerSecond(),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=Console(stderr=True), transient=False,
    )


def faithfulness_records(model, x: "torch.Tensor", maps_gt: np.ndarray, gt: "torch.Tensor", steps: int) -> list[dict]:
    """Per-image faithfulness of the GT-class maps: deletion/insertion AUC (RISE) and the confidence
    change behind average drop / increase in confidence (Grad-CAM++), see :mod:`camkit.metrics.faithfulness`."""
    import torch

    from camkit.metrics.faithfulness import auc, confidence_change, deletion_insertion_curves

    m = torch.from_numpy(np.ascontiguousarray(maps_gt))
    d = auc(deletion_insertion_curves(model, x, m, gt, "deletion", steps=steps))
    ins = auc(deletion_insertion_curves(model, x, m, gt, "insertion", steps=steps))
    y, o = confidence_change(model, x, m, gt)
    return [
        {"del": round(float(d[b]), 8), "ins": round(float(ins[b]), 8), "y": round(float(y[b]), 8), "o": round(float(o[b]), 8)}
        for b in range(len(y))
    ]


def summarize_faithfulness(records: Iterator[dict]) -> dict:
    """Means over the records that carry faithfulness values (a pure function of the records)."""
    rows = [r["faith"] for r in records if "faith" in r]
    if not rows:
        return {}
    y = np.array([r["y"] for r in rows])
    o = np.array([r["o"] for r in rows])
    return {
        "n": len(rows),
        "deletion_auc": float(np.mean([r["del"] for r in rows])),
        "insertion_auc": float(np.mean([r["ins"] for r in rows])),
        "average_drop": float(100.0 * np.mean(np.maximum(0.0, y - o) / y)),
        "increase_in_confidence": float(100.0 * np.mean(o > y)),
    }


def run_records(
    samples: list,
    todo: list[int],
    protocol: Protocol,
    map_source: MapSource,
    preprocess,
    *,
    batch_size: int,
    workers: int,
    sink: Callable[[list[dict]], None],
    progress: bool = False,
    n_done: int = 0,
    model=None,
    boxes: bool = True,
    masks: bool = False,
) -> None:
    """Evaluate ``samples[i] for i in todo`` and hand each batch's records to ``sink``.

    Batches are always the fixed partition ``[0, B), [B, 2B), ...`` of ``samples``: a batch with
    any image still to do is run whole, and records are made for its ``todo`` images only. So an
    image is always computed in the same batch, and a resumed run gives bit-identical results to an
    uninterrupted one (CPU kernels may round differently for another batch composition).

    ``boxes``: compute the box metrics (every sample has a GT box); ``masks``: read each sample's
    masks (:class:`camkit.datasets.masks.MaskLoader`) and record its PxAP bin counts.
    Images (or masks) that cannot be read become failure records ``{"i", "id", "error"}``; the
    others ``image_record(...)`` plus ``i``, ``id``, ``w``, ``h``.
    """
    import torch

    from camkit.datasets.masks import MaskLoader
    from camkit.datasets.torch_dataset import LocalizationImages, collate_localization

    wanted = set(todo)
    batches = [
        list(range(start, min(start + batch_size, len(samples))))
        for start in range(0, len(samples), batch_size)
        if wanted.intersection(range(start, min(start + batch_size, len(samples))))
    ]
    loader = torch.utils.data.DataLoader(
        LocalizationImages(LocDataset("evaluated", samples), SquashTransform(preprocess),
                           load_mask=MaskLoader(protocol.input_size) if masks else None),
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=collate_localization,
    )
    with _progress(progress, len(samples), n_done) as bar:
        task = bar.add_task("eval", total=len(samples), completed=n_done, first=n_done) if bar is not None else None
        for batch in loader:
            out: list[dict] = []
            for i, message in batch["failed"]:
                if i in wanted:
                    out.append({"i": i, "id": samples[i].image_id, "error": message})
            if batch["images"] is not None:
                idx = batch["indices"].tolist()
                gt = torch.tensor([samples[i].class_index for i in idx], dtype=torch.int64)
                classes, scores, maps = map_source(batch["images"], gt)
                faith = (
                    faithfulness_records(model, batch["images"], maps[:, 0], gt, protocol.faithfulness_steps)
                    if protocol.faithfulness_steps and model is not None
                    else None
                )
                for b, i in enumerate(idx):
                    if i not in wanted:  # done before the interruption; only here to keep the batch whole
                        continue
                    s = samples[i]
                    # Boxes are in the annotation's frame: use its size when the layout gives one.
                    w = s.width if s.width is not None else batch["widths"][b]
                    h = s.height if s.height is not None else batch["heights"][b]
                    gt_boxes = rescale_gt_boxes(s.boxes, w, h, protocol.input_size) if boxes else None
                    rec = image_record(protocol, maps[b], classes[b], s.class_index, scores[b], gt_boxes,
                                       batch["masks"][b] if masks else None)
                    if faith is not None:
                        rec["faith"] = faith[b]
                    out.append({"i": i, "id": s.image_id, "w": int(w), "h": int(h), **rec})
            out.sort(key=lambda r: r["i"])
            sink(out)
            if bar is not None:
                bar.update(task, advance=len(out))


def _model_info(model) -> dict:
    return {
        "name": getattr(model, "name", type(model).__name__),
        "weights": getattr(model, "weights_name", None),
        "cam_kind": getattr(model, "cam_kind", None),
        "num_classes": int(getattr(model, "num_classes", 0) or 0),
    }


def evaluate(
    dataset: LocDataset,
    model: "CAMModel | str",
    input_size: int = 224,
    batch_size: int = 32,
    workers: int = 0,
    tau_step: float = 0.01,
    limit: int | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    method: str = "cam",
    progress: bool = True,
    *,
    layer: str | None = None,
    gallery_size: int = 6,
    map_source: MapSource | None = None,
    faithfulness: bool = False,
    faithfulness_steps: int = 224,
) -> dict:
    """Evaluate localization of ``model`` on ``dataset`` (see :mod:`camkit.evaluate.protocol`).

    Args:
        dataset: a :class:`LocDataset` from any camkit reader (boxes in original pixels).
        model: a CAMModel, or a registry name (loaded with its default weights).
        input_size: the square input the photos are squashed to.
        batch_size, workers: DataLoader batch size and worker processes.
        tau_step: CAM threshold grid ``np.arange(0, 1, tau_step)``.
        limit: evaluate only the first ``limit`` images.
        out_dir: write ``records.jsonl`` (as it goes), ``summary.json``, ``per_image.csv``, the BoxAcc
            curves, best/worst galleries (box datasets), the PxAP precision-recall curve (mask
            datasets) and ``report.md`` there. None: nothing is written.
        resume: continue the run in ``out_dir`` (same dataset, model and options), evaluating only
            the images without a record.
        method: ``"cam"`` (exact CAM) or a :mod:`camkit.cam.methods` name; ``layer`` its target layer.
        progress: a Rich progress bar (images/s, ETA) on stderr.
        map_source: replaces the maps entirely (see :data:`MapSource`); ``method`` then only labels them.
        faithfulness: also measure deletion/insertion AUC and average drop / increase in confidence of the
            GT-class maps (``faithfulness_steps`` deletion/insertion steps; ~2 x steps forwards per image).

    Returns:
        The summary dict (see :func:`camkit.evaluate.summary.summarize`) plus ``run`` (timing,
        output files) which, unlike the rest, varies between runs.
    """
    if isinstance(model, str):
        from camkit.models import load_model

        model = load_model(model)
    if input_size < 8:
        raise CamkitError(f"--input-size {input_size} is too small; use e.g. 224.")
    if not 0 < tau_step < 1:
        raise CamkitError(f"--tau-step must be in (0, 1), got {tau_step}; wsolevaluation uses 0.01 or 0.001.")
    if batch_size < 1 or workers < 0:
        raise CamkitError("--batch-size must be >= 1 and --workers >= 0.")
    samples = list(dataset.samples[: limit if limit is not None else None])
    if not samples:
        raise DatasetError(f"{dataset.name}: no images to evaluate.")
    n_classes = getattr(model, "num_classes", None)
    bad = [s for s in samples if n_classes is not None and not 0 <= s.class_index < n_classes]
    if bad:
        raise DatasetError(
            f"{bad[0].image_id}: class {bad[0].class_index} is outside the model's {n_classes} classes "
            f"({len(bad)} image(s)); use labels of the model's class order."
        )
    # Box metrics need a box on every image, PxAP a mask on every image; a mask dataset (OpenImages)
    # without boxes gets classification + PxAP only.
    has_boxes = all(len(s.boxes) for s in samples)
    has_masks = all(s.mask_paths for s in samples)
    if not has_boxes and not has_masks:
        empty = [s for s in samples if len(s.boxes) == 0]
        raise DatasetError(
            f"{empty[0].image_id}: no ground-truth box ({len(empty)} image(s)) and not every image has a mask; "
            "box metrics need a box on every image, PxAP a mask on every image."
        )

    if method != "cam" or layer is not None:
        from camkit.cam.methods import method_info

        method = method_info(method).name
    protocol = Protocol(input_size=input_size, tau_step=tau_step, method=method, layer=layer,
                        faithfulness_steps=int(faithfulness_steps) if faithfulness else 0)
    info = _RunInfo(
        protocol,
        _model_info(model),
        {
            "name": dataset.name,
            "source": dataset.source,
            "n_images": len(samples),
            "limit": limit,
            "ids_sha1": _ids_digest(samples),
            "metrics": [m for m, on in (("boxes", has_boxes), ("pxap", has_masks)) if on],
        },
        batch_size,
    )
    preprocess = model.preprocess.with_input_size(input_size)
    source = map_source or make_map_source(model, method, protocol.topk, layer)
    t0 = time.perf_counter()

    memory: list[dict] = []
    n_done = 0
    if out_dir is not None:
        out = Path(out_dir)
        _prepare_out_dir(out, info, resume)
        records_path = out / RECORDS_NAME
        done = {r["i"] for r in iter_records(records_path)} if resume else set()
        todo = [i for i in range(len(samples)) if i not in done]
        n_done = len(samples) - len(todo)
        with RecordWriter(records_path) as writer:
            run_records(samples, todo, protocol, source, preprocess, batch_size=batch_size, workers=workers,
                        sink=writer.write, progress=progress, n_done=n_done, model=model,
                        boxes=has_boxes, masks=has_masks)

        def records() -> Iterator[dict]:
            return iter_records(records_path)
    else:
        run_records(samples, list(range(len(samples))), protocol, source, preprocess, batch_size=batch_size,
                    workers=workers, sink=memory.extend, progress=progress, model=model,
                    boxes=has_boxes, masks=has_masks)

        def records() -> Iterator[dict]:
            return iter(memory)

    elapsed = time.perf_counter() - t0
    summary = summarize(records(), protocol, model=info.model, dataset=info.dataset)
    if protocol.faithfulness_steps:
        summary["faithfulness"] = summarize_faithfulness(records())
    n_new = len(samples) - n_done
    summary["run"] = {
        "seconds": round(elapsed, 3),
        "images_per_s": round(n_new / elapsed, 3) if elapsed > 0 else None,
        "evaluated_now": n_new,
        "resumed_from": n_done,
        "out_dir": str(out_dir) if out_dir is not None else None,
    }
    if out_dir is not None:
        _write_outputs(Path(out_dir), summary, records, samples, model, source, preprocess, protocol,
                       dataset, gallery_size)
    return summary


def _write_outputs(out: Path, summary: dict, records, samples, model, source, preprocess, protocol, dataset, gallery_size) -> None:
    from camkit.evaluate import plots, report
    from camkit.evaluate.tables import write_per_image_csv

    names = dataset.class_names if dataset.class_names else getattr(model, "categories", None)
    write_per_image_csv(out / PER_IMAGE_NAME, records(), protocol, names)
    files = {"summary": SUMMARY_NAME, "per_image": PER_IMAGE_NAME}
    if summary["n_box_images"]:
        plots.plot_curves(summary, out / CURVES_NAME)
        files["curves"] = CURVES_NAME
    if summary["pxap"] is not None:
        plots.plot_pxap_curve(summary, out / PXAP_CURVE_NAME)
        files["pxap_curve"] = PXAP_CURVE_NAME
    files["report"] = REPORT_NAME
    best, worst = select_extremes(records(), gallery_size)
    for name, chosen, title in ((GALLERY_BEST_NAME, best, "best"), (GALLERY_WORST_NAME, worst, "worst")):
        if chosen:
            panels = gallery_panels(chosen, samples, source, preprocess, protocol, names)
            plots.plot_gallery(panels, out / name, f"{title} {len(panels)} by GT-known IoU (CVPR16 box)")
            files[f"gallery_{title}"] = name
    summary["run"]["files"] = files
    tmp = out / (SUMMARY_NAME + ".tmp")
    tmp.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    tmp.replace(out / SUMMARY_NAME)
    (out / REPORT_NAME).write_text(report.markdown_report(summary, files), encoding="utf-8")


def select_extremes(records, n: int) -> tuple[list[dict], list[dict]]:
    """The ``n`` best and ``n`` worst records by GT-known IoU (ties by index), streaming; records
    without box fields (failures, mask-only datasets) are left out."""
    if n <= 0:
        return [], []
    good = ((r["cvpr16_ious"][0], r["i"], r) for r in records if "cvpr16_ious" in r)
    best: list = []
    worst: list = []
    for iou, i, r in good:
        slim = {k: r[k] for k in ("i", "id", "gt", "topk", "scores", "gt_boxes", "cvpr16_boxes", "cvpr16_ious")}
        heapq.heappush(best, (iou, -i, slim))
        if len(best) > n:
            heapq.heappop(best)
        heapq.heappush(worst, (-iou, i, slim))
        if len(worst) > n:
            heapq.heappop(worst)
    best_sorted = [t[2] for t in sorted(best, key=lambda t: (-t[0], -t[1]))]
    worst_sorted = [t[2] for t in sorted(worst, key=lambda t: (-t[0], t[1]))]
    return best_sorted, worst_sorted


def gallery_panels(chosen: list[dict], samples, source: MapSource, preprocess, protocol: Protocol, names) -> list[dict[str, Any]]:
    """Re-run the maps for a few records: squashed photo, GT-class map at input size, boxes, caption."""
    import torch

    from camkit.io import load_image

    arrays = []
    for r in chosen:
        arr, _ = preprocess.to_array(load_image(samples[r["i"]].image_path), "squash")
        arrays.append(arr)
    x = torch.from_numpy(np.stack(arrays))
    gt = torch.tensor([r["gt"] for r in chosen], dtype=torch.int64)
    _, _, maps = source(x, gt)
    mean = np.asarray(preprocess.mean, np.float32)[:, None, None]
    std = np.asarray(preprocess.std, np.float32)[:, None, None]
    panels = []
    for b, r in enumerate(chosen):
        rgb = np.clip((arrays[b] * std + mean) * 255.0 + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)
        gt_name = names[r["gt"]] if names and r["gt"] < len(names) else str(r["gt"])
        panels.append({
            "image": rgb,
            "cam": upsample_map(maps[b, 0], protocol.input_size),
            "gt_boxes": r["gt_boxes"],
            "pred_box": r["cvpr16_boxes"][0],
            "title": f"{r['id']}\n{gt_name.split(',')[0][:24]}  IoU {r['cvpr16_ious'][0]:.2f}",
        })
    return panels
