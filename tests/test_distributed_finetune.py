"""``camkit finetune`` on 2 gloo processes (DistributedDataParallel) follows one process at the doubled batch.

With the backbone frozen (BatchNorm in eval, so no batch statistics differ between a batch of 2b and
two of b) and a model without dropout, N processes x batch b read the same global batches as one
process x N*b (the same sampler permutation, each image augmented from its own seed), and DDP averages
the gradients of the two halves: the losses must agree to float rounding.
"""

from __future__ import annotations

import csv
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

EPOCHS = 2


def _photo_folder(root: Path) -> Path:
    """imagefolder layout, 2 classes (cat, coffee) x (8 train + 2 val) 64-px crops of two real photos."""
    rng = np.random.default_rng(0)
    for name, photo in (("cat", data.chelsea()), ("coffee", data.coffee())):
        for split, n in (("train", 8), ("val", 2)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for k in range(n):
                y = int(rng.integers(0, photo.shape[0] - 128))
                x = int(rng.integers(0, photo.shape[1] - 128))
                Image.fromarray(photo[y : y + 128, x : x + 128]).resize((64, 64)).save(folder / f"{k}.png")
    return root


def _argv(root: Path, out: Path, batch_size: int) -> list[str]:
    import sys

    return [sys.executable, "-m", "camkit", "finetune", "--model", "cifar_resnet18", "--dataset", "imagefolder",
            "--root", str(root), "--freeze-backbone", "--epochs", str(EPOCHS), "--batch-size", str(batch_size),
            "--workers", "0", "--lr", "0.05", "--out", str(out)]


def _log(out: Path) -> list[dict]:
    with open(out / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_two_processes_at_batch_b_follow_one_process_at_2b_across_a_kill_and_resume(tmp_path):
    import torch
    from test_distributed_core import launch

    from camkit.finetune.trainer import FinetuneConfig, finetune

    root = _photo_folder(tmp_path / "photos")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = finetune(FinetuneConfig(model="cifar_resnet18", dataset="imagefolder", root=str(root), freeze_backbone=True,
                                      epochs=EPOCHS, batch_size=8, workers=0, lr=0.05, out=str(tmp_path / "one")))
    finally:
        torch.set_num_threads(threads)

    # 2 processes x batch 4, every rank kill -9'd right after epoch 1's checkpoint, then resumed on 2 processes.
    two = tmp_path / "two"
    workers = launch(_argv(root, two, 4), timeout=240, teardown=False, env={"CAMKIT_FINETUNE_KILL_AFTER_EPOCH": "1"})
    assert all(w.returncode == -signal.SIGKILL for w in workers), [w.stderr[-2000:] for w in workers]
    assert "2 processes x batch 4 = global batch 8" in workers[0].stderr
    assert len(_log(two)) == 1
    workers = launch(_argv(root, two, 4) + ["--resume"], timeout=240, env={"CAMKIT_FINETUNE_KILL_AFTER_EPOCH": ""})
    assert [w.returncode for w in workers] == [0, 0], [w.stderr[-2000:] for w in workers]

    # Epoch 1 (before the kill) and epoch 2 (after the resume) follow one process at batch 8.
    log = _log(two)
    assert len(log) == EPOCHS
    for k in range(EPOCHS):
        for key in ("train_loss", "val_loss"):
            ref = one.history[k][key]
            assert abs(float(log[k][key]) - ref) <= 1e-4 * abs(ref), (k, key, log[k][key], ref)
        assert float(log[k]["train_acc"]) == one.history[k]["train_acc"]
        assert float(log[k]["val_acc"]) == one.history[k]["val_acc"]
    assert float(log[0]["train_loss"]) != float(log[1]["train_loss"])  # it trained
    # Only rank 0 wrote: one set of files, no temporary leftovers; every rank's generator states saved.
    assert sorted(p.name for p in two.iterdir() if not p.name.startswith(".")) == [
        "best.pt", "last.pt", "log.csv", "training.png"]
    ckpt = torch.load(two / "last.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["rng_ranks"]) == 2
    assert not torch.equal(ckpt["rng_ranks"][0]["torch"], ckpt["rng_ranks"][1]["torch"])  # each rank its own
