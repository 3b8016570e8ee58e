"""``camkit finetune``: train a GAP head (or a new linear head, or a CIFAR GAP net) on your classes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from .common import err_console, fail, one_line_errors

# Testing hook: SIGKILL this process right after the checkpoint of epoch N is on disk, to check
# that --resume continues a run that was killed (no clean shutdown, nothing flushed late).
KILL_AFTER_EPOCH_ENV = "CAMKIT_FINETUNE_KILL_AFTER_EPOCH"


@one_line_errors
def finetune_command(
    model: str | None = typer.Option(None, "--model", "-m", help="Registry name: a *_gap/*_gmp surgery, an exact-CAM model (new linear head) or a CIFAR net (cifar_resnet18, wrn_40_2, ...) (default: efficientnet_lite0)."),
    dataset: str | None = typer.Option(None, "--dataset", help="imagefolder (ROOT/train/<class>/, ROOT/val/<class>/; the default), cub, ilsvrc, cifar10 or csv (image_path,class_index,x1,y1,x2,y2)."),
    root: Path = typer.Option(..., "--root", help="Dataset folder (csv: a CSV file, or a folder with train.csv and val.csv)."),
    num_classes: int | None = typer.Option(None, "--num-classes", min=1, help="Classes of the new head (default: from the dataset)."),
    pool: str | None = typer.Option(None, "--pool", help="gap (global average: exact CAM) or gmp (global max); default: the model's."),
    freeze_backbone: bool | None = typer.Option(None, "--freeze-backbone/--train-all", help="Train only the new head, or every layer (default: freeze a pretrained backbone, train a random one)."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Epochs (default: 10)."),
    lr: float | None = typer.Option(None, "--lr", min=0.0, help="Peak learning rate of the global batch (default: 0.01 SGD / 0.001 AdamW fine-tuning; 0.1 / 0.002 from scratch)."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Images per step and process (default: 32); under torchrun the global batch is processes x this."),
    workers: int | None = typer.Option(None, "--workers", min=0, help="DataLoader worker processes (default: 2)."),
    out: Path = typer.Option(Path("runs/finetune"), "--out", "-o", help="Folder for last.pt, best.pt, log.csv and training.png."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from last.pt (same options; exact)."),
    weights: str | None = typer.Option(None, "--weights", "-w", help="Backbone weights: default (ImageNet where available), 'random', a torchvision weights name, or a checkpoint path."),
    optimizer: str | None = typer.Option(None, "--optimizer", help="sgd (Nesterov momentum 0.9) or adamw (default: sgd)."),
    schedule: str | None = typer.Option(None, "--schedule", help="cosine or step (x0.1 at 50% and 75%), after a one-epoch linear warm-up (default: cosine)."),
    input_size: int | None = typer.Option(None, "--input-size", min=16, help="Square training/inference input (default: the weights' crop size)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of shuffling, augmentation and the new head (default: 0)."),
    deterministic: bool | None = typer.Option(None, "--deterministic/--nondeterministic", help="Enforce torch's deterministic algorithms (default: off)."),
    sync_bn: bool | None = typer.Option(None, "--sync-bn/--no-sync-bn", help="Under torchrun on GPUs: synchronise BatchNorm statistics across processes (SyncBatchNorm; default: off)."),
) -> None:
    """Fine-tune a model's GAP head (the CAM paper's recipe) on a dataset; checkpoints load with --weights."""
    from camkit.finetune.model import pool_kind
    from camkit.finetune.trainer import FinetuneConfig, finetune

    given: dict[str, Any] = {  # FinetuneConfig's fields, None where the user gave no value
        "model": model, "dataset": dataset, "root": str(root), "num_classes": num_classes,
        "pool": pool_kind(pool), "freeze_backbone": freeze_backbone, "epochs": epochs, "lr": lr,
        "batch_size": batch_size, "workers": workers, "out": str(out), "weights": weights,
        "optimizer": optimizer, "schedule": schedule, "input_size": input_size, "seed": seed,
        "deterministic": deterministic, "sync_bn": sync_bn,
    }
    if dataset is not None and dataset not in ("imagefolder", "cub", "ilsvrc", "cifar10", "csv"):
        raise fail(f"--dataset must be imagefolder, cub, ilsvrc, cifar10 or csv, not {dataset!r}")
    if resume:
        # Only what the user typed counts (unset options are None): the rest comes from last.pt.
        overrides = {k: v for k, v in given.items() if v is not None}
        cfg = FinetuneConfig(out=str(out))
    else:
        overrides = None
        cfg = FinetuneConfig(**{k: v for k, v in given.items() if v is not None})

    kill_after = os.environ.get(KILL_AFTER_EPOCH_ENV)

    def on_epoch_end(row: dict) -> None:
        if kill_after and int(row["epoch"]) == int(kill_after):
            import signal

            os.kill(os.getpid(), signal.SIGKILL)

    from camkit.distributed import process_group

    # Under torchrun (WORLD_SIZE > 1): DistributedDataParallel, rank 0 writes the files and prints.
    with process_group() as group:
        result = finetune(cfg, resume=resume, overrides=overrides, progress=True, on_epoch_end=on_epoch_end)
    if not group.is_main:
        return
    best = result.best_checkpoint or result.last_checkpoint
    err_console.print(
        f"wrote {result.last_checkpoint} (resume), {best} (best), {result.out_dir / 'log.csv'} and "
        f"{result.out_dir / 'training.png'}; use it with: camkit explain IMAGE --weights {best}",
        soft_wrap=True,
    )
