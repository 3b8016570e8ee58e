"""The evaluation protocol, one image at a time: maps at input resolution -> boxes -> IoUs.

camkit evaluates exactly as clovaai/wsolevaluation (Choe et al., CVPR 2020) does, plus the CAM
paper's (Zhou et al., CVPR 2016) top-1 / top-5 localization:

- The photo is squashed to ``input_size x input_size`` (aspect ignored) with the model's own
  interpolation, mean and std (``Preprocess.with_input_size(n).to_array(img, "squash")``).
- GT boxes (original pixels, inclusive; first clipped to the image, as camkit's readers do when
  they know the size) are rescaled to the input as the reference's ``resize_bbox``:
  ``int(x * input_size / width)`` per coordinate (truncation, no rounding).
- Each raw map (float32, feature resolution) is resized to the input with
  ``cv2.resize(..., INTER_CUBIC)``, as the reference's ``CAMComputer``.
- MaxBoxAcc / MaxBoxAccV2: the GT class's map, min-max normalised (constant -> zeros), swept over
  ``taus = np.arange(0, 1, tau_step)`` with wsolevaluation's boxes (V1: the largest contour; V2:
  every contour); per tau the best inclusive-pixel IoU over predicted x GT boxes.
- Top-1 / top-5 / GT-known localization: the CVPR16 box (ReLU, divide by the max, keep >= 0.2,
  largest 8-connected component) of the predicted classes' maps and of the GT class's map, IoU >= 0.5
  with any GT box.
- PxAP (datasets with masks, e.g. OpenImages30k): the same min-max normalised GT-class map at input
  size (the reference's ``CAMComputer`` also normalises after the INTER_CUBIC resize) against the
  mask of :func:`camkit.datasets.masks.load_gt_mask` (wsolevaluation's ``get_mask``); per image, the
  fg/bg histogram counts over the bins ``taus + [1, 2, 3]`` (:func:`camkit.metrics.pxap.pxap_bin_counts`).
  The map is float32 as in camkit's box metrics (the reference's is float64; a score within a float32
  rounding of a bin edge could fall in the neighbouring bin).

Box metrics need boxes and PxAP needs masks: an image record carries the box fields only when the
dataset has boxes, and ``pxap`` only when it has masks.

Everything an image contributes is returned as an :class:`~camkit.evaluate.results.ImageRecord`
(stored as one line of ``records.jsonl``), so the summary is a pure function of the records.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from camkit.evaluate.boxes import box_iou_inclusive, cvpr16_box, wsol_map_ious
from camkit.evaluate.results import BoxResult, ImageRecord, PixelCounts
from camkit.metrics.pxap import pxap_bin_counts, pxap_edges
from camkit.normalize import normalize_maps
from camkit.resample import resize_map_cubic

# Decimals kept for IoUs in the records. IoUs are ratios p/q of integer areas with q <= H*W of the
# input, so |IoU - d| >= 1/(10 q) for d in {0.3, 0.5, 0.7} unless equal: 8 decimals keep every
# threshold decision exact for inputs up to ~1000 x 1000 pixels.
IOU_DECIMALS = 8


@dataclass(frozen=True)
class Protocol:
    """What was measured and how; stored in the summary next to the numbers.

    ``input_size``: the square network input; ``tau_step``: the CAM threshold grid
    ``np.arange(0, 1, tau_step)``; ``iou_thresholds``: MaxBoxAccV2's deltas (V1 uses 0.5);
    ``cvpr16_tau``: the CVPR16 box threshold (fraction of the map's max); ``topk``: classes kept
    for top-k localization; ``method``: which maps (``"cam"`` = the exact class activation map);
    ``layer``: its target layer, or the layers whose maps the method fuses (None: automatic);
    ``smooth``: ``"aug"`` / ``"eigen"`` smoothing of the maps (None: off); ``seed``: seeds the methods that
    draw noise or random maps (every batch starts from it, so a batch's maps do not depend on the others).
    """

    input_size: int = 224
    tau_step: float = 0.01
    iou_thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)
    cvpr16_tau: float = 0.2
    topk: int = 5
    method: str = "cam"
    layer: str | tuple[str, ...] | None = None
    smooth: str | None = None
    seed: int = 0
    faithfulness_steps: int = 0  # 0: off; else deletion/insertion curves with this many steps (RISE: 224)
    resize: str = "squash"
    map_upsampling: str = "cv2.resize INTER_CUBIC to the input size"
    gt_box_rescaling: str = "int(x * input_size / image_size) (wsolevaluation resize_bbox)"
    maxboxacc_map: str = "ground-truth class"
    pxap_masks: str = (
        "wsolevaluation get_mask: cv2 IMREAD_GRAYSCALE, cv2.resize INTER_NEAREST to the input, > 0.5, "
        "OR over instances; ignore (255) = ignore mask > 0.5 and not foreground"
    )
    topk_loc_maps: str = "predicted classes (CVPR16 box, tau 0.2, IoU >= 0.5)"
    notes: tuple[str, ...] = field(default=())

    @property
    def taus(self) -> np.ndarray:
        """The threshold grid, float64 ``[T]``, exactly ``np.arange(0, 1, tau_step)``."""
        return np.arange(0, 1, self.tau_step)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["iou_thresholds"] = list(self.iou_thresholds)
        d["notes"] = list(self.notes)
        if isinstance(self.layer, tuple):  # as JSON reads it back, so a resumed run's fingerprint compares equal
            d["layer"] = list(self.layer)
        d["n_taus"] = int(len(self.taus))
        return d

    def _maps_by(self) -> str:
        layers = [self.layer] if isinstance(self.layer, str) else list(self.layer or ())
        extra = [f"layer{'s' if len(layers) > 1 else ''} {' + '.join(layers)}"] if layers else []
        extra += [f"{self.smooth} smoothing"] if self.smooth else []
        return f"'{self.method}'" + (f" ({', '.join(extra)})" if extra else "")

    def describe(self) -> str:
        """One paragraph stating the protocol (printed by the CLI and written in the report)."""
        return (
            f"Images squashed to {self.input_size}x{self.input_size} (aspect ignored, the model's own "
            f"interpolation/mean/std); maps by {self._maps_by()} resized with cv2 INTER_CUBIC to the input; "
            "GT boxes rescaled with int() truncation as wsolevaluation. MaxBoxAcc (V1, largest contour, "
            f"IoU 0.5) and MaxBoxAccV2 (all contours, mean over IoU {', '.join(f'{d:g}' for d in self.iou_thresholds)}) "
            f"on the ground-truth class's min-max normalised map over tau = np.arange(0, 1, {self.tau_step:g}) "
            f"({len(self.taus)} thresholds). Top-1/top-{self.topk} localization on the predicted classes' "
            f"maps and GT-known localization on the GT class's map with the CVPR16 box (tau {self.cvpr16_tau:g} "
            "of the max, largest 8-connected component), IoU >= 0.5, inclusive pixels."
        )

    def describe_pxap(self) -> str:
        """The PxAP part of the protocol (standalone: a mask-only run has no box paragraph)."""
        return (
            f"PxAP (wsolevaluation MaskEvaluator): images squashed to {self.input_size}x{self.input_size}; the "
            f"ground-truth class's {self._maps_by()} map resized with cv2 INTER_CUBIC to the input and min-max "
            "normalised, against masks read as the reference's get_mask (grayscale, "
            "INTER_NEAREST to the input, > 0.5, OR over instances; ignore-mask pixels outside the foreground left "
            f"out); fg/bg pixel histograms over np.arange(0, 1, {self.tau_step:g}) + [1, 2, 3], summed over the split; "
            "PxAP = 100 * sum precision * recall step."
        )


def rescale_gt_boxes(boxes: np.ndarray, width: int, height: int, input_size: int) -> np.ndarray:
    """Original-pixel boxes ``[n, 4]`` -> int64 boxes on the squashed ``input_size`` square.

    Boxes are first clipped to ``[0, W-1] x [0, H-1]`` (camkit's readers do this whenever the layout
    carries the size; doing it here makes layouts without sizes agree), then each coordinate becomes
    ``int(x * input_size / size)`` like wsolevaluation's ``resize_bbox`` (float64, truncation).
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w, h = float(width), float(height)
    x = np.clip(b[:, [0, 2]], 0.0, w - 1) * float(input_size) / w
    y = np.clip(b[:, [1, 3]], 0.0, h - 1) * float(input_size) / h
    return np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1).astype(np.int64)


def _round(values: np.ndarray) -> list[float]:
    """Python floats rounded to :data:`IOU_DECIMALS` (``tolist`` converts float64 exactly, ~10x faster than a loop)."""
    return np.round(np.asarray(values, dtype=np.float64).reshape(-1), IOU_DECIMALS).tolist()


def pack_counts(counts: np.ndarray) -> list[int]:
    """Histogram counts ``[n]`` -> ``[first, c_first, ..., c_last]``: the span between the first and
    last non-zero bin, prefixed by its start (``[]`` when all are zero). Exact and short: a CAM's scores
    at one image's fg (or bg) pixels fill a contiguous range of bins, so the zeros outside it go."""
    c = np.asarray(counts, dtype=np.int64).reshape(-1)
    nz = np.flatnonzero(c)
    if nz.size == 0:
        return []
    return [int(nz[0])] + c[nz[0] : nz[-1] + 1].tolist()


def unpack_counts(packed: list[int], n_bins: int) -> np.ndarray:
    """Inverse of :func:`pack_counts`: int64 ``[n_bins]``."""
    out = np.zeros(n_bins, dtype=np.int64)
    if packed:
        start, values = int(packed[0]), packed[1:]
        if start < 0 or start + len(values) > n_bins:
            raise ValueError(f"packed counts do not fit {n_bins} bins (start {start}, {len(values)} values)")
        out[start : start + len(values)] = values
    return out


def image_record(
    protocol: Protocol,
    maps: np.ndarray,
    classes: np.ndarray,
    scores: np.ndarray,
    gt_boxes_input: np.ndarray | None,
    mask: np.ndarray | None = None,
    *,
    index: int,
    image_id: str,
    width: int,
    height: int,
    backend: str = "auto",
) -> ImageRecord:
    """Everything one image contributes to the summary.

    Args:
        maps: raw maps ``[1 + k, h, w]`` (float32, feature resolution): the GT class's first, then
            the top-k predicted classes' in descending score.
        classes: int ``[1 + k]`` the class of each map (``classes[0]`` is the GT class).
        scores: float ``[k]`` softmax probabilities of the top-k classes.
        gt_boxes_input: int64 ``[n >= 1, 4]`` GT boxes on the input (:func:`rescale_gt_boxes`), or None
            to skip the box metrics (a dataset with masks only).
        mask: uint8 ``[S, S]`` on the input (1 foreground, 0 background, 255 ignore;
            :func:`camkit.datasets.masks.load_gt_mask`), or None to skip PxAP.
        index, image_id, width, height: the image's position in the dataset, id and size (pixels).
        backend: the threshold sweep's implementation (:func:`camkit.evaluate.boxes.wsol_best_ious`).

    Box values are rounded to :data:`IOU_DECIMALS`; PxAP counts are the GT-class map's
    (:func:`camkit.metrics.pxap.pxap_bin_counts`, ``T + 2`` bins) in :func:`pack_counts` form.
    """
    size = protocol.input_size
    classes = np.asarray(classes, dtype=np.int64)
    boxes = None
    unit = None
    if gt_boxes_input is None:
        unit = normalize_maps(resize_map_cubic(maps[0], size), "minmax")
    else:
        boxes, unit = _box_result(protocol, maps, classes, gt_boxes_input, backend, want_unit=mask is not None)
    pixels = None
    if mask is not None:
        assert unit is not None  # asked for above
        if mask.shape != unit.shape:
            raise ValueError(f"mask {mask.shape} must be on the input, {unit.shape}")
        fg, bg = pxap_bin_counts(unit, mask, pxap_edges(protocol.taus))
        pixels = PixelCounts(pack_counts(fg), pack_counts(bg))
    return ImageRecord(
        index=int(index), image_id=image_id, width=int(width), height=int(height), gt_class=int(classes[0]),
        topk=[int(c) for c in classes[1:]], scores=[round(float(s), 6) for s in scores], boxes=boxes, pixels=pixels,
    )


def _box_result(protocol: Protocol, maps: np.ndarray, classes: np.ndarray, gt_boxes_input: np.ndarray, backend: str,
                want_unit: bool = False) -> tuple[BoxResult, np.ndarray | None]:
    """The box values and, with ``want_unit``, the GT class's min-max normalised map at input size (else None).

    CVPR16 boxes are made for the GT class and the top-1 class only. Every localization metric reads
    the GT class's box alone: a top-k guess counts only when its class is the GT class, whose map (the
    same one, so the same box) is ``maps[0]``. The top-1 box is kept for the per-image table; boxes of
    the other top-k classes would change no number and cost a bicubic resize each.
    """
    size = protocol.input_size
    gt_up = resize_map_cubic(maps[0], size)
    gt_box = cvpr16_box(gt_up, protocol.cvpr16_tau)
    top1_box = gt_box if classes[1] == classes[0] else cvpr16_box(resize_map_cubic(maps[1], size), protocol.cvpr16_tau)
    cvpr_boxes = np.stack([gt_box, top1_box]).astype(np.int64)
    cvpr_ious = box_iou_inclusive(cvpr_boxes, gt_boxes_input).max(axis=1)
    v1, v2, unit = wsol_map_ious(gt_up, protocol.taus, gt_boxes_input, backend, want_unit)
    result = BoxResult(gt_boxes=gt_boxes_input.tolist(), cvpr16_boxes=cvpr_boxes.tolist(),
                       cvpr16_ious=_round(cvpr_ious), v1=_round(v1), v2=_round(v2))
    return result, unit
