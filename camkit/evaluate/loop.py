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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

from camkit.cam.sources import MapSource
from camkit.datasets.sample import LocDataset
from camkit.evaluate.faithfulness import faithfulness_results
from camkit.evaluate.protocol import Protocol, image_record, rescale_gt_boxes
from camkit.evaluate.results import FailedImage, ImageRecord, Record

#: ``progress(done, total)``: images with a record so far (resumed ones included) and in all.
Progress = Callable[[int, int], None]


class SquashTransform:
    """PIL RGB image -> normalised float tensor ``[3, S, S]``, whole image squashed (picklable for workers).

    Bit-identical to ``preprocess.to_array(image, "squash")``: the same PIL resize, then the per-channel
    normalisation ``(v / 255 - mean) / std`` (float32) read from a 256-entry table per channel. A uint8
    pixel has 256 values, so the table holds every result the arithmetic can give, computed by the same
    float32 operations; one lookup pass replaces five float passes over the image.
    """

    def __init__(self, preprocess) -> None:
        self.preprocess = preprocess
        levels = np.arange(256, dtype=np.float32)[:, None]
        self._table = np.ascontiguousarray(
            ((levels / 255.0 - np.asarray(preprocess.mean, np.float32)) / np.asarray(preprocess.std, np.float32)).T
        )  # [3, 256]

    def __call__(self, image):
        import torch

        return torch.from_numpy(self.array(image))

    def array(self, image) -> np.ndarray:
        """float32 ``[3, S, S]``, C-contiguous (see the class docstring)."""
        p = self.preprocess
        if image.mode != "RGB":  # load_image always gives RGB; anything else takes the general path
            return p.to_array(image, "squash")[0]
        size = p.resized_size(p.geometry(image.width, image.height, "squash"))
        if size != (p.crop, p.crop):
            return p.to_array(image, "squash")[0]
        pixels = np.asarray(image.resize(size, Image.Resampling[p.interpolation.upper()]))  # [S, S, 3] uint8
        out = np.empty((3, p.crop, p.crop), dtype=np.float32)
        for c in range(3):
            np.take(self._table[c], pixels[:, :, c], out=out[c])
        return out


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
    faithfulness (``protocol.faithfulness_steps > 0``); ``overlap``: box a batch on a helper thread while
    the next one is forwarded (same records either way)."""

    workers: int = 0
    boxes: bool = True
    masks: bool = False
    backend: str = "auto"
    model: Any = None
    overlap: bool = True


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

    With ``options.overlap`` a batch's boxes are computed on a helper thread while the next batch is
    forwarded; ``sink`` and ``progress`` are still called from the calling thread, in batch order. The
    helpers (that thread and the DataLoader workers) run :data:`HELPER_NICENESS` steps below the forward.
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
        worker_init_fn=_helper_priority,
    )
    done = n_done
    it = iter(loader)
    # The per-image box work of a batch runs on one helper thread while the main thread forwards the
    # next batch: the sweep kernel, OpenCV and the forward release the GIL. The main thread hands the
    # records to ``sink`` in batch order; a batch counts as finished only once they are written.
    boxes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="camkit-boxes", initializer=_helper_priority) if options.overlap else None
    pending: Future | None = None
    # OpenCV's own thread pool would run the map resizes beside the forward at full priority, for maps too
    # small to gain from it; one thread gives the same pixels
    cv2_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for batch in it:
            computed = _batch_maps(batch, samples, todo, protocol, map_source, options)
            job = boxes.submit(_batch_records, computed, samples, protocol, options) if boxes is not None else None
            if pending is not None:
                done = _hand_over(pending.result(), sink, progress, done, len(samples))
            pending = job
            if job is None:
                done = _hand_over(_batch_records(computed, samples, protocol, options), sink, progress, done, len(samples))
        if pending is not None:
            done = _hand_over(pending.result(), sink, progress, done, len(samples))
            pending = None
    finally:
        cv2.setNumThreads(cv2_threads)
        if boxes is not None:
            if pending is not None:
                pending.cancel()
            boxes.shutdown(wait=True)  # a batch being boxed is dropped, not written: resume redoes it
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:  # stop the workers now, not when the iterator is collected
            shutdown()


#: How much lower than the forward the helpers (DataLoader workers, the box thread) run, in nice steps.
#: They need a fraction of the CPU the forward does; at equal priority they preempt its intra-op threads
#: mid-layer and the others wait for them at the layer's barrier. Lower, they take the cycles the forward
#: leaves idle (its serial stretches between layers) and the batches they prefetch absorb the delays.
HELPER_NICENESS = 10


def _helper_priority(*_: object) -> None:
    """Lower the calling thread's priority by :data:`HELPER_NICENESS` (Linux: a thread's own nice value;
    elsewhere, or without permission, nothing changes)."""
    import os
    import threading

    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + HELPER_NICENESS))
    except (AttributeError, OSError):
        pass


def _hand_over(records: list[Record], sink: Callable[[list[Record]], None], progress: Progress | None, done: int,
               total: int) -> int:
    sink(records)
    done += len(records)
    if progress is not None:
        progress(done, total)
    return done


@dataclass(frozen=True)
class _BatchMaps:
    """What a batch's records are made from, without the input images: the failed items, and for the
    readable images their dataset indices, sizes, masks, classes, scores, maps and faithfulness."""

    failed: list
    indices: list[int]
    widths: list
    heights: list
    masks: list
    classes: np.ndarray
    scores: np.ndarray
    maps: np.ndarray
    faith: list | None = None


def _batch_maps(batch: dict, samples: Sequence, todo: set[int], protocol: Protocol, map_source: MapSource,
                options: LoopOptions) -> _BatchMaps:
    """The network's part of a batch (maps, scores, faithfulness); only images in ``todo`` are kept."""
    import torch

    failed = [(i, message) for i, message in batch["failed"] if i in todo]
    if batch["images"] is None:
        none = np.empty(0)
        return _BatchMaps(failed, [], [], [], [], none, none, none)
    idx = batch["indices"].tolist()
    gt = torch.tensor([samples[i].class_index for i in idx], dtype=torch.int64)
    classes, scores, maps = map_source(batch["images"], gt)
    faith = None
    if protocol.faithfulness_steps and options.model is not None:
        faith = faithfulness_results(options.model, batch["images"], maps[:, 0], gt, protocol.faithfulness_steps)
    keep = [b for b, i in enumerate(idx) if i in todo]  # the others have a record already: computed only
    # to keep the batch whole
    return _BatchMaps(failed, [idx[b] for b in keep], [batch["widths"][b] for b in keep],
                      [batch["heights"][b] for b in keep], [batch["masks"][b] for b in keep],
                      classes[keep], scores[keep], maps[keep], [faith[b] for b in keep] if faith is not None else None)


def _batch_records(m: _BatchMaps, samples: Sequence, protocol: Protocol, options: LoopOptions) -> list[Record]:
    """A batch's records, sorted by index (:func:`_image` for each readable image)."""
    out: list[Record] = [FailedImage(i, samples[i].image_id, message) for i, message in m.failed]
    for b, i in enumerate(m.indices):
        out.append(_image(samples[i], i, b, m, protocol, options))
    out.sort(key=lambda r: r.index)
    return out


def _image(s, i: int, b: int, m: _BatchMaps, protocol: Protocol, options: LoopOptions) -> ImageRecord:
    # Boxes are in the annotation's frame: use its size when the layout gives one.
    w = s.width if s.width is not None else m.widths[b]
    h = s.height if s.height is not None else m.heights[b]
    gt_boxes = rescale_gt_boxes(s.boxes, w, h, protocol.input_size) if options.boxes else None
    rec = image_record(protocol, m.maps[b], m.classes[b], m.scores[b], gt_boxes, m.masks[b] if options.masks else None,
                       index=i, image_id=s.image_id, width=int(w), height=int(h), backend=options.backend)
    if m.faith is not None:
        rec = ImageRecord(**{**rec.__dict__, "faithfulness": m.faith[b]})
    return rec
