"""Typed per-image results, and their JSON form in ``records.jsonl`` (one object per line).

A line is either an :class:`ImageRecord` or a :class:`FailedImage`. The on-disk keys are short
(the file holds one line per image of a 50,000-image split) and fixed, so runs written before stay
readable and resumable; :meth:`ImageRecord.to_dict` / :func:`record_from_dict` are the only places
that know them:

==================  ===============================================================================
key                 meaning
==================  ===============================================================================
``i``               the image's position in the dataset (the record's identity)
``id``              the dataset's image id
``w``, ``h``        the image size the GT boxes were rescaled from (pixels)
``gt``              the ground-truth class
``topk``            the top-k predicted classes, descending score
``scores``          their softmax probabilities
``gt_boxes``        GT boxes on the input square, ``[n, 4]`` inclusive ``x0 y0 x1 y1`` (box datasets)
``cvpr16_boxes``    CVPR16 boxes ``[2, 4]``: the GT class's, then the top-1 class's (runs written before
                    this format carry ``[1 + k, 4]``, GT class then every top-k class; both read alike:
                    the metrics use the GT class's box only)
``cvpr16_ious``     best IoU of each with any GT box, aligned with ``cvpr16_boxes``
``v1``, ``v2``      ``[T]`` per-tau best IoU of wsolevaluation's V1 / V2 boxes (GT-class map)
``pxap``            ``{"fg": packed, "bg": packed}`` PxAP bin counts (mask datasets; ``pack_counts``)
``faith``           ``{"del", "ins", "y", "o"}``: deletion AUC, insertion AUC, the class probability
                    of the image and of the image times its normalised map (``faithfulness=True``)
``error``           a failed image's one-line reason (failure lines carry only ``i``, ``id``, ``error``)
==================  ===============================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BoxResult:
    """Box-metric values of one image (all on the square network input, inclusive pixels)."""

    gt_boxes: list[list[int]]
    cvpr16_boxes: list[list[int]]
    cvpr16_ious: list[float]
    v1: list[float]
    v2: list[float]


@dataclass(frozen=True)
class PixelCounts:
    """PxAP histogram counts of one image's GT-class map, packed (``protocol.pack_counts``)."""

    fg: list[int]
    bg: list[int]


@dataclass(frozen=True)
class FaithfulnessResult:
    """Faithfulness of one image's GT-class map (:mod:`camkit.metrics.faithfulness`)."""

    deletion_auc: float
    insertion_auc: float
    score: float  # probability of the GT class for the image (Y)
    masked_score: float  # ... for the image times its normalised map (O)

    def to_dict(self) -> dict:
        return {"del": self.deletion_auc, "ins": self.insertion_auc, "y": self.score, "o": self.masked_score}

    @classmethod
    def from_dict(cls, d: dict) -> FaithfulnessResult:
        return cls(float(d["del"]), float(d["ins"]), float(d["y"]), float(d["o"]))


@dataclass(frozen=True)
class ImageRecord:
    """Everything one evaluated image contributes to the summary."""

    index: int
    image_id: str
    width: int
    height: int
    gt_class: int
    topk: list[int]
    scores: list[float]
    boxes: BoxResult | None = None
    pixels: PixelCounts | None = None
    faithfulness: FaithfulnessResult | None = None

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"i": self.index, "id": self.image_id, "w": self.width, "h": self.height,
                             "gt": self.gt_class, "topk": self.topk, "scores": self.scores}
        if self.boxes is not None:
            b = self.boxes
            d.update(gt_boxes=b.gt_boxes, cvpr16_boxes=b.cvpr16_boxes, cvpr16_ious=b.cvpr16_ious, v1=b.v1, v2=b.v2)
        if self.pixels is not None:
            d["pxap"] = {"fg": self.pixels.fg, "bg": self.pixels.bg}
        if self.faithfulness is not None:
            d["faith"] = self.faithfulness.to_dict()
        return d


@dataclass(frozen=True)
class FailedImage:
    """An image (or its mask) that could not be read; it is left out of every metric."""

    index: int
    image_id: str
    error: str

    def to_dict(self) -> dict:
        return {"i": self.index, "id": self.image_id, "error": self.error}


Record = ImageRecord | FailedImage


def record_from_dict(d: Mapping) -> Record:
    """A ``records.jsonl`` object -> :class:`ImageRecord` or :class:`FailedImage`."""
    if "error" in d:
        return FailedImage(int(d["i"]), str(d.get("id", "")), str(d["error"]))
    boxes = None
    if "cvpr16_ious" in d:
        boxes = BoxResult(d["gt_boxes"], d["cvpr16_boxes"], d["cvpr16_ious"], d["v1"], d["v2"])
    pixels = PixelCounts(d["pxap"]["fg"], d["pxap"]["bg"]) if "pxap" in d else None
    faith = FaithfulnessResult.from_dict(d["faith"]) if "faith" in d else None
    return ImageRecord(int(d["i"]), str(d["id"]), int(d["w"]), int(d["h"]), int(d["gt"]), list(d["topk"]),
                       list(d["scores"]), boxes, pixels, faith)


def as_record(r: Record | Mapping) -> Record:
    """A typed record, converting a ``records.jsonl`` dict with :func:`record_from_dict`."""
    return record_from_dict(r) if isinstance(r, Mapping) else r
