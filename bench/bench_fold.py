"""Folded batch norms (``camkit.models.batchnorm_fold``): what they save, measured in one run.

EfficientNet-Lite0 as ``load_model`` gives it (channels-last), on the CPU, glibc told to keep freed memory and
libgomp's idle spin shortened as the CLI does. Each pair runs interleaved (folded, then the model itself), after
a warm-up; medians of the rounds:

- the feature extractor alone and the plain-CAM map source (forward, top-k, CAMs: what ``camkit evaluate`` runs
  per batch), batch 32 at 224 px on the sample's photos;
- ``camkit.evaluate.evaluate`` loops (the summary's ``run.seconds``) on the real ILSVRC sample
  (../shared/data/ilsvrc_val_sample), with ``CAMKIT_FOLD_BATCHNORM`` unset and ``=0``: plain CAM and Grad-CAM on
  the 12 photos listed ``--repeat`` times, Score-CAM at its default layer (``bn2``, 1,280 masked forwards per
  image) on 4 photos, and plain CAM with ``--faithfulness`` (56 deletion/insertion steps) on the 12 photos.

Prints a Markdown table. Usage: ``.venv/bin/python bench/bench_fold.py [--rounds 3] [--repeat 16]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import interleaved  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "shared/data/ilsvrc_val_sample"


def _loop_seconds(dataset, model, fold: bool, **options) -> float:
    from camkit.evaluate import evaluate

    os.environ["CAMKIT_FOLD_BATCHNORM"] = "1" if fold else "0"
    try:
        s = evaluate(dataset, model, progress=False, gallery_size=0, **options)
    finally:
        os.environ.pop("CAMKIT_FOLD_BATCHNORM", None)
    assert ("batchnorm" in s["model"]) == fold, s["model"]
    return float(s["run"]["seconds"])


def _pair(fn, rounds: int) -> tuple[float, float]:
    """Medians of the seconds ``fn(True)`` and ``fn(False)`` report (the loop's own time, not the call's: not
    ``_timing.interleaved``), run in turn each round after one warm-up of each."""
    fn(True), fn(False)
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for fold in (True, False):
            times[fold].append(fn(fold))
    return statistics.median(times[True]), statistics.median(times[False])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeat", type=int, default=16, help="copies of the 12 photos for the plain CAM and Grad-CAM loops")
    args = p.parse_args()
    from camkit.openmp_tuning import apply_openmp_tuning

    apply_openmp_tuning()  # as the CLI does, before torch is imported
    if not (SAMPLE / "val").is_dir():
        sys.exit(f"the ILSVRC sample is not at {SAMPLE}")
    import torch

    from camkit.cam.sources import make_map_source
    from camkit.cli.common import keep_allocator_memory
    from camkit.datasets import LocDataset, read_ilsvrc
    from camkit.evaluate.loop import SquashTransform
    from camkit.io import load_image
    from camkit.models import load_model
    from camkit.models.batchnorm_fold import fold_batchnorm

    keep_allocator_memory()
    model = load_model("efficientnet_lite0")
    folded = fold_batchnorm(model)
    assert folded is not None
    ds = read_ilsvrc(SAMPLE)
    squash = SquashTransform(model.preprocess.with_input_size(224))
    photos = torch.stack([squash(load_image(s.image_path)) for s in ds.samples])
    x = photos.repeat(3, 1, 1, 1)[:32].contiguous(memory_format=torch.channels_last)
    gt = torch.tensor([s.class_index for s in ds.samples] * 3)[:32]
    rows = []

    def per_batch(name: str, fn_folded, fn_plain) -> None:
        t = interleaved({"folded": fn_folded, "kept": fn_plain}, rounds=max(5, 3 * args.rounds))
        rows.append((name, t["kept"] * 1e3, t["folded"] * 1e3, t["kept"] / t["folded"], "ms"))

    with torch.inference_mode():
        per_batch("feature extractor, batch 32", lambda: folded.features(x), lambda: model.features(x))
    source_f, source_p = make_map_source(folded), make_map_source(model)
    per_batch("plain-CAM map source (forward, top-5, CAMs), batch 32", lambda: source_f(x, gt), lambda: source_p(x, gt))

    many = LocDataset("sample", [dataclasses.replace(s, image_id=f"{s.image_id}_{k}") for k in range(args.repeat)
                                 for s in ds.samples])
    n = len(many.samples)
    for name, data, options in (
        (f"evaluate loop, plain CAM, {n} photos", many, {"batch_size": 32}),
        (f"evaluate loop, Grad-CAM, {n} photos", many, {"batch_size": 32, "method": "gradcam"}),
        ("evaluate loop, Score-CAM at bn2, 4 photos", LocDataset("sample", ds.samples[:4]),
         {"batch_size": 4, "method": "scorecam"}),
        ("evaluate loop, plain CAM + faithfulness (56 steps), 12 photos", ds,
         {"batch_size": 12, "faithfulness": True, "faithfulness_steps": 56}),
    ):
        f, q = _pair(lambda fold, data=data, options=options: _loop_seconds(data, model, fold, **options), args.rounds)
        rows.append((name, q, f, q / f, "s"))
        print(f"{name}: {q:.2f} s -> {f:.2f} s ({q / f:.2f}x)", file=sys.stderr, flush=True)

    print("| EfficientNet-Lite0, channels-last, CPU | batch norms kept | folded | speed-up |")
    print("|---|---|---|---|")
    for name, q, f, ratio, unit in rows:
        print(f"| {name} | {q:.{0 if unit == 'ms' else 2}f} {unit} | {f:.{0 if unit == 'ms' else 2}f} {unit} | {ratio:.2f}x |")
    print(f"\nMedians of interleaved rounds ({args.rounds} per evaluate pair, {max(5, 3 * args.rounds)} per batch pair), "
          f"after a warm-up of each; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}.")


if __name__ == "__main__":
    main()
