"""The best and worst images of a run by GT-known IoU, and their gallery panels.

The loop offers every image's GT-class map to :class:`GalleryMaps`, which keeps only the maps that can
still end up in a gallery (the ``n`` best and ``n`` worst so far, by the same ranking as
:func:`select_extremes`), so the galleries need no second forward for the images this process computed.
Images it did not compute (resumed from an earlier run, or computed by another rank) are forwarded again
by :func:`gallery_panels`.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from camkit.cam.sources import MapSource
from camkit.evaluate.protocol import Protocol
from camkit.evaluate.results import ImageRecord, Record, as_record
from camkit.resample import resize_map_cubic

__all__ = ["GalleryMaps", "gallery_panels", "select_extremes"]


def _ranked(r: Record | dict) -> ImageRecord | None:
    """The record as a slim ImageRecord when it has box values (failures and mask-only records have none)."""
    r = as_record(r)
    if not isinstance(r, ImageRecord) or r.boxes is None:
        return None
    return r


def select_extremes(records: Iterable[Record | dict], n: int) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """The ``n`` best and ``n`` worst records by GT-known IoU (ties by index), streaming; records
    without box values (failures, mask-only datasets) are left out."""
    if n <= 0:
        return [], []
    best: list = []
    worst: list = []
    for rec in records:
        r = _ranked(rec)
        if r is None:
            continue
        iou, i = r.boxes.cvpr16_ious[0], r.index  # type: ignore[union-attr]
        slim = ImageRecord(r.index, r.image_id, r.width, r.height, r.gt_class, r.topk, r.scores, r.boxes)
        heapq.heappush(best, (iou, -i, slim))
        if len(best) > n:
            heapq.heappop(best)
        heapq.heappush(worst, (-iou, i, slim))
        if len(worst) > n:
            heapq.heappop(worst)
    best_sorted = [t[2] for t in sorted(best, key=lambda t: (-t[0], -t[1]))]
    worst_sorted = [t[2] for t in sorted(worst, key=lambda t: (-t[0], t[1]))]
    return best_sorted, worst_sorted


class GalleryMaps:
    """GT-class maps of the images that may still be among the ``n`` best or worst (by :func:`select_extremes`'
    ranking): at most ``2 n`` maps, whatever the number of images. ``offer`` is called from one thread.

    Any image :func:`select_extremes` picks over the whole run and that was offered here is kept: it ranks
    among the ``n`` best (or worst) of every subset holding it, so of the offered images too.
    """

    def __init__(self, n: int) -> None:
        self.n = int(n)
        self._best: list[tuple[float, int]] = []  # (iou, -index): the smallest is dropped first
        self._worst: list[tuple[float, int]] = []  # (-iou, index)
        self._maps: dict[int, np.ndarray] = {}

    def offer(self, record: Record, gt_map: np.ndarray) -> None:
        """Keep ``gt_map`` (the record's GT-class map, raw, ``[h, w]``) if ``record`` ranks among the kept."""
        r = _ranked(record)
        if r is None or self.n <= 0:
            return
        iou, i = r.boxes.cvpr16_ious[0], r.index  # type: ignore[union-attr]
        for heap, key in ((self._best, (iou, -i)), (self._worst, (-iou, i))):
            heapq.heappush(heap, key)
            if len(heap) > self.n:
                heapq.heappop(heap)
        alive = {-k[1] for k in self._best} | {k[1] for k in self._worst}
        if i in alive:
            self._maps[i] = np.array(gt_map, dtype=np.float32, copy=True)  # not a view of the batch's maps
        for j in [j for j in self._maps if j not in alive]:
            del self._maps[j]

    @property
    def maps(self) -> Mapping[int, np.ndarray]:
        """Dataset index -> kept GT-class map."""
        return self._maps


def gallery_panels(chosen: list[ImageRecord], samples: Sequence, source: MapSource, preprocess, protocol: Protocol,
                   names: Sequence[str] | None, kept: GalleryMaps | None = None) -> list[dict[str, Any]]:
    """The panels of ``chosen``: squashed photo, GT-class map at input size, boxes, caption. Maps ``kept`` from
    the loop are used as they are; the others are computed again (one batch)."""
    import torch

    from camkit.io import load_image

    arrays = [preprocess.to_array(load_image(samples[r.index].image_path), "squash")[0] for r in chosen]
    maps: dict[int, np.ndarray] = dict(kept.maps) if kept is not None else {}
    missing = [b for b, r in enumerate(chosen) if r.index not in maps]
    if missing:
        x = torch.from_numpy(np.stack([arrays[b] for b in missing]))
        gt = torch.tensor([chosen[b].gt_class for b in missing], dtype=torch.int64)
        _, _, computed = source(x, gt)
        maps.update({chosen[b].index: computed[j, 0] for j, b in enumerate(missing)})
    mean = np.asarray(preprocess.mean, np.float32)[:, None, None]
    std = np.asarray(preprocess.std, np.float32)[:, None, None]
    panels = []
    for b, r in enumerate(chosen):
        assert r.boxes is not None
        rgb = np.clip((arrays[b] * std + mean) * 255.0 + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)
        gt_name = names[r.gt_class] if names and r.gt_class < len(names) else str(r.gt_class)
        panels.append({
            "image": rgb,
            "cam": resize_map_cubic(maps[r.index], protocol.input_size),
            "gt_boxes": r.boxes.gt_boxes,
            "pred_box": r.boxes.cvpr16_boxes[0],
            "title": f"{r.image_id}\n{gt_name.split(',')[0][:24]}  IoU {r.boxes.cvpr16_ious[0]:.2f}",
        })
    return panels
