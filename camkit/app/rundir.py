"""Read a ``camkit evaluate --out`` folder (read-only) into what the viewer and the HTML report show.

Only the files on disk are used: ``run.json`` (protocol, model), ``summary.json`` (metrics, curves,
dataset), ``records.jsonl`` (one JSON line per image: ``i``, ``id``, ``w``, ``h``, ``gt``, ``topk``,
``scores``; with boxes ``gt_boxes``, ``cvpr16_boxes``, ``cvpr16_ious``, ``v1``, ``v2`` per tau on the
input square; optional ``pxap`` bin counts and ``faith``; failures ``{"i", "id", "error"}``) and
``per_image.csv`` (``gt_name``, per-image ``pxap``). Boxes are ``x0, y0, x1, y1`` inclusive pixels on the
``input_size`` square the photo was squashed to, as the evaluation measured them. In :attr:`RunDir.records`
the per-tau ``v1`` and ``v2`` are float64 numpy arrays (the same values: a list of 100 Python floats takes
~3.3 KB, the array 0.9 KB, and a 50,000-image run holds 100,000 of them).

Per image, "IoU at the best tau" is the image's V1 IoU (largest contour, wsolevaluation) at the run's
MaxBoxAcc threshold (``summary.best_tau.v1["50"]``), and "correct" means that IoU is >= 0.5: the image
counts towards MaxBoxAcc.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from camkit.errors import RunDirectoryError

__all__ = ["RunDir", "read_run_dir", "image_rows", "compact_record", "LOC_IOU"]

LOC_IOU = 0.5


def _read_json(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise RunDirectoryError(f"{path} is not valid JSON; the run may still be writing it, or rerun camkit evaluate") from None


def compact_record(rec: dict) -> dict:
    """``rec`` (a parsed ``records.jsonl`` line) with its per-tau ``v1`` / ``v2`` as float64 arrays (the same
    values in a quarter of the memory); changed in place and returned."""
    for key in ("v1", "v2"):
        if key in rec:
            rec[key] = np.asarray(rec[key], dtype=np.float64)
    return rec


def _read_records(path: Path) -> list[dict]:
    """Records by index (first line per index wins, a torn last line is skipped), sorted by ``i``."""
    seen: dict[int, dict] = {}
    if not path.exists():
        return []
    with open(path, "rb") as f:
        for no, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                break  # torn by an interrupted run
            if not line.strip():
                continue
            try:
                rec = compact_record(json.loads(line))
                i = int(rec["i"])
            except (ValueError, KeyError, TypeError):
                raise RunDirectoryError(f"{path} line {no} is not a camkit record; is this an output folder of camkit evaluate?") from None
            seen.setdefault(i, rec)
    return [seen[i] for i in sorted(seen)]


def _read_csv(path: Path) -> dict[int, dict]:
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        return {int(row["index"]): row for row in csv.DictReader(f) if row.get("index", "").isdigit()}


@dataclass
class RunDir:
    """One evaluation folder as read from disk (see the module docstring)."""

    path: Path
    run: dict
    summary: dict | None
    records: list[dict]
    per_image: dict[int, dict] = field(default_factory=dict)

    @property
    def protocol(self) -> dict:
        return (self.summary or {}).get("protocol") or self.run.get("protocol") or {}

    @property
    def model(self) -> dict:
        return (self.summary or {}).get("model") or self.run.get("model") or {}

    @property
    def dataset(self) -> dict:
        return (self.summary or {}).get("dataset") or {}

    @property
    def method(self) -> str:
        return str(self.protocol.get("method") or "cam")

    @property
    def input_size(self) -> int:
        return int(self.protocol.get("input_size") or 224)

    @property
    def taus(self) -> np.ndarray:
        """The run's threshold grid, exactly ``np.arange(0, 1, tau_step)`` as evaluate used."""
        return np.arange(0, 1, float(self.protocol.get("tau_step") or 0.01))

    @property
    def label(self) -> str:
        """Short name for the run: model + method (+ folder name)."""
        return f"{self.model.get('name', '?')} · {self.method} · {self.path.name}"

    @property
    def ok_records(self) -> list[dict]:
        return [r for r in self.records if "error" not in r]

    @property
    def has_boxes(self) -> bool:
        """Whether any image has box values (a run on masks only has none)."""
        return any("error" not in r and "v1" in r for r in self.records)

    @property
    def box_records(self) -> list[dict]:
        return [r for r in self.records if "error" not in r and "v1" in r]

    def curve(self, variant: str = "v1", iou: float = LOC_IOU) -> np.ndarray:
        """BoxAcc (percent) at each tau for ``variant`` ("v1"/"v2") at IoU ``iou``, from the records.

        Equal to ``summary.curves[variant][str(int(iou*100))]`` (tested); computed from the records so
        a folder without a summary (an interrupted run) still shows its curve.
        """
        recs = self.box_records
        if not recs:
            return np.zeros(len(self.taus))
        ious = np.asarray([r[variant] for r in recs], dtype=np.float64)
        return (ious >= iou).mean(axis=0) * 100.0

    def best_tau_index(self, variant: str = "v1", iou: float = LOC_IOU) -> int:
        """Index of the first tau reaching the curve's maximum (the MaxBoxAcc threshold)."""
        c = self.curve(variant, iou)
        return int(np.argmax(c)) if len(c) else 0

    def class_name(self, c: int, record_index: int | None = None) -> str:
        if record_index is not None:
            row = self.per_image.get(record_index)
            if row is not None and int(row.get("gt_class") or -1) == c and row.get("gt_name"):
                return row["gt_name"]
            if row is not None and row.get("top1_class", "") == str(c) and row.get("top1_name"):
                return row["top1_name"]
        return ""

    def summary_numbers(self) -> dict:
        s = self.summary or {}
        keys = ("n_images", "n_failed", "top1_cls", "top5_cls", "top1_loc", "top5_loc", "gt_known_loc",
                "maxboxacc", "maxboxacc_v2", "pxap")
        out = {k: s.get(k) for k in keys}
        if s.get("faithfulness"):
            out["faithfulness"] = s["faithfulness"]
        return out


def read_run_dir(path: str | Path, records: list[dict] | None = None) -> RunDir:
    """Read the folder ``camkit evaluate --out`` wrote; raises RunDirectoryError (one line) when it is not one.

    ``records``: the folder's records already read (:func:`compact_record` dicts sorted by index), as the run
    that wrote them holds them; None reads ``records.jsonl``.
    """
    p = Path(path)
    if not p.is_dir():
        raise RunDirectoryError(f"{p} is not a folder; pass the output folder of camkit evaluate")
    run = _read_json(p / "run.json")
    summary = _read_json(p / "summary.json")
    if run is None and summary is None:
        raise RunDirectoryError(f"{p} holds no run.json or summary.json; pass the output folder of camkit evaluate")
    if records is None:
        records = _read_records(p / "records.jsonl")
    if not records:
        raise RunDirectoryError(f"{p}/records.jsonl holds no image records yet; wait for the run or rerun camkit evaluate")
    return RunDir(path=p.resolve(), run=run or {}, summary=summary, records=records, per_image=_read_csv(p / "per_image.csv"))


def _num(v) -> float | None:
    if v is None or v == "":
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def image_rows(run: RunDir) -> list[dict]:
    """One row per image for the viewer's table and the report (failures included, with ``error``).

    Keys: ``i``, ``id``, ``w``, ``h``, ``gt`` (class), ``gt_name``, ``top1``, ``top1_name``, ``top1_score``,
    ``cls_correct`` (top-1 class == GT), ``iou`` (V1 IoU at the run's best tau), ``correct``
    (``iou >= 0.5``), ``best_iou`` (the image's own best V1 IoU over all taus), ``gt_known_iou``
    (CVPR16 box of the GT class), ``gt_boxes`` / ``cvpr16_box`` (input square), ``pxap`` (percent, when
    the run has masks), ``deletion`` / ``insertion`` / ``drop`` / ``increase`` (faithfulness, when measured).
    """
    best = run.best_tau_index("v1")
    rows = []
    for r in run.records:
        i = int(r["i"])
        csv_row = run.per_image.get(i, {})
        row: dict = {"i": i, "id": str(r.get("id", i))}
        if "error" in r:
            row["error"] = str(r["error"])
            rows.append(row)
            continue
        gt = int(r["gt"])
        top = [int(c) for c in r.get("topk", [])]
        row.update({
            "w": r.get("w"), "h": r.get("h"), "gt": gt,
            "gt_name": csv_row.get("gt_name") or "",
            "top1": top[0] if top else None,
            "top1_name": csv_row.get("top1_name") or "",
            "top1_score": float(r["scores"][0]) if r.get("scores") else None,
            "cls_correct": bool(top and top[0] == gt),
        })
        if "v1" in r:
            v1 = r["v1"]
            row.update({
                "iou": float(v1[best]),
                "correct": bool(v1[best] >= LOC_IOU),
                "best_iou": float(np.max(v1)),
                "gt_known_iou": float(r["cvpr16_ious"][0]),
                "gt_boxes": r["gt_boxes"],
                "cvpr16_box": r["cvpr16_boxes"][0],
            })
        px = _num(csv_row.get("pxap"))
        if px is not None:
            row["pxap"] = px
        faith = r.get("faith")
        if isinstance(faith, dict):
            for key in ("deletion", "insertion", "drop", "increase"):
                for k, v in faith.items():
                    if k.startswith(key) and isinstance(v, (int, float)):
                        row[key] = float(v)
                        break
        rows.append(row)
    return rows
