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
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from typing import Any

import cv2
import numpy as np

from camkit.cam.sources import MapSource
from camkit.datasets.sample import LocDataset
from camkit.evaluate.faithfulness import faithfulness_results
from camkit.evaluate.protocol import Protocol, image_record, rescale_gt_boxes
from camkit.evaluate.results import FailedImage, ImageRecord, Record
from camkit.pil_resize import resize_rgb, resize_rgb_planar

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
        )[:, None, :]  # [3, 1, 256]: one cv2.LUT table per channel
        self._planes = self._table.reshape(3, 256)  # the same values, as the compiled kernel reads them
        self._interleaved = np.ascontiguousarray(self._planes.T, dtype=np.float32)[None]  # [1, 256, 3]: one 3-channel cv2.LUT table

    def __call__(self, image, out=None):
        """The tensor ``[3, S, S]``; with ``out`` (a float32 CPU tensor of that shape, C-contiguous or a
        channels-last batch's row, e.g. a row of a batch), written into it and ``out`` returned."""
        import torch

        if out is None:
            return torch.from_numpy(self.array(image))
        self.array(image, out.numpy())
        return out

    @property
    def shape(self) -> tuple[int, int, int]:
        """The output's shape, ``(3, S, S)``."""
        return (3, self.preprocess.crop, self.preprocess.crop)

    def array(self, image, out: np.ndarray | None = None) -> np.ndarray:
        """float32 ``[3, S, S]`` (see the class docstring): C-contiguous, or in ``out`` when given, which may
        also be laid out channels-last (``out.transpose(1, 2, 0)`` C-contiguous: a row of a channels-last batch)."""
        p = self.preprocess
        size = p.resized_size(p.geometry(image.width, image.height, "squash"))
        # load_image always gives RGB; anything else (or a model whose resize is not the crop) takes the
        # general path
        if image.mode != "RGB" or size != (p.crop, p.crop):
            general = p.to_array(image, "squash")[0]
            if out is None:
                return general
            out[...] = general
            return out
        if out is None:
            out = np.empty(self.shape, dtype=np.float32)
        elif not out.flags.c_contiguous and not out.transpose(1, 2, 0).flags.c_contiguous:
            out[...] = self.array(image)  # neither planes nor channels-last: made dense, then copied
            return out
        # one call with the GIL released, into planes or (a channels-last batch's row) interleaved
        if resize_rgb_planar(image, size, p.interpolation, self._planes, out):
            return out
        pixels = resize_rgb(image, size, p.interpolation)  # [S, S, 3] uint8, Pillow's pixels
        if not out.flags.c_contiguous:  # channels-last (checked above): the pixels interleaved, as Pillow gives them
            cv2.LUT(pixels, self._interleaved, dst=out.transpose(1, 2, 0))
            return out
        # cv2.LUT reads the table (any depth) per uint8 pixel into out: ~3x faster than np.take
        for c, plane in enumerate(cv2.split(pixels)):
            cv2.LUT(plane, self._table[c], dst=out[c])
        return out


def batch_partition(n_images: int, batch_size: int) -> list[list[int]]:
    """The fixed batches ``[[0, .., B-1], [B, .., 2B-1], ...]`` of ``n_images`` (the last may be short)."""
    return [list(range(s, min(s + batch_size, n_images))) for s in range(0, n_images, batch_size)]


def batches_needing(partition: Sequence[Sequence[int]], todo: set[int]) -> list[int]:
    """Positions in ``partition`` of the batches that hold at least one image of ``todo``."""
    return [b for b, batch in enumerate(partition) if todo.intersection(batch)]


@dataclass(frozen=True)
class LoopOptions:
    """How the loop computes: DataLoader ``workers`` (0: the images are read on the helper threads);
    ``boxes`` (every sample has a GT box) and ``masks`` (read each sample's mask for PxAP); ``backend`` of
    the threshold sweep; ``model`` for faithfulness (``protocol.faithfulness_steps > 0``); ``helpers``:
    threads for the per-image work between forwards (None: ``torch.get_num_threads()``, the cores the
    forward uses; the records are the same for any number); ``channels_last``: the helper threads read the
    images into channels-last batches (the DataLoader's workers collate them so) (for a model whose first convolution takes them without a reorder,
    :func:`camkit.models.memory_format.takes_channels_last_input`; the same values and maps); ``keep_map(record, gt_map)``: called on the
    calling thread with each image's record and raw GT-class map ``[h, w]`` once the batch is written
    (:class:`camkit.evaluate.gallery.GalleryMaps` keeps the few a gallery will show)."""

    workers: int = 0
    boxes: bool = True
    masks: bool = False
    backend: str = "auto"
    model: Any = None
    helpers: int | None = None
    channels_last: bool = False
    keep_map: Callable[[ImageRecord, np.ndarray], None] | None = None


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
    workers and the helper threads are stopped before it propagates; the records of finished batches
    are already in ``sink``.

    The work alternates between two phases. The forward of a batch has the CPU to itself: its intra-op
    threads wait for each other at every layer, so anything running beside them (box work, decoding)
    slows it by more than that work's own cost. Then the helper threads do the per-image work: this
    batch's boxes and, with ``workers=0``, reading and squashing the next batch's images; the C kernels,
    OpenCV and Pillow release the GIL, so the helpers use every core. ``sink`` and ``progress`` are
    called from the calling thread, in batch order.
    """
    import torch

    from camkit.datasets.masks import MaskLoader
    from camkit.datasets.torch_dataset import LocalizationImages, collate_localization

    items = LocalizationImages(LocDataset("evaluated", list(samples)), SquashTransform(preprocess),
                               load_mask=MaskLoader(protocol.input_size) if options.masks else None)
    parts = [list(b) for b in batches]
    n_helpers = options.helpers if options.helpers is not None else torch.get_num_threads()
    helpers = ThreadPoolExecutor(max(1, n_helpers), thread_name_prefix="camkit-helper")
    loader = None
    if options.workers:
        # the workers lay the batches out for the model (a copy there instead of a reorder here)
        loader = torch.utils.data.DataLoader(items, batch_sampler=parts, num_workers=options.workers,
                                             collate_fn=partial(collate_localization, channels_last=options.channels_last))
    it = iter(loader) if loader is not None else _HelperReader(helpers, items, parts, options.channels_last)
    done = n_done
    # OpenCV's own thread pool would split each map resize across cores, for maps too small to gain
    # from it; the helpers already use every core (the pixels are the same)
    cv2_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for batch in it:
            m = _batch_maps(batch, samples, todo, protocol, map_source, options)
            jobs = [helpers.submit(_image, samples[i], i, b, m, protocol, options) for b, i in enumerate(m.indices)]
            if isinstance(it, _HelperReader):
                # queued after the boxes: the helpers go on reading the next batch while this thread writes
                # the records
                it.read_ahead()
            images = _results(jobs)
            failed: list[Record] = [FailedImage(i, samples[i].image_id, message) for i, message in m.failed]
            out = sorted([*failed, *images], key=lambda r: r.index)
            sink(out)
            if options.keep_map is not None:
                for b, record in enumerate(images):
                    options.keep_map(record, m.maps[b, 0])
            done += len(out)
            if progress is not None:
                progress(done, len(samples))
    finally:
        cv2.setNumThreads(cv2_threads)
        helpers.shutdown(wait=True, cancel_futures=True)  # a batch being boxed is dropped: resume redoes it
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:  # stop the workers now, not when the iterator is collected
            shutdown()


def _results(jobs: list) -> list:
    """The jobs' results in order, waking the calling thread once when all are done: waiting on each in turn
    would wake it (and take the GIL and a helper's core for a moment) after every job."""
    wait(jobs)
    return [job.result() for job in jobs]


class _HelperReader:
    """The collated batches of ``batches`` (``items``: a :class:`LocalizationImages` with the squash
    transform), each image read on the ``helpers`` threads straight into its row of the batch tensor, so
    nothing is stacked on the calling thread. The first batch is read at once; each later one when
    :meth:`read_ahead` is called (after the previous batch's forward), so the reading runs beside the box
    work, not beside the forward."""

    def __init__(self, helpers: ThreadPoolExecutor, items, batches: list[list[int]], channels_last: bool = False) -> None:
        import torch

        self.helpers, self.items, self.batches = helpers, items, batches
        self._layout = torch.channels_last if channels_last else torch.contiguous_format
        self._next = 0
        self._pending: list = []
        self._images: Any = None  # the batch tensor being read into
        self.read_ahead()

    def read_ahead(self) -> None:
        """Start reading the next batch's images (no-op when they are being read or none are left)."""
        import torch

        if not self._pending and self._next < len(self.batches):
            indices = self.batches[self._next]
            # a new tensor per batch: the previous one may still be referenced by its batch's records' work
            images = torch.empty((len(indices), *self.items.transform.shape), dtype=torch.float32,
                                 memory_format=self._layout)
            self._pending = [self.helpers.submit(self.items.read, i, images[b]) for b, i in enumerate(indices)]
            self._images = images

    def __iter__(self) -> _HelperReader:
        return self

    def __next__(self) -> dict:
        from camkit.datasets.torch_dataset import collate_localization

        if self._next >= len(self.batches):
            raise StopIteration
        self.read_ahead()
        batch = collate_localization(_results(self._pending), self._images)
        self._pending, self._images = [], None
        self._next += 1
        return batch


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
