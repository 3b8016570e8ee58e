"""``camkit finetune`` end to end on a small real-photo set, plus its parts.

The data: scikit-image photos (cat, cup, motorcycle, person, rocket), each object cut out with a box
annotated by hand and pasted at random sizes/places onto real texture photos (see
camkit/finetune/photos.py), so every image has an exact object box. The model: the embedded
ImageNet EfficientNet-Lite0 with a new 5-class head, backbone frozen, 128x128 input.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import camkit
from camkit.finetune import FinetuneConfig, finetune, make_photo_dataset
from camkit.finetune.model import head_prefixes, prepare_model, set_train_mode

INPUT = 160
EPOCHS = 3
CLASSES = ["cat", "cup", "motorcycle", "person", "rocket"]


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory):
    return make_photo_dataset(tmp_path_factory.mktemp("photos"), train_per_class=8, val_per_class=4, size=INPUT, seed=0)


@pytest.fixture(scope="module")
def run(photo_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "lite0"
    cfg = FinetuneConfig(
        model="efficientnet_lite0", dataset="imagefolder", root=str(photo_set.root), epochs=EPOCHS,
        batch_size=10, workers=0, input_size=INPUT, out=str(out), seed=0,
    )
    # One intra-op thread: on a 2-core machine shared with other jobs, two spinning OpenMP threads
    # made this run 3-4x slower in wall time (measured); with the machine to itself it costs ~1.5x.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return finetune(cfg)
    finally:
        torch.set_num_threads(threads)


def _val_batch(photo_set, model):
    from camkit.datasets import read_csv_boxes
    from camkit.io import load_image

    ds = read_csv_boxes(photo_set.val_boxes)
    x = torch.stack([model.preprocess(load_image(s.image_path)) for s in ds.samples])
    return ds, x


def _need_box_extraction() -> None:
    import camkit.localize

    if not hasattr(camkit.localize, "cvpr16_box"):
        pytest.skip("camkit.localize.cvpr16_box (CAM -> box, used by camkit.explain) is not in this checkout")


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of inclusive-pixel boxes [n, 4] row by row."""
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + 1, 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + 1, 0, None)
    inter = iw * ih
    area = lambda z: (z[:, 2] - z[:, 0] + 1) * (z[:, 3] - z[:, 1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def test_iou_helper_by_hand():
    # [0,0,9,9] (100 px) and [5,5,14,14] (100 px) overlap in 5x5 = 25 px: 25 / 175.
    assert _iou(np.array([[0, 0, 9, 9]]), np.array([[5, 5, 14, 14]]))[0] == pytest.approx(25 / 175)


# ------------------------------------------------------------------ the training run


def test_loss_falls_and_accuracy_beats_chance(run):
    h = run.history
    assert [r["epoch"] for r in h] == [1, 2, 3]
    assert h[-1]["train_loss"] < 0.5 * h[0]["train_loss"]
    # A random 5-way head starts near ln 5 = 1.61 (N(0, 0.01) weights).
    assert h[0]["train_loss"] < 3.0
    assert h[-1]["val_acc"] >= 0.8  # 20 validation images, chance is 0.2
    assert all(r["images_per_s"] > 0 for r in h)
    assert run.class_names == CLASSES


def test_backbone_frozen_head_trained(run):
    ref = camkit.load_model("efficientnet_lite0").state_dict()  # the embedded ImageNet weights
    got = run.model.state_dict()
    head = tuple(prefix + "." for prefix in head_prefixes(run.model))  # ("net.classifier.",)
    backbone = [k for k in got if not k.startswith(head)]
    assert len(backbone) > 250
    # Weights AND BatchNorm running statistics are untouched when the backbone is frozen.
    assert all(torch.equal(got[k], ref[k]) for k in backbone)
    assert tuple(got["net.classifier.weight"].shape) == (5, 1280)


def test_log_and_plot(run):
    from PIL import Image

    from camkit.finetune.log import COLUMNS, read_log

    rows = read_log(run.out_dir / "log.csv")
    assert len(rows) == EPOCHS and tuple(rows[0]) == COLUMNS
    assert rows[-1]["train_loss"] == pytest.approx(run.history[-1]["train_loss"], rel=1e-5)
    png = np.asarray(Image.open(run.out_dir / "training.png").convert("RGB"))
    assert png.shape == (360, 900, 3)
    assert png.std() > 10  # curves and axes drawn, not a blank canvas


def test_checkpoint_reloads_with_identical_logits(run, photo_set):
    m = camkit.load_model(None, weights=str(run.out_dir / "best.pt"))
    assert m.name == "efficientnet_lite0" and m.categories == CLASSES and m.cam_kind == "exact"
    assert (m.preprocess.crop, m.preprocess.interpolation, m.preprocess.mean) == (INPUT, "bicubic", (0.5, 0.5, 0.5))
    _, x = _val_batch(photo_set, m)
    best_epoch = max(run.history, key=lambda r: r["val_acc"])["epoch"]
    with torch.no_grad():
        reloaded = m(x)
        if best_epoch == EPOCHS:  # best.pt is the final model: bit-identical logits
            assert torch.equal(reloaded, run.model.eval()(x))
    last = camkit.load_model(None, weights=str(run.out_dir / "last.pt"))
    with torch.no_grad():
        assert torch.equal(last(x), run.model.eval()(x))


def test_training_checkpoint_is_weights_only_loadable(run):
    ck = torch.load(run.out_dir / "last.pt", map_location="cpu", weights_only=True)
    assert ck["camkit_checkpoint"] == 1 and ck["epoch"] == EPOCHS and ck["model"] == "efficientnet_lite0"
    assert ck["num_classes"] == 5 and ck["pool"] == "avg" and ck["class_names"] == CLASSES
    assert ck["optimizer"]["state"] and ck["scheduler"]["last_epoch"] == EPOCHS * 4  # 40 images / 10 per step
    assert isinstance(ck["rng"]["torch"], torch.Tensor) and len(ck["rng"]["python"]["state"]) == 625
    assert ck["config"]["freeze_backbone"] is True and ck["config"]["lr"] == 0.01
    assert not list(run.out_dir.glob(".*.tmp"))


def test_cam_boxes_overlap_objects_better_after_finetuning(run, photo_set):
    _need_box_extraction()
    from camkit.explanation import explain

    ds, _ = _val_batch(photo_set, run.model)
    paths = [str(s.image_path) for s in ds.samples]
    truth = [[s.class_index] for s in ds.samples]
    gt = np.stack([s.boxes[0] for s in ds.samples]).astype(np.int64)

    def mean_iou(model) -> float:
        ex = explain(paths, model, classes=truth, resize_mode="squash")
        return float(_iou(np.stack([e.boxes[0] for e in ex]), gt).mean())

    after = mean_iou(run.model)
    # "Before" = the model as fine-tuning starts: same backbone, a fresh N(0, 0.01) head. A random
    # head's maps are a lottery, so average three draws.
    before = []
    for seed in range(3):
        torch.manual_seed(seed)
        m = prepare_model("efficientnet_lite0", 5, freeze_backbone=True).eval()
        m.preprocess = run.model.preprocess
        before.append(mean_iou(m))
    # Measured here: before 0.29 (0.24-0.33 over the three draws), after 0.39 (5x5 maps at 160 input).
    assert after > float(np.mean(before)) + 0.05, (after, before)


def test_explain_cli_reads_the_checkpoint(run, photo_set):
    _need_box_extraction()
    import json

    from typer.testing import CliRunner

    from camkit.cli.app import app

    image = photo_set.root / "val" / "cup" / "000.png"
    res = CliRunner().invoke(app, ["explain", str(image), "--weights", str(run.out_dir / "best.pt"), "--json", "-k", "2"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["model"] == "efficientnet_lite0"
    preds = doc["images"][0]["predictions"]
    assert len(preds) == 2 and all(p["label"] in CLASSES for p in preds)
    assert preds[0]["label"] == "cup"


# ------------------------------------------------------------------ resume exactness


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    # All runs compared bit for bit use the same thread count (float reductions may be split
    # differently across threads); one thread also keeps tiny ops fast on a loaded machine.
    return subprocess.run(
        [sys.executable, "-m", "camkit.cli.app", "finetune", *args],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, timeout=600,
    )


def test_resume_after_kill_equals_uninterrupted_run(tmp_path):
    ds = make_photo_dataset(tmp_path / "small", train_per_class=4, val_per_class=2, size=48, seed=1)
    # Every layer trains (BatchNorm statistics and momentum everywhere), at 32x32 input to be quick.
    args = ["--model", "efficientnet_lite0", "--train-all", "--epochs", "2", "--batch-size", "8", "--input-size", "32",
            "--workers", "0", "--deterministic", "--seed", "3", "--lr", "0.05", "--root", str(ds.root)]
    killed, full = tmp_path / "killed", tmp_path / "full"
    p = _cli(*args, "--out", str(killed), env={"CAMKIT_FINETUNE_KILL_AFTER_EPOCH": "1"})
    assert p.returncode == -9, p.stderr  # SIGKILL: no clean shutdown
    after_kill = torch.load(killed / "last.pt", weights_only=True)
    assert after_kill["epoch"] == 1 and not list(killed.glob(".*.tmp"))

    p = _cli("--root", str(ds.root), "--out", str(killed), "--resume", "--workers", "0")
    assert p.returncode == 0, p.stderr
    resumed = torch.load(killed / "last.pt", weights_only=True)

    p = _cli(*args, "--out", str(full))
    assert p.returncode == 0, p.stderr
    ref = torch.load(full / "last.pt", weights_only=True)
    assert resumed["epoch"] == ref["epoch"] == 2
    sd_r, sd_f = resumed["state_dict"], ref["state_dict"]
    assert sd_r.keys() == sd_f.keys()
    # Every weight, BatchNorm statistic and momentum buffer equal, bit for bit.
    assert all(torch.equal(sd_r[k], sd_f[k]) for k in sd_f)
    mom_r, mom_f = resumed["optimizer"]["state"], ref["optimizer"]["state"]
    assert len(mom_f) > 100 and all(torch.equal(mom_r[i]["momentum_buffer"], mom_f[i]["momentum_buffer"]) for i in mom_f)
    assert [r["train_loss"] for r in resumed["history"]] == [r["train_loss"] for r in ref["history"]]
    # ...and the first epoch really changed the weights (the comparison is not of two initial states).
    assert not torch.equal(after_kill["state_dict"]["net.conv_stem.weight"], sd_f["net.conv_stem.weight"])


# ------------------------------------------------------------------ surgery models, GAP vs GMP


def test_surgery_head_gmp_finetune_and_reload(photo_set, tmp_path):
    res = finetune(FinetuneConfig(
        model="alexnet_gap", pool="gmp", weights="random", freeze_backbone=True, dataset="imagefolder",
        root=str(photo_set.root), epochs=1, batch_size=20, workers=0, input_size=64, out=str(tmp_path / "gmp"),
    ))
    trainable = {n for n, p in res.model.named_parameters() if p.requires_grad}
    assert trainable == {"net.cam_conv.0.weight", "net.cam_conv.0.bias", "net.fc.weight", "net.fc.bias"}
    m = camkit.load_model(None, weights=str(tmp_path / "gmp" / "last.pt"))
    assert m.pool == "max" and m.name == "alexnet_gmp" and m.num_classes == 5
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(m(x), res.model(x))
        f = m.features(x)
        assert tuple(f.shape[1:]) == (1024, 3, 3)
        assert torch.equal(m(x), m.classifier(f.amax(dim=(2, 3))))


def test_freeze_keeps_backbone_batchnorm_in_eval():
    m = prepare_model("efficientnet_lite0", 3, freeze_backbone=True)
    set_train_mode(m, True, freeze_backbone=True)
    bns = [mod for n, mod in m.named_modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    assert bns and not any(b.training for b in bns)
    assert m.training and m.net.classifier.training
    assert {n for n, p in m.named_parameters() if p.requires_grad} == {"net.classifier.weight", "net.classifier.bias"}
    set_train_mode(m, True, freeze_backbone=False)
    assert all(b.training for b in bns)


def test_gap_surgery_vgg_trainable_layers():
    m = prepare_model("vgg16_gap", 7, weights="random", freeze_backbone=True)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable == {"net.cam_conv.0.weight", "net.cam_conv.0.bias", "net.fc.weight", "net.fc.bias"}
    assert m.num_classes == 7 and m.pool == "avg"
    assert prepare_model("vgg16_gap", 7, pool="gmp", weights="random").pool == "max"


def test_torchvision_weights_offline_is_a_clear_error():
    from camkit.errors import WeightsError

    hub = Path(torch.hub.get_dir()) / "checkpoints"
    if any(hub.glob("resnet18-*.pth")):
        pytest.skip("resnet18 weights are cached on this machine")
    with pytest.raises(WeightsError, match="weights=PATH"):
        prepare_model("resnet18", 5)


# ------------------------------------------------------------------ parts


def test_lr_schedule_golden_values():
    from camkit.finetune.trainer import lr_factor

    # warm-up 2 of 10: (0+1)/2, (1+1)/2; cosine t = (it-2)/8: it=6 -> t=.5 -> .5; it=9 -> t=7/8 ->
    # .5 (1 + cos(7 pi / 8)) = .5 (1 - .92388) = .03806.
    assert [lr_factor(i, 10, 2, "cosine") for i in (0, 1, 2, 6)] == [0.5, 1.0, 1.0, pytest.approx(0.5)]
    assert lr_factor(9, 10, 2, "cosine") == pytest.approx(0.5 * (1 + math.cos(7 * math.pi / 8)))
    assert lr_factor(9, 10, 2, "cosine") == pytest.approx(0.03806, abs=1e-5)
    # step, 8 iterations, no warm-up: x1 before 4, x0.1 from 4 (50 %), x0.01 from 6 (75 %).
    assert [lr_factor(i, 8, 0, "step") for i in (3, 4, 5, 6, 7)] == [1.0, 0.1, 0.1, pytest.approx(0.01), pytest.approx(0.01)]


def test_split_is_stratified_and_seeded():
    from camkit.finetune.data import split_samples

    samples = [(f"{c}_{i}.png", c) for c in range(3) for i in range(10)]
    tr, va = split_samples(samples, 0.2, seed=5)
    assert sorted(c for _, c in va) == [0, 0, 1, 1, 2, 2]  # round(0.2 * 10) = 2 per class
    assert set(tr).isdisjoint(va) and len(tr) + len(va) == 30
    assert split_samples(samples, 0.2, seed=5) == (tr, va)
    assert split_samples(samples, 0.2, seed=6)[1] != va


def test_atomic_save_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    from camkit.finetune import checkpoint

    path = tmp_path / "ck.pt"
    checkpoint.atomic_save({"a": torch.ones(3)}, path)

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.atomic_save({"a": torch.zeros(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_rng_state_round_trip_under_weights_only(tmp_path):
    import random

    from camkit.finetune.checkpoint import atomic_save, rng_state, set_rng_state

    torch.manual_seed(11)
    np.random.seed(12)
    random.seed(13)
    atomic_save({"rng": rng_state()}, tmp_path / "r.pt")
    want = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(torch.load(tmp_path / "r.pt", weights_only=True)["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(want[0], got[0]) and np.array_equal(want[1], got[1]) and want[2] == got[2]


def test_csv_and_imagefolder_datasets_agree(photo_set):
    from camkit.finetune.data import load_training_data

    ident = lambda im: im.size  # noqa: E731
    a = load_training_data("imagefolder", photo_set.root, ident, ident)
    b = load_training_data("csv", photo_set.root, ident, ident)  # the folder's train.csv / val.csv
    assert a.num_classes == b.num_classes == 5 and a.class_names == CLASSES and b.class_names is None
    key = lambda s: (Path(s[0]).resolve(), s[1])  # noqa: E731
    assert sorted(map(key, a.train.samples)) == sorted(map(key, b.train.samples))
    assert len(a.val) == 20 and a.train[0] == ((INPUT, INPUT), 0)


SHARED = Path(__file__).resolve().parents[2] / "shared/data/ilsvrc_val_sample"


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared ILSVRC sample not found at {SHARED}")
def test_ilsvrc_dataset_splits_val_without_train_folder():
    from camkit.finetune.data import load_training_data

    ident = lambda im: im.size  # noqa: E731
    d = load_training_data("ilsvrc", SHARED, ident, ident, val_fraction=0.25)
    assert d.num_classes == 1000 and len(d.class_names) == 1000
    assert len(d.train) + len(d.val) == 12 and len(d.val) >= 1


def test_cli_errors_are_one_line(tmp_path, photo_set):
    from typer.testing import CliRunner

    from camkit.cli.app import app

    runner = CliRunner()
    r = runner.invoke(app, ["finetune", "--root", str(photo_set.root), "--out", str(tmp_path / "none"), "--resume"])
    assert r.exit_code == 2 and "no last.pt in" in r.output and r.output.count("\n") == 1
    r = runner.invoke(app, ["finetune", "--root", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "is not a folder" in r.output
    r = runner.invoke(app, ["finetune", "--root", str(photo_set.root), "--dataset", "coco"])
    assert r.exit_code == 2 and "--dataset must be" in r.output


def test_resume_refuses_changed_options(run):
    from camkit.errors import CamkitError
    from camkit.finetune.trainer import resume_config

    saved = torch.load(run.out_dir / "last.pt", weights_only=True)["config"]
    assert resume_config(saved, {"workers": 4}).workers == 4
    with pytest.raises(CamkitError, match="lr=0.1 differs from 0.01, which this run was started with"):
        resume_config(saved, {"lr": 0.1})
    with pytest.raises(CamkitError, match="already holds a training run"):
        finetune(FinetuneConfig(root=str(run.out_dir), out=str(run.out_dir)))


def test_cub_dataset_uses_the_official_split(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
    try:
        from make_cub_fixture import make_cub_fixture
    finally:
        sys.path.pop(0)
    from camkit.datasets import read_cub
    from camkit.finetune.data import load_training_data

    root = make_cub_fixture(tmp_path)
    ident = lambda im: im.size  # noqa: E731
    d = load_training_data("cub", root, ident, ident)
    train, test = read_cub(root, "train"), read_cub(root, "test")
    assert d.class_names == train.class_names and d.num_classes == len(train.class_names)
    assert [s[0] for s in d.train.samples] == [str(s.image_path) for s in train.samples]
    assert [s[1] for s in d.val.samples] == [s.class_index for s in test.samples]
