"""Benchmark ``camkit evaluate``: throughput against a plain forward pass, and peak memory vs images.

(a) Throughput. The real ILSVRC sample (12 photos, ../shared/data/ilsvrc_val_sample) is listed
    ``--repeat`` times under different ids. Two references: a plain forward pass (``model.features`` +
    ``model.head`` under ``torch.inference_mode()``) on ready tensors (one batch decoded and squashed
    beforehand and fed as every batch, so only the network runs) of the network exactly as camkit's evaluate
    runs it: the model as ``load_model`` gives it, channels-last (``camkit.models.memory_format``), with its
    batch norms folded into its convolutions (``camkit.models.batchnorm_fold``), on channels-last batches as
    the loop reads them; and the same forward fed by the DataLoader (camkit's
    LocalizationImages with the squash transform, batch 32, ``--workers`` processes); against both, the
    whole ``camkit.evaluate.evaluate`` loop (maps, upsampling, CVPR16 boxes, the wsolevaluation tau sweep,
    fsync'd records), the call including the summary and output files, and a whole ``python -m camkit evaluate``
    process on the same photos in Kaggle's layout (spawn to exit: imports, model, every output file; also against
    two ready-tensor forwards run just before and just after it); and the
    loop against the ready forward paired in chunks of ``--chunk-batches`` batches taken in turn, so the machine's
    drift falls on both sides. Runs are interleaved after a
    warm-up, in one process with glibc told to keep freed memory and libgomp's idle spin shortened (as the CLI
    does: ``camkit.malloc_tuning``, ``camkit.openmp_tuning``; ``--no-openmp-tuning`` keeps libgomp's default). Reported: the best of
    ``--rounds`` for each, and the median over rounds of each round's ratio to the mean of the ready-tensor
    forwards run just before and after it (steadier when other jobs share the CPUs), with the load average.
    Also, from inside each evaluate run, the network's share of the loop's time (the map source is timed:
    what is not network is the loop's own work) and the in-loop network's speed against the ready forward;
    the share needs no reference run, so it holds when the machine's speed drifts between runs.
    And the plain forward of the same network in PyTorch's default NCHW layout, batch norms unfolded
    (``model(x)`` on a model as torchvision builds it, NCHW ready tensors), run beside the process too: what a
    user's own loop costs.
(b) Peak memory. ``evaluate`` on 100 and on 1000 images, each in a fresh subprocess; peak RSS of the
    main process (``ru_maxrss``) and, with ``--workers`` > 0, of the largest DataLoader worker (``RUSAGE_CHILDREN``).

Prints a Markdown table. Usage: ``python bench/bench_evaluate.py [--repeat 20] [--rounds 3] [--skip-memory]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[2] / "shared/data/ilsvrc_val_sample"


def resized_samples(size: int, out_dir: Path) -> list:
    """The sample's photos written to ``out_dir`` with the short side ``size`` px (PIL bilinear, JPEG
    quality 90), boxes and sizes scaled with them: small photos like the 227-px ILSVRC copies many
    studies evaluate on, where decoding costs less and the loop's own work shows more."""
    from PIL import Image

    from camkit.datasets import LocSample, read_ilsvrc

    out = []
    for s in read_ilsvrc(SAMPLE).samples:
        with Image.open(s.image_path) as im:
            im = im.convert("RGB")
            f = size / min(im.size)
            w, h = round(im.width * f), round(im.height * f)
            path = out_dir / Path(s.image_path).name
            im.resize((w, h), Image.Resampling.BILINEAR).save(path, quality=90)
        boxes = (s.boxes * [w / im.width, h / im.height, w / im.width, h / im.height]).round().clip(0, [w - 1, h - 1, w - 1, h - 1])
        out.append(LocSample(path, s.image_id, s.class_index, boxes.astype(s.boxes.dtype), w, h))
    return out


#: The photos :func:`repeated_dataset` repeats (set by ``--image-size``; empty: the sample as it is).
_BASE: list = []


def repeated_dataset(n: int):
    from camkit.datasets import LocDataset, LocSample, read_ilsvrc

    base = _BASE or read_ilsvrc(SAMPLE).samples
    samples = [
        LocSample(s.image_path, f"{s.image_id}#{k // len(base)}", s.class_index, s.boxes, s.width, s.height)
        for k, s in ((k, base[k % len(base)]) for k in range(n))
    ]
    return LocDataset("ILSVRC sample, repeated", samples, source=f"{SAMPLE} x{n}")


def kaggle_layout(dataset, root: Path) -> Path:
    """``dataset``'s photos (symlinks) and boxes written in Kaggle's ILSVRC layout under ``root``, for a
    ``camkit evaluate`` process (``LOC_val_solution.csv``: ``synset x0 y0 x1 y1 ...`` per image)."""
    synsets = [line.split()[0] for line in (SAMPLE / "LOC_synset_mapping.txt").read_text().splitlines()]
    (root / "val").mkdir(parents=True)
    (root / "LOC_synset_mapping.txt").write_text((SAMPLE / "LOC_synset_mapping.txt").read_text())
    rows = ["ImageId,PredictionString"]
    for k, s in enumerate(dataset.samples):
        image_id = f"ILSVRC2012_val_{k + 1:08d}"
        (root / "val" / f"{image_id}.JPEG").symlink_to(Path(s.image_path).resolve())
        rows.append(image_id + "," + " ".join(f"{synsets[s.class_index]} {' '.join(str(int(v)) for v in b)}" for b in s.boxes))
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    return root


def byte_compile_camkit() -> None:
    """Write camkit's bytecode caches (``__pycache__``) as ``pip install`` does for an installed package: a source
    checkout run with ``PYTHONDONTWRITEBYTECODE=1`` would otherwise compile every module at each process start
    (~0.08 s here), a cost no installed camkit has."""
    import compileall

    import camkit
    import camkit.cli

    for package in {Path(camkit.__file__).parent, Path(camkit.cli.__file__).parent}:
        compileall.compile_dir(package, quiet=1)


def cli_process(root: Path, batch_size: int, workers: int) -> tuple[float, float]:
    """Wall seconds of one ``python -m camkit evaluate`` process on ``root``, from spawn to exit (imports, model,
    loop, summary, CSV, figures, galleries, report.html), with the CLI's defaults otherwise; and the seconds of
    its loop (``summary["run"]["seconds"]``), so that the rest (the fixed cost) is known without a reference run."""
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "camkit", "evaluate", "--dataset", "ilsvrc", "--root", str(root), "--out",
                        str(Path(d) / "run"), "--no-progress", "--batch-size", str(batch_size), "--workers", str(workers)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t
        return wall, json.loads((Path(d) / "run" / "summary.json").read_text())["run"]["seconds"]


def plain_forward(model, dataset, batch_size: int, workers: int) -> float:
    import torch

    from camkit.datasets.torch_dataset import LocalizationImages, collate_localization
    from camkit.evaluate.loop import SquashTransform

    loader = torch.utils.data.DataLoader(
        LocalizationImages(dataset, SquashTransform(model.preprocess.with_input_size(224))),
        batch_size=batch_size, num_workers=workers, collate_fn=collate_localization,
    )
    t = time.perf_counter()
    with torch.inference_mode():
        for batch in loader:
            model.head(model.features(batch["images"]))
    return time.perf_counter() - t


def ready_batches(model, dataset, batch_size: int, channels_last: bool = False) -> list:
    """Ready float batches of the network's input, one per batch of ``dataset`` (same sizes): views of one
    decoded and squashed batch, so they take no more memory than a batch (a forward's cost does not
    depend on the pixels) and the allocator state stays that of the runs they are compared with;
    laid out channels-last when ``channels_last`` (as the loop reads them for a channels-last model)."""
    import torch

    from camkit.datasets.torch_dataset import LocalizationImages, collate_localization
    from camkit.evaluate.loop import SquashTransform

    loader = torch.utils.data.DataLoader(LocalizationImages(dataset, SquashTransform(model.preprocess.with_input_size(224))),
                                         batch_size=batch_size, num_workers=0, collate_fn=collate_localization)
    first = next(iter(loader))["images"]
    if channels_last:
        first = first.contiguous(memory_format=torch.channels_last)
    n = len(dataset)
    return [first[: min(batch_size, n - s)] for s in range(0, n, batch_size)]


def ready_forward(model, batches: list) -> float:
    """Seconds of a plain forward (features + head, inference mode) over batches already in memory."""
    import torch

    t = time.perf_counter()
    with torch.inference_mode():
        for x in batches:
            model.head(model.features(x))
    return time.perf_counter() - t


def paired_chunks(model, dataset, ready: list, batch_size: int, workers: int, chunk_batches: int,
                  network=None) -> tuple[float, float]:
    """Seconds of the ready-tensor forward and of the evaluate loop, summed over chunks of ``chunk_batches``
    batches taken in turn (a ready forward of the chunk's batches, then ``evaluate`` of its images into a fresh
    output folder, records fsync'd): each pair runs within a few seconds, so the machine's drift over a round
    falls on both sides. Each chunk's loop time also carries the start of its helper threads and its first read.
    The ready forward runs ``network`` (default ``model``): the network evaluate computes the maps with (it folds
    the batch norms of its own copy before its loop)."""
    from camkit.datasets import LocDataset
    from camkit.evaluate import evaluate

    n, per = len(dataset.samples), chunk_batches * batch_size
    fwd = loop = 0.0
    for start in range(0, n, per):
        part = LocDataset(dataset.name, dataset.samples[start : start + per], source=dataset.source)
        first = start // batch_size
        fwd += ready_forward(network if network is not None else model, ready[first : first + (len(part.samples) + batch_size - 1) // batch_size])
        with tempfile.TemporaryDirectory() as d:  # records written and fsync'd as in a real run
            s = evaluate(part, model, batch_size=batch_size, workers=workers, out_dir=d, progress=False, gallery_size=0)
        loop += s["run"]["seconds"]
    return fwd, loop


def full_evaluate(model, dataset, batch_size: int, workers: int, network=None) -> tuple[float, float, float]:
    """Seconds of the loop, of the whole call, and of the network inside the loop (the map source's calls:
    the forward, the top-k and the CAM einsum, on ``network``: the model evaluate computes the maps with,
    default ``model``), measured in the same run."""
    from camkit.cam.sources import make_map_source
    from camkit.evaluate import evaluate

    source = make_map_source(network if network is not None else model)
    in_source = [0.0]

    def timed_source(x, gt):
        t = time.perf_counter()
        try:
            return source(x, gt)
        finally:
            in_source[0] += time.perf_counter() - t

    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        s = evaluate(dataset, model, batch_size=batch_size, workers=workers, out_dir=d, progress=False, gallery_size=0,
                     map_source=timed_source)
        total = time.perf_counter() - t
    return s["run"]["seconds"], total, in_source[0]


def throughput(args) -> list[str]:
    import copy
    import os
    import statistics

    import torch

    from camkit.cli.common import keep_allocator_memory
    from camkit.models import load_model
    from camkit.models.batchnorm_fold import fold_batchnorm
    from camkit.models.memory_format import takes_channels_last_input

    keep_allocator_memory()
    model = load_model("efficientnet_lite0")
    nchw = copy.deepcopy(model).to(memory_format=torch.contiguous_format)  # PyTorch's default layout
    runs = fold_batchnorm(model) or model  # the network evaluate computes plain CAM with
    if args.image_size:
        _BASE[:] = resized_samples(args.image_size, Path(tempfile.mkdtemp(prefix="camkit-bench-")))
    ds = repeated_dataset(12 * args.repeat)
    n = len(ds)
    plain_forward(runs, repeated_dataset(64), args.batch_size, args.workers)  # warm-up
    ready = ready_batches(runs, ds, args.batch_size, takes_channels_last_input(runs))
    ready_nchw = ready_batches(nchw, ds, args.batch_size)
    ready_forward(runs, ready)
    ready_forward(nchw, ready_nchw)
    layout = kaggle_layout(ds, Path(tempfile.mkdtemp(prefix="camkit-bench-layout-")) / "ilsvrc")
    byte_compile_camkit()
    fwd, ready_fwd, ev, ev_total, procs, fixed, loads = [], [], [], [], [], [], []
    ratios: dict[str, list[float]] = {"fwd": [], "loop": [], "total": [], "process": [], "share": [], "inloop": [],
                                      "paired": [], "process_beside": [], "process_nchw": [], "loop_nchw": []}
    for r in range(args.rounds):
        # the ready-tensor forward before and after the others: a round's ratios compare runs minutes apart
        # at most, which matters when other jobs share the machine
        before = ready_forward(runs, ready)
        fwd.append(plain_forward(runs, ds, args.batch_size, args.workers))
        loop, total, network = full_evaluate(model, ds, args.batch_size, args.workers, runs)
        # the process also against ready forwards run right beside it: the VM's speed drifts within a minute
        beside, beside_nchw = ready_forward(runs, ready), ready_forward(nchw, ready_nchw)
        wall, process_loop = cli_process(layout, args.batch_size, args.workers)
        beside, beside_nchw = beside + ready_forward(runs, ready), beside_nchw + ready_forward(nchw, ready_nchw)
        ratios["process_beside"].append(beside / 2 / wall)
        ratios["process_nchw"].append(beside_nchw / 2 / wall)
        ratios["loop_nchw"].append(beside_nchw / 2 / loop)
        procs.append(wall)
        fixed.append(wall - process_loop)
        paired_fwd, paired_loop = paired_chunks(model, ds, ready, args.batch_size, args.workers, args.chunk_batches, runs)
        ratios["paired"].append(paired_fwd / paired_loop)
        after = ready_forward(runs, ready)
        ratios["share"].append(network / loop)
        ratios["inloop"].append((before + after) / 2 / network)
        ready_fwd += [before, after]
        ev.append(loop)
        ev_total.append(total)
        loads.append(os.getloadavg()[0])
        ref = 2 / (before + after)  # ready-tensor rounds per second, the mean of the two
        for key, seconds in (("fwd", fwd[-1]), ("loop", loop), ("total", total), ("process", procs[-1])):
            ratios[key].append(1 / seconds / ref)
        print(f"round {r + 1} (load {loads[-1]:.1f}): ready-tensor forward {n / before:.1f} / {n / after:.1f} img/s, "
              f"forward {n / fwd[-1]:.1f} img/s, evaluate loop {n / loop:.1f} img/s (with summary/CSV/curves/report {n / total:.1f} img/s); "
              f"loop / ready {ratios['loop'][-1]:.2f}, run / ready {ratios['total'][-1]:.2f}, process {n / procs[-1]:.1f} img/s "
              f"({procs[-1]:.1f} s, / ready {ratios['process'][-1]:.2f}, / ready beside it {ratios['process_beside'][-1]:.3f}; "
              f"outside its loop {fixed[-1]:.2f} s; / plain NCHW forward beside it {ratios['process_nchw'][-1]:.3f}, "
              f"NCHW forward {n / beside_nchw * 2:.1f} img/s); loop / ready paired in chunks {ratios['paired'][-1]:.3f}; "
              f"network share of the loop "
              f"{ratios['share'][-1]:.3f}, in-loop network / ready forward speed {ratios['inloop'][-1]:.3f}", file=sys.stderr)
    rf, f, e, t, pr = n / min(ready_fwd), n / min(fwd), n / min(ev), n / min(ev_total), n / min(procs)
    med = {k: statistics.median(v) for k, v in ratios.items()}
    return [
        (f"| throughput, {n} images{f' (short side {args.image_size} px)' if args.image_size else ''}, batch {args.batch_size}, "
         f"{args.workers} workers | img/s (best round) | ratio to forward (same loader) "
         "| ratio to ready-tensor forward (best / best) | ratio to ready-tensor forward (median of rounds) |"),
        "|---|---|---|---|---|",
        f"| plain forward on ready tensors (one batch decoded beforehand; channels-last, batch norms folded: as camkit runs it) | {rf:.1f} | {rf / f:.2f} | 1.00 | 1.00 |",
        f"| plain forward (same loader) | {f:.1f} | 1.00 | {f / rf:.2f} | {med['fwd']:.2f} |",
        f"| camkit evaluate loop (maps, boxes, 100-tau sweep V1+V2, fsync'd records) | {e:.1f} | {e / f:.2f} | {e / rf:.2f} | {med['loop']:.2f} |",
        f"| camkit evaluate call incl. summary, per_image.csv, curves PNG, report.html (no galleries) | {t:.1f} | {t / f:.2f} | {t / rf:.2f} | {med['total']:.2f} |",
        (f"| `python -m camkit evaluate` process, spawn to exit (imports, model, loop, outputs, galleries, report.html) "
         f"| {pr:.1f} | {pr / f:.2f} | {pr / rf:.2f} | {med['process']:.2f} |"),
        "",
        f"{args.rounds} rounds; 1-minute load average during the rounds {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs "
        "(each round's ratios use the mean of the ready-tensor forwards run just before and after it).",
        "",
        f"Paired in chunks of {args.chunk_batches} batches (a ready-tensor forward of the chunk's batches, then evaluate of its "
        "images with records written, in turn; each chunk's loop time also carries its own first read): "
        f"loop / ready forward median {med['paired']:.3f} (rounds {', '.join(f'{v:.3f}' for v in ratios['paired'])}).",
        "",
        f"The `camkit evaluate` process spent outside its loop (spawn to exit minus the loop's seconds in its summary: "
        f"interpreter, imports, model, run folder, outputs, exit) median {statistics.median(fixed):.2f} s "
        f"(rounds {', '.join(f'{v:.2f}' for v in fixed)}); camkit's modules byte-compiled first, as an installed camkit is. "
        "Against the mean of two ready-tensor forwards of the same images run just before and just after it (seconds "
        f"apart, not a round apart): process / ready forward median {med['process_beside']:.3f} "
        f"(rounds {', '.join(f'{v:.3f}' for v in ratios['process_beside'])}).",
        "",
        "Within each evaluate run (no reference run at another time, so machine drift cancels): the network's share "
        f"of the loop's time (the map source's calls / loop seconds) median {med['share']:.3f} "
        f"(rounds {', '.join(f'{v:.3f}' for v in ratios['share'])}); the network inside the loop ran at "
        f"{med['inloop']:.3f}x the ready-tensor forward's speed (median; rounds {', '.join(f'{v:.3f}' for v in ratios['inloop'])}).",
        "",
        "Against the plain forward of the same network in PyTorch's default NCHW layout (NCHW weights and ready tensors, "
        "batch norms unfolded, "
        "run just before and just after the process; what a user's own `model(x)` loop costs): process / NCHW forward "
        f"median {med['process_nchw']:.3f} (rounds {', '.join(f'{v:.3f}' for v in ratios['process_nchw'])}); the round's "
        f"evaluate loop / that NCHW forward median {med['loop_nchw']:.3f} "
        f"(rounds {', '.join(f'{v:.3f}' for v in ratios['loop_nchw'])}).",
    ]


def rss_child(n: int, workers: int) -> None:
    from camkit.cli.common import keep_allocator_memory
    from camkit.evaluate import evaluate
    from camkit.models import load_model

    keep_allocator_memory()
    model = load_model("efficientnet_lite0")
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        evaluate(repeated_dataset(n), model, batch_size=32, workers=workers, out_dir=d, progress=False, gallery_size=0)
        seconds = time.perf_counter() - t
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"n": n, "main_mb": own, "worker_mb": kids, "seconds": seconds}))


def peak_memory(args) -> list[str]:
    # RUSAGE_CHILDREN covers every child, not only DataLoader workers: torch's CUDA library finder forks
    # `ldconfig -p` at import (a momentary copy of the process), so without workers that column means nothing
    workers = args.workers > 0
    rows = [f"| images | peak RSS main (MB) |{' peak RSS largest worker (MB) |' if workers else ''} seconds |",
            f"|---|---|{'---|' if workers else ''}---|"]
    for n in (100, 1000):
        out = subprocess.run([sys.executable, __file__, "--rss-child", str(n), "--workers", str(args.workers)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        worker = f" {r['worker_mb']:.0f} |" if workers else ""
        rows.append(f"| {n} | {r['main_mb']:.0f} |{worker} {r['seconds']:.1f} |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=20, help="copies of the 12 photos for the throughput run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=0, help="DataLoader processes (0: camkit's default, images read on its helper threads; "
                   "the plain forward then reads them in the main process)")
    p.add_argument("--chunk-batches", type=int, default=5, help="batches per chunk of the paired loop / forward measurement")
    p.add_argument("--image-size", type=int, default=0, help="resize the photos to this short side first (0: as they are)")
    p.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--no-openmp-tuning", action="store_true", help="keep libgomp's default spin count (camkit.openmp_tuning)")
    args = p.parse_args()
    from camkit.openmp_tuning import apply_openmp_tuning

    if not args.no_openmp_tuning:
        apply_openmp_tuning()  # as the CLI does, before torch is imported
    if not (SAMPLE / "val").is_dir():
        sys.exit(f"the ILSVRC sample is not at {SAMPLE}")
    if args.rss_child is not None:
        rss_child(args.rss_child, args.workers)
        return
    lines = throughput(args)
    if not args.skip_memory:
        lines += [""] + peak_memory(args)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
