"""A finished run's outputs, all computed from its records: the summary (:func:`finish_run`: metrics,
faithfulness, timing), then ``summary.json``, ``per_image.csv``, the BoxAcc curves, the PxAP
precision-recall curve, best/worst galleries, ``report.md`` and ``report.html``.

File names are the constants of :mod:`camkit.evaluate.files`; ``summary["run"]["files"]`` lists the ones a
run wrote. The figures are drawn by the figure process when ``camkit evaluate`` started one
(:mod:`camkit.evaluate.figure_process`), beside the rest. ``summary.json`` is written last but one
(atomically), then the report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import TYPE_CHECKING

from camkit.app.report_html import write_report_html
from camkit.app.rundir import compact_record, read_run_dir
from camkit.cam.sources import MapSource
from camkit.datasets.sample import LocDataset
from camkit.errors import DatasetError
from camkit.evaluate.faithfulness import summarize_faithfulness
from camkit.evaluate.files import (
    CURVES_NAME,
    GALLERY_BEST_NAME,
    GALLERY_WORST_NAME,
    PER_IMAGE_NAME,
    PXAP_CURVE_NAME,
    REPORT_HTML_NAME,
    REPORT_NAME,
    SUMMARY_NAME,
)
from camkit.evaluate.gallery import GalleryMaps, gallery_panels, select_extremes
from camkit.evaluate.protocol import Protocol
from camkit.evaluate.results import FailedImage, ImageRecord, Record, as_record
from camkit.evaluate.summary import summarize

if TYPE_CHECKING:
    from camkit.evaluate.figure_process import FigureDrawer, FigureProcess


def finish_run(out: Path | None, records: Callable[[], Iterator[Record | dict]], samples: Sequence, protocol: Protocol,
               model_info: dict, dataset_info: dict, sweep_backend: str, t0: float, n_done: int, source: MapSource,
               preprocess, dataset: LocDataset, model, gallery_size: int, world_size: int,
               gallery_maps: GalleryMaps | None = None) -> dict:
    """The run's summary from its ``records()`` (plus ``sweep_backend``, ``faithfulness`` and ``run``:
    timing since ``t0``, images evaluated now and resumed) and, with ``out``, every output file.
    Raises :class:`DatasetError` when no image could be read."""
    elapsed = time.perf_counter() - t0
    if out is not None:
        records = _parsed_once(records)
    _nothing_read(records(), len(samples))
    summary = summarize(records(), protocol, model=model_info, dataset=dataset_info)
    summary["sweep_backend"] = sweep_backend
    if protocol.faithfulness_steps:
        fs = summarize_faithfulness(map(as_record, records()))
        summary["faithfulness"] = fs.to_dict() if fs is not None else {}
    n_new = len(samples) - n_done
    summary["run"] = {
        "seconds": round(elapsed, 3),
        "images_per_s": round(n_new / elapsed, 3) if elapsed > 0 else None,
        "evaluated_now": n_new,
        "resumed_from": n_done,
        "world_size": world_size,
        "out_dir": str(out) if out is not None else None,
    }
    if out is not None:
        names = dataset.class_names if dataset.class_names else getattr(model, "categories", None)
        write_outputs(out, summary, records, samples, source, preprocess, protocol, names, gallery_size, gallery_maps)
    return summary


def _parsed_once(records: Callable[[], Iterator[Record | dict]]) -> Callable[[], Iterator[Record | dict]]:
    """``records`` read once and kept in index order, per-tau V1/V2 as float64 arrays (the form the report
    reads them in): the summary, the table, the galleries' choice and the report then share one parse of
    ``records.jsonl`` instead of one each (~1.4 s a parse at 50,000 images here)."""
    kept = [compact_record(r) if isinstance(r, dict) else r for r in records()]
    kept.sort(key=lambda r: int(r["i"]) if isinstance(r, dict) else r.index)
    return kept.__iter__


def _nothing_read(records: Iterator[Record | dict], n: int) -> None:
    """Raise when no image of the run could be read (a summary of 0 images would claim nothing)."""
    failed = []
    for r in map(as_record, records):
        if not isinstance(r, FailedImage):
            return
        failed.append(r)
    reasons = "; ".join(f.error for f in failed[:3])
    raise DatasetError(f"nothing could be read: all {n} image(s) failed, e.g. {reasons}")


def write_outputs(
    out: Path,
    summary: dict,
    records: Callable[[], Iterator[Record | dict]],
    samples: Sequence,
    source: MapSource,
    preprocess,
    protocol: Protocol,
    class_names: Sequence[str] | None,
    gallery_size: int,
    gallery_maps: GalleryMaps | None = None,
) -> dict[str, str]:
    """Write every output of the run into ``out``; ``records()`` streams the records (called several
    times). Gallery images whose map ``gallery_maps`` kept from the loop are not computed again. Adds
    ``summary["run"]["files"]`` and returns it."""
    from camkit.app.thumbnails import MAX_THUMBNAILS, start_every_thumbnail, thumbnail_threads
    from camkit.evaluate.figure_process import take_early

    # `camkit evaluate`'s figure process, when it started one: it draws the figures and has made the report's
    # thumbnails ahead (while this process imported torch); without it both are made here.
    process = take_early()
    pool = ThreadPoolExecutor(thumbnail_threads(), thread_name_prefix="camkit-thumbnail")
    try:
        photos = [(r.index, Path(samples[r.index].image_path)) for r in map(as_record, records())
                  if isinstance(r, ImageRecord)]
        if process is not None and len(photos) <= MAX_THUMBNAILS:
            # asked first, so the process answers it before it draws
            made = process.submit("thumbnails", ([str(p) for _, p in photos],))
            thumbnails = lambda: _thumbnails_made_there(made, photos, pool, process)  # noqa: E731
        else:
            started = start_every_thumbnail(pool, photos)  # made here while this thread writes the rest
            thumbnails = lambda: started  # noqa: E731
    except BaseException:
        if process is not None:
            process.kill()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    try:
        return _write_files(out, summary, records, samples, source, preprocess, protocol, class_names, gallery_size,
                            gallery_maps, process, thumbnails)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _wait_for_figures(drawer: FigureDrawer, process: FigureProcess | None) -> None:
    """Every figure on disk; while the figure process draws them this process has nothing else to do, so
    it first returns the memory the run kept (:func:`camkit.malloc_tuning.release_free_memory`) instead of
    leaving that to the kernel at exit."""
    if process is not None:
        from camkit.malloc_tuning import release_free_memory

        release_free_memory()
    drawer.finish()


def _thumbnails_made_there(made: Future, photos: list[tuple[int, Path]], pool: ThreadPoolExecutor,
                           process: FigureProcess) -> dict[int, Future]:
    """Record index -> settled future of the thumbnail the figure process made; when it failed or gave no
    answer in :data:`~camkit.evaluate.figure_process.WAIT_S`, the thumbnails are started here instead."""
    from camkit.app.thumbnails import start_every_thumbnail
    from camkit.evaluate.figure_process import WAIT_S

    try:
        uris = made.result(timeout=WAIT_S)
        out: dict[int, Future] = {}
        for i, path in photos:
            out[i] = Future()
            out[i].set_result(uris[str(path)])
        return out
    except FutureTimeout:
        process.kill()  # a hung process: the figures then fail over to this process too
    except Exception:  # noqa: BLE001 - an error over there or a malformed answer: made here, the same bytes
        pass
    return start_every_thumbnail(pool, photos)


def _write_files(out: Path, summary: dict, records: Callable[[], Iterator[Record | dict]], samples: Sequence,
                 source: MapSource, preprocess, protocol: Protocol, class_names: Sequence[str] | None, gallery_size: int,
                 gallery_maps: GalleryMaps | None, process: FigureProcess | None,
                 thumbnails: Callable[[], dict[int, Future]]) -> dict[str, str]:
    from camkit.evaluate import report
    from camkit.evaluate.figure_process import FigureDrawer
    from camkit.evaluate.tables import write_per_image_csv

    # The figures are handed out first: the figure process `camkit evaluate` started draws them while this
    # thread writes the tables and the report (without one, each is drawn here, at once).
    drawer = FigureDrawer(process)
    try:
        files = {"summary": SUMMARY_NAME, "per_image": PER_IMAGE_NAME}
        if summary["n_box_images"]:
            drawer.draw("plot_curves", summary, out / CURVES_NAME)
            files["curves"] = CURVES_NAME
        if summary["pxap"] is not None:
            drawer.draw("plot_pxap_curve", summary, out / PXAP_CURVE_NAME)
            files["pxap_curve"] = PXAP_CURVE_NAME
        files["report"] = REPORT_NAME
        files["report_html"] = REPORT_HTML_NAME
        best, worst = select_extremes(records(), gallery_size)
        for name, chosen, title in ((GALLERY_BEST_NAME, best, "best"), (GALLERY_WORST_NAME, worst, "worst")):
            if chosen:
                panels = gallery_panels(chosen, samples, source, preprocess, protocol, class_names, gallery_maps)
                drawer.draw("plot_gallery", panels, out / name, f"{title} {len(panels)} by GT-known IoU (CVPR16 box)")
                files[f"gallery_{title}"] = name
        write_per_image_csv(out / PER_IMAGE_NAME, records(), protocol, class_names)
        summary.setdefault("run", {})["files"] = files
        tmp = out / (SUMMARY_NAME + ".tmp")
        tmp.write_text(json.dumps(summary, indent=1), encoding="utf-8")
        tmp.replace(out / SUMMARY_NAME)
        (out / REPORT_NAME).write_text(report.markdown_report(summary, files), encoding="utf-8")
        # Last: it reads the run's own files (summary, per_image.csv, figures) and embeds the thumbnails.
        run = read_run_dir(out, records=[r for r in records() if isinstance(r, dict)])
        write_report_html(run, images={s.image_id: Path(s.image_path) for s in samples}, thumbnails=thumbnails(),
                          figures_ready=lambda: _wait_for_figures(drawer, process))
    finally:
        drawer.finish()  # (a no-op once the report has waited for it) every figure is drawn even if the report failed
    return files
