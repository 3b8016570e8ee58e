"""Training throughput of ``camkit finetune``: frozen backbone vs full fine-tuning.

Each configuration trains 2 epochs and reports the second (the first pays for warm-up: allocator,
oneDNN kernels) over a small real-photo set (camkit.finetune.photos: 5 classes), on this
machine's CPU, for the embedded EfficientNet-Lite0 (ImageNet backbone) and a CIFAR net (random
init). images/s = training images / wall-clock seconds of the epoch, data loading and augmentation
included (DataLoader workers as given), validation excluded. Prints a Markdown table.

    python bench/bench_finetune.py [--per-class 20] [--workers 0] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import torch

from camkit.finetune import FinetuneConfig, finetune, make_photo_dataset

CONFIGS = (
    # (model, input size, weights, batch size)
    ("efficientnet_lite0", 128, None, 16),
    ("efficientnet_lite0", 224, None, 16),
    ("cifar_resnet18", 32, "random", 32),
    ("wrn_40_2", 32, "random", 32),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=20, help="training images per class (5 classes)")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from camkit.cli.common import keep_allocator_memory

    keep_allocator_memory()
    rows = []
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        ds = make_photo_dataset(Path(tmp) / "photos", train_per_class=args.per_class, val_per_class=1, size=224, seed=0)
        n = 5 * args.per_class
        for model, size, weights, bs in CONFIGS:
            for freeze in (True, False):
                out = Path(tmp) / f"{model}_{size}_{freeze}"
                res = finetune(FinetuneConfig(
                    model=model, root=str(ds.root), weights=weights, freeze_backbone=freeze, epochs=2,
                    batch_size=bs, workers=args.workers, input_size=size, out=str(out), seed=0,
                ))
                r = res.history[-1]
                rows.append((model, size, "frozen backbone" if freeze else "all layers", bs, r["images_per_s"], r["seconds"]))
    print(f"\n`camkit finetune` training throughput, {n} images/epoch (second epoch), CPU "
          f"({platform.processor() or platform.machine()}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.workers} DataLoader workers; 1-min load average "
          f"{load_before:.1f} before / {os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan'):.1f} after "
          f"(other jobs on the {os.cpu_count()} cores slow every figure down)\n")
    print("| model | input | training | batch | images/s | epoch s |")
    print("|---|---|---|---|---|---|")
    for model, size, mode, bs, ips, sec in rows:
        print(f"| {model} | {size} | {mode} | {bs} | {ips:.1f} | {sec:.1f} |")


if __name__ == "__main__":
    main()
