"""`camkit finetune` hardening: one-class data refused, a NaN loss stops the run with one line, the
output folder is locked, a too-large input size is refused before training."""

from __future__ import annotations

import os

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from camkit.cli.app import app
from camkit.errors import DatasetError, ParameterError, RunDirectoryError
from camkit.finetune import FinetuneConfig, finetune
from camkit.io.run_lock import RunLock
from camkit.io.samples import sample_path

runner = CliRunner()


def _folder(root, classes, per_class=4):
    for split, n in (("train", per_class), ("val", 2)):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.open(sample_path({"cat": "chelsea", "cup": "coffee"}[c])).resize((64 + i, 64)).save(d / f"{i}.png")
    return root


def _cfg(root, out, **kw):
    base = dict(model="efficientnet_lite0", dataset="imagefolder", root=str(root), epochs=1, batch_size=4, workers=0,
                input_size=64, out=str(out))
    base.update(kw)
    return FinetuneConfig(**base)


def test_one_class_dataset_is_refused(tmp_path):
    root = _folder(tmp_path / "data", ["cat"])
    with pytest.raises(DatasetError, match=r"has one class \(cat\); a classifier needs at least two"):
        finetune(_cfg(root, tmp_path / "out"))
    assert not (tmp_path / "out" / "last.pt").exists()
    r = runner.invoke(app, ["finetune", "--root", str(root), "--out", str(tmp_path / "o2"), "--epochs", "1", "--workers", "0"])
    assert r.exit_code == 2 and r.stderr.strip().startswith("error:") and "one class" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_num_classes_one_is_a_parameter_error(tmp_path):
    root = _folder(tmp_path / "data", ["cat", "cup"])
    with pytest.raises(ParameterError, match=r"^num_classes=1 "):
        finetune(_cfg(root, tmp_path / "out", num_classes=1))


def test_nan_loss_stops_the_run_with_one_line(tmp_path):
    root = _folder(tmp_path / "data", ["cat", "cup"])
    with pytest.raises(ParameterError, match=r"^lr=1e\+30 is too high: the (training loss became (nan|inf) at epoch \d+ step \d+|weights became non-finite during epoch \d+)"):
        finetune(_cfg(root, tmp_path / "out", lr=1e30, epochs=3))
    last = tmp_path / "out" / "last.pt"
    if last.exists():  # an earlier finite epoch may be saved, never one of NaN weights
        state = torch.load(last, weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_out_locked_by_another_run(tmp_path):
    root = _folder(tmp_path / "data", ["cat", "cup"])
    out = tmp_path / "out"
    with RunLock(out, "camkit finetune"):
        with pytest.raises(RunDirectoryError, match=f"{out} is in use by pid {os.getpid()}"):
            finetune(_cfg(root, out))
    (tmp_path / "f.txt").write_text("x")
    r = runner.invoke(app, ["finetune", "--root", str(root), "--out", str(tmp_path / "f.txt" / "x")])
    assert r.exit_code == 2 and r.stderr.startswith(f"error: cannot write to {tmp_path / 'f.txt' / 'x'}"), r.stderr


def test_out_is_a_file(tmp_path):
    root = _folder(tmp_path / "data", ["cat", "cup"])
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunDirectoryError, match="is a file"):
        finetune(_cfg(root, tmp_path / "f"))


def test_input_size_that_cannot_fit_is_refused_before_training(tmp_path, monkeypatch):
    from camkit import limits

    monkeypatch.setattr(limits, "available_memory_bytes", lambda: 2 * 1024**3)
    root = _folder(tmp_path / "data", ["cat", "cup"])
    r = runner.invoke(app, ["finetune", "--root", str(root), "--out", str(tmp_path / "o"), "--input-size", "20000",
                            "--workers", "0", "--epochs", "1"])
    assert r.exit_code == 2, r.output
    line = r.stderr.strip()
    assert line.startswith("error: --input-size 20000 is too large: needs ~") and "2.0 GB are available" in line
    assert not (tmp_path / "o" / "last.pt").exists()


def test_resume_names_the_changed_parameter():
    from camkit.finetune.trainer import resume_config

    with pytest.raises(ParameterError, match=r"^lr=0.1 differs from 0.01, which this run was started with"):
        resume_config({"lr": 0.01}, {"lr": 0.1})
