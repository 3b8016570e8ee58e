"""The batch loop: DataLoader -> batched maps -> per-image records, one batch at a time.

Batches are always the fixed partition ``[0, B), [B, 2B), ...`` of the dataset
(:func:`batch_partition`). A caller picks which of these batches to run (all of them, the ones
holding images a resumed run still needs, or one process's share in a distributed run) and which
images in them need a record; a batch is always run whole, so an image is computed with the same
neighbours every time and its maps are bit-identical (CPU kernels may round differently for another
batch composition).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from camkit.cam.sources import MapSource
from camkit.datasets.sample import LocDataset
from camkit.evaluate.faithfulness import faithfulness_results
from camkit.evaluate.protocol import Protocol, image_record, rescale_gt_boxes
from camkit.evaluate.results import FailedImage, ImageRecord, Record

if TYPE_CHECKING:
    import torch

#: ``progress(done, total)``: images with a record so far (resumed ones included) and in all.
Progress = Callable[[int, int], None]


class SquashTransform:
    """PIL RGB image -> normalised float tensor ``[3, S, S]``, whole image squashed (picklable for workers)."""

    def __init__(self, preprocess) -> None:
        self.preprocess = preprocess

    def __call__(self, image):
        import torch

        return torch.from_numpy(self.preprocess.to_array(image, "squash")[0])


def batch_partition(n_images: int, batch_size: int) -> list[list[int]]:
    """The fixed batches ``[[0, .., B-1], [B, .., 2B-1], ...]`` of ``n_images`` (the last may be short)."""
    return [list(range(s, min(s + batch_size, n_images))) for s in range(0, n_images, batch_size)]


def batches_needing(partition: Sequence[Sequence[int]], todo: set[int]) -> list[int]:
    """Positions in ``partition`` of the batches that hold at least one image of ``todo``."""
    return [b for b, batch in enumerate(partition) if todo.intersection(batch)]


@dataclass(frozen=True)
class LoopOptions:
    """How the loop computes: DataLoader ``workers``; ``boxes`` (every sample has a GT box) and
    ``masks`` (read each sample's mask for PxAP); ``backend`` of the threshold sweep; ``model`` for
    faithfulness (``protocol.faithfulness_steps > 0``)."""

    workers: int = 0
    boxes: bool = True
    masks: bool = False
    backend: str = "auto"
    model: Any = None


def run_batches(
    samples: Sequence,
    batches: Sequence[Sequence[int]],
    todo: set[int],
    protocol: Protocol,
    map_source: MapSource,
    preprocess,
    sink: Callable[[list[Record]], None],
    options: LoopOptions = LoopOptions(),
    progress: Progress | None = None,
    n_done: int = 0,
) -> None:
    """Run ``batches`` (lists of indices into ``samples``, from :func:`batch_partition`) and hand each
    batch's records, sorted by index, to ``sink``; only images in ``todo`` get a record.

    Images (or masks) that cannot be read become :class:`FailedImage` records. ``progress(done, total)``
    is called after each batch, ``done`` counting from ``n_done``. On KeyboardInterrupt the DataLoader's
    workers are shut down before it propagates; the records of finished batches are already in ``sink``.
    """
    import torch

    from camkit.datasets.masks import MaskLoader
    from camkit.datasets.torch_dataset import LocalizationImages, collate_localization

    loader = torch.utils.data.DataLoader(
        LocalizationImages(LocDataset("evaluated", list(samples)), SquashTransform(preprocess),
                           load_mask=MaskLoader(protocol.input_size) if options.masks else None),
        batch_sampler=[list(b) for b in batches],
        num_workers=options.workers,
        collate_fn=collate_localization,
    )
    done = n_done
    it = iter(loader)
    try:
        for batch in it:
            out = _batch_records(batch, samples, todo, protocol, map_source, options)
            sink(out)
            done += len(out)
            if progress is not None:
                progress(done, len(samples))
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:  # stop the workers now, not when the iterator is collected
            shutdown()


def _batch_records(batch: dict, samples: Sequence, todo: set[int], protocol: Protocol, map_source: MapSource,
                   options: LoopOptions) -> list[Record]:
    import torch

    out: list[Record] = [FailedImage(i, samples[i].image_id, message) for i, message in batch["failed"] if i in todo]
    if batch["images"] is not None:
        idx = batch["indices"].tolist()
        gt = torch.tensor([samples[i].class_index for i in idx], dtype=torch.int64)
        classes, scores, maps = map_source(batch["images"], gt)
        faith = None
        if protocol.faithfulness_steps and options.model is not None:
            faith = faithfulness_results(options.model, batch["images"], maps[:, 0], gt, protocol.faithfulness_steps)
        for b, i in enumerate(idx):
            if i not in todo:  # has a record already; computed only to keep the batch whole
                continue
            out.append(_image(samples[i], i, b, batch, protocol, maps, classes, scores, options,
                              faith[b] if faith is not None else None))
    out.sort(key=lambda r: r.index)
    return out


def _image(s, i: int, b: int, batch: dict, protocol: Protocol, maps: np.ndarray, classes: np.ndarray,
           scores: np.ndarray, options: LoopOptions, faith) -> ImageRecord:
    # Boxes are in the annotation's frame: use its size when the layout gives one.
    w = s.width if s.width is not None else batch["widths"][b]
    h = s.height if s.height is not None else batch["heights"][b]
    gt_boxes = rescale_gt_boxes(s.boxes, w, h, protocol.input_size) if options.boxes else None
    rec = image_record(protocol, maps[b], classes[b], scores[b], gt_boxes, batch["masks"][b] if options.masks else None,
                       index=i, image_id=s.image_id, width=int(w), height=int(h), backend=options.backend)
    if faith is not None:
        rec = ImageRecord(**{**rec.__dict__, "faithfulness": faith})
    return rec
