"""``evaluate(dataset, model, ...)``: check the options, run the batch loop into the run directory,
summarise the records, write the outputs.

The parts, each its own module: :mod:`.rundir` (lock, fingerprint, resume), :mod:`.loop` (the fixed
batch partition -> records), :mod:`.summary` (records -> summary), :mod:`.outputs` (files), and the
map sources in :mod:`camkit.cam.sources`. Memory does not grow with the number of images: records
are appended to ``records.jsonl`` as each batch finishes and the summary streams them back.

Which metrics apply follows the dataset: box metrics when every image has a GT box, PxAP when every
image has masks (OpenImages30k; a missing or unreadable mask fails its image like an unreadable photo).

In a process group (started by torchrun, or initialised by the caller: :func:`camkit.distributed.current`)
the batches still to do are dealt out to the ranks in turn (:func:`camkit.distributed.shard`); each rank
runs its batches whole, exactly as one process would, and appends to its own records file; rank 0 holds
the run directory, merges the files in dataset order and writes every output; every rank returns the
summary. A failure on any rank is raised on every rank (:meth:`camkit.distributed.Group.run`).
"""

from __future__ import annotations

import gc
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, cast

from camkit.cam.sources import MapSource, make_map_source
from camkit.datasets.sample import LocDataset
from camkit.distributed import Group, current
from camkit.errors import DatasetError, ParameterError, RunDirectoryError
from camkit.evaluate.gallery import GalleryMaps
from camkit.evaluate.loop import (
    LoopOptions,
    Progress,
    batch_partition,
    batches_needing,
    run_batches,
)
from camkit.evaluate.outputs import finish_run
from camkit.evaluate.progress import RunProgress
from camkit.evaluate.protocol import Protocol
from camkit.evaluate.results import Record
from camkit.evaluate.rundir import RUN_NAME, RunDirectory, ids_digest, run_fingerprint
from camkit.localize.sweep import resolve_backend
from camkit.models.batchnorm_fold import fold_batchnorm
from camkit.models.memory_format import takes_channels_last_input

if TYPE_CHECKING:
    from camkit.models.cam_model import CAMModel

#: The finest threshold step: wsolevaluation's training code sweeps ``np.arange(0, 1, 0.001)``; a finer
#: grid changes no box (the map is uint8, 256 levels) but multiplies the records' size.
MIN_TAU_STEP = 0.001
#: Smallest input: one feature cell for a stride-32 network.
MIN_INPUT_SIZE = 32
#: Largest input: IoUs are stored with 8 decimals, which keeps every IoU-threshold decision exact while
#: the input has fewer than ~2e7 pixels (see ``protocol.IOU_DECIMALS``); 4096 px a side is well inside.
MAX_INPUT_SIZE = 4096


def check_options(input_size: int, batch_size: int, workers: int, tau_step: float, limit: int | None,
                  gallery_size: int, faithfulness_steps: int) -> None:
    """Raise :class:`ParameterError` (one line, naming the parameter) for an option out of its range."""
    def positive_int(name: str, v, low: int) -> None:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ParameterError(name, v, f"must be an integer >= {low}")

    positive_int("batch_size", batch_size, 1)
    positive_int("workers", workers, 0)
    positive_int("gallery_size", gallery_size, 0)
    positive_int("faithfulness_steps", faithfulness_steps, 2)
    if limit is not None:
        positive_int("limit", limit, 1)
    if isinstance(input_size, bool) or not isinstance(input_size, int):
        raise ParameterError("input_size", input_size, "must be an integer number of pixels (e.g. 224)")
    if input_size < MIN_INPUT_SIZE:
        raise ParameterError("input_size", input_size, f"is too small: use {MIN_INPUT_SIZE} or more (e.g. 224)")
    if input_size > MAX_INPUT_SIZE:
        raise ParameterError("input_size", input_size, f"is too large: use {MAX_INPUT_SIZE} or less (e.g. 224)")
    if not MIN_TAU_STEP <= tau_step < 1:
        raise ParameterError("tau_step", tau_step, f"is out of range: use a step in [{MIN_TAU_STEP:g}, 1) "
                             "(wsolevaluation: 0.01, or 0.001 in its training code)")


def _model_info(model, batchnorm_folded: bool = False) -> dict:
    info = {"name": getattr(model, "name", type(model).__name__), "weights": getattr(model, "weights_name", None),
            "cam_kind": getattr(model, "cam_kind", None), "num_classes": int(getattr(model, "num_classes", 0) or 0)}
    # How the network is computed changes its maps by float rounding, so a resumed run must compute it the same
    # way. Each key is absent for the plain network, so runs recorded before camkit did this still match one.
    if takes_channels_last_input(model):
        info["layout"] = "channels_last"
    if batchnorm_folded:
        info["batchnorm"] = "folded"
    return info


def _check_dataset(dataset: LocDataset, samples: list, model) -> tuple[bool, bool]:
    """Which metric families apply: (every image has a box, every image has a mask)."""
    if not samples:
        raise DatasetError(f"{dataset.name}: no images to evaluate.")
    n_classes = getattr(model, "num_classes", None)
    bad = [s for s in samples if n_classes is not None and not 0 <= s.class_index < n_classes]
    if bad:
        raise DatasetError(f"{bad[0].image_id}: class {bad[0].class_index} is outside the model's {n_classes} classes "
                           f"({len(bad)} image(s)); use labels of the model's class order.")
    has_boxes = all(len(s.boxes) for s in samples)
    has_masks = all(s.mask_paths for s in samples)
    if not has_boxes and not has_masks:
        empty = [s for s in samples if len(s.boxes) == 0]
        raise DatasetError(f"{empty[0].image_id}: no ground-truth box ({len(empty)} image(s)) and not every image has a "
                           "mask; box metrics need a box on every image, PxAP a mask on every image.")
    return has_boxes, has_masks


def evaluate(
    dataset: LocDataset,
    model: CAMModel | str,
    input_size: int = 224,
    batch_size: int = 32,
    workers: int = 0,
    tau_step: float = 0.01,
    limit: int | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    method: str | None = None,
    progress: Progress | None = None,
    *,
    layer: str | Sequence[str] | None = None,
    smooth: str | None = None,
    seed: int = 0,
    gallery_size: int = 6,
    map_source: MapSource | None = None,
    faithfulness: bool = False,
    faithfulness_steps: int = 224,
    backend: str = "auto",
) -> dict:
    """Evaluate localization of ``model`` on ``dataset`` (see :mod:`camkit.evaluate.protocol`).

    Args:
        dataset: a :class:`LocDataset` from any camkit reader (boxes in original pixels).
        model: a CAMModel, or a registry name (loaded with its default weights).
        input_size: the square input the photos are squashed to (32..4096 px, and small enough for memory).
        batch_size: images per forward (>= 1); the batches are the fixed partition resume relies on.
        workers: 0 (default) reads the images on the loop's helper threads between forwards, which is
            fastest when the forward runs on the CPU; N > 0 gives N DataLoader processes reading ahead
            while the forward runs (for a GPU forward). The records are the same either way.
        tau_step: CAM threshold grid ``np.arange(0, 1, tau_step)``, ``0.001 <= tau_step < 1``.
        limit: evaluate only the first ``limit`` images.
        out_dir: write ``records.jsonl`` (as it goes), ``summary.json``, ``per_image.csv``, curves,
            galleries and ``report.md`` there (:mod:`camkit.evaluate.outputs`), holding the folder's lock
            for the whole run. None: nothing is written.
        resume: continue the run in ``out_dir`` (same dataset, model and options), evaluating only
            the images without a record.
        method: ``"cam"`` (exact CAM) or a :mod:`camkit.cam.methods` name; None: ``"cam"`` where plain CAM
            applies, else Grad-CAM (:func:`camkit.cam.methods.default_method`).
        layer: the method's target layer, or several layers whose maps it fuses; None: automatic.
        smooth: ``"aug"`` or ``"eigen"`` smoothing of the maps; None: off.
        seed: seeds the methods that draw noise or random maps (each batch starts from it).
        progress: called as ``progress(done, total)`` after each batch (images with a record so far).
        map_source: replaces the maps entirely (see :data:`camkit.cam.sources.MapSource`); ``method``
            then only labels them.
        faithfulness: also measure deletion/insertion AUC and average drop / increase in confidence of the
            GT-class maps (``faithfulness_steps`` deletion/insertion steps; ~2 x steps forwards per image).
        backend: the threshold sweep's implementation: ``"auto"``, ``"native"`` or ``"numpy"`` (same numbers).

    Returns:
        The summary dict (see :func:`camkit.evaluate.summary.summarize`) plus ``sweep_backend`` (which
        sweep ran), ``faithfulness`` (with ``faithfulness=True``) and ``run`` (timing, output files),
        which, unlike the metrics, varies between runs.

    Raises:
        ParameterError: an option out of range (before any work). RunDirectoryError: ``out_dir`` is in use
        by another run, or holds another run's results. DatasetError: no image could be read.
    """
    check_options(input_size, batch_size, workers, tau_step, limit, gallery_size, faithfulness_steps)
    if progress is not None and not callable(progress):
        if progress is not False:
            raise ParameterError("progress", progress, "must be None or a callable progress(done, total)")
        progress = None
    sweep_backend = resolve_backend(backend)
    if isinstance(model, str):
        from camkit.models import load_model

        model = cast("CAMModel", load_model(model))  # the registry types its models loosely (Any)
    from camkit.cam.methods import (
        check_smooth,
        default_method,
        layer_modules,
        layer_spec,
        method_info,
        reads_layer_and_logits_only,
    )
    from camkit.limits import check_input_size

    layer, smooth = layer_spec(layer), check_smooth(smooth)
    method = method_info(method).name if method is not None else default_method(model, layer)
    plain_cam = method == "cam" and layer is None and smooth is None
    check_input_size(model, input_size, batch_size, gradients=not plain_cam and map_source is None)
    samples = list(dataset.samples[: limit if limit is not None else None])
    has_boxes, has_masks = _check_dataset(dataset, samples, model)
    protocol = Protocol(input_size=input_size, tau_step=tau_step, method=method, layer=layer, smooth=smooth, seed=int(seed),
                        faithfulness_steps=int(faithfulness_steps) if faithfulness else 0)
    # the maps (and their faithfulness curves) are computed on an inference copy with the batch norms folded (same
    # function; Lite0's 1.2x faster) by plain CAM and by the methods that read only their target layers and the
    # logits (those layers left unfolded); the model itself stays as given
    folded = None
    if map_source is None and (plain_cam or reads_layer_and_logits_only(method)):
        folded = fold_batchnorm(model, input_size, keep=layer_modules(model, layer))
    model_info = _model_info(model, batchnorm_folded=folded is not None)
    dataset_info = {"name": dataset.name, "source": dataset.source, "n_images": len(samples), "limit": limit,
                    "ids_sha1": ids_digest(samples),
                    "metrics": [m for m, on in (("boxes", has_boxes), ("pxap", has_masks)) if on]}
    if dataset.origin:  # where the photos are, for `camkit view` and report.html later (not part of resume's check)
        dataset_info.update({k: dataset.origin.get(k) for k in ("kind", "root", "annotations", "split")})
    preprocess = model.preprocess.with_input_size(input_size)
    source = map_source or make_map_source(folded or model, method, protocol.topk, layer, smooth=smooth, seed=int(seed))
    # the loop keeps the maps of the images the galleries may show, so they are not forwarded twice
    gallery_maps = GalleryMaps(gallery_size) if out_dir is not None and gallery_size > 0 else None
    options = LoopOptions(workers=workers, boxes=has_boxes, masks=has_masks, backend=sweep_backend, model=folded or model,
                          channels_last=model_info.get("layout") == "channels_last",  # decided once, in _model_info
                          keep_map=gallery_maps.offer if gallery_maps is not None else None)
    with _long_lived_objects_frozen():
        partition = batch_partition(len(samples), batch_size)

        group = current()
        if not group.is_main:
            progress = None  # rank 0 reports everyone's progress
        if group.device != "cpu":  # a CUDA process group: this rank computes on its own GPU (cuda:LOCAL_RANK)
            model.to(group.device)
            if folded is not None:
                folded.to(group.device)
            source = _inputs_to(source, group.device)

        def run(todo: set[int], sink, n_done: int, report: Progress | None) -> None:
            batches = group.share([partition[b] for b in batches_needing(partition, todo)])
            run_batches(samples, batches, todo, protocol, source, preprocess, sink, options, report, n_done)

        t0 = time.perf_counter()
        finish_args = (samples, protocol, model_info, dataset_info, sweep_backend, t0)
        outputs_args = (source, preprocess, dataset, model, gallery_size, group.world_size)
        if out_dir is None:
            memory: list[Record] = []
            group.run(lambda: run(set(range(len(samples))), memory.extend, 0, progress))
            if group.distributed:
                memory = sorted((r for part in group.all_gather(memory) for r in part), key=lambda r: r.index)
            return finish_run(None, memory.__iter__, *finish_args, 0, *outputs_args, gallery_maps=gallery_maps)
        rundir = RunDirectory(out_dir, run_fingerprint(protocol, model_info, dataset_info, batch_size), resume,
                              world_size=group.world_size)
        group.on_main(rundir.open)
        try:
            done = set(group.on_main(lambda: sorted(rundir.done_indices())))
            group.run(lambda: _check_visible(rundir, group))
            todo = set(range(len(samples))) - done

            # Rank 0's count of everyone's records runs until every rank has finished (the gather in group.run).
            with RunProgress(progress, rundir, len(samples), group) as report:

                def work() -> None:
                    with rundir.writer(group.rank) as writer:
                        run(todo, lambda recs: writer.write(r.to_dict() for r in recs), len(done), report)

                group.run(work)

            def finish() -> dict:
                rundir.merge()
                return finish_run(Path(out_dir), rundir.records, *finish_args, len(done), *outputs_args, gallery_maps=gallery_maps)

            return group.on_main(finish)
        finally:
            if group.is_main:
                rundir.close()


@contextmanager
def _long_lived_objects_frozen() -> Iterator[None]:
    """``gc.freeze()`` for the run: the objects alive when it starts (modules, the model, ~200,000 of them) are
    left out of the collector's full passes, which a long run triggers every few seconds (0.1 s each here);
    unfrozen after, so they are collected as before. Left alone when the caller has frozen objects itself."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _inputs_to(source: MapSource, device: str) -> MapSource:
    """``source`` fed on ``device``: the DataLoader's CPU batches are moved there first (maps come back as numpy)."""

    def on_device(x, gt):
        return source(x.to(device, non_blocking=True), gt.to(device))

    return on_device


def _check_visible(rundir: RunDirectory, group: Group) -> None:
    """Every rank must see the folder rank 0 prepared: the records files are merged from there."""
    if group.distributed and not (rundir.path / RUN_NAME).is_file():
        raise RunDirectoryError(f"rank {group.rank} on {socket.gethostname()} does not see {rundir.path / RUN_NAME}, "
                                "which rank 0 wrote; the output folder must be on a filesystem every node shares")
