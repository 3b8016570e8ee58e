"""`camkit evaluate --method M --faithfulness`: the runner's per-image faithfulness equals the streaming
FaithfulnessEvaluator fed the same inputs and maps; gradient-only models refuse plain CAM."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from camkit.cam.sources import make_map_source
from camkit.cli.app import app
from camkit.datasets import read_ilsvrc
from camkit.evaluate import evaluate
from camkit.evaluate.loop import SquashTransform
from camkit.io import load_image
from camkit.metrics import FaithfulnessEvaluator


def test_gradcam_faithfulness_equals_streaming_evaluator(lite0, ilsvrc_sample):
    ds = read_ilsvrc(ilsvrc_sample)
    ds.samples = ds.samples[:3]
    s = evaluate(ds, lite0, batch_size=3, method="gradcam", progress=False, faithfulness=True, faithfulness_steps=8)
    assert s["protocol"]["method"] == "gradcam" and s["protocol"]["faithfulness_steps"] == 8

    # Independent route: the same squashed inputs and GT-class maps through FaithfulnessEvaluator.
    tf = SquashTransform(lite0.preprocess.with_input_size(224))
    x = torch.stack([tf(load_image(smp.image_path)) for smp in ds.samples])
    gt = torch.tensor([smp.class_index for smp in ds.samples])
    _, _, maps = make_map_source(lite0, "gradcam")(x, gt)
    fe = FaithfulnessEvaluator(lite0, steps=8)
    fe.accumulate(x, torch.from_numpy(maps[:, 0]), gt)
    ref = fe.compute()
    for k in ("deletion_auc", "insertion_auc", "average_drop", "increase_in_confidence"):
        assert s["faithfulness"][k] == pytest.approx(ref[k], abs=1e-6), k
    assert s["faithfulness"]["n"] == 3 and 0 <= s["faithfulness"]["deletion_auc"] <= 1


def test_gradient_only_model_refuses_plain_cam(tmp_path, ilsvrc_sample):
    r = CliRunner().invoke(app, ["evaluate", "--dataset", "ilsvrc", "--root", str(ilsvrc_sample), "--model", "vgg16",
                                 "--weights", "random", "--out", str(tmp_path / "o"), "--limit", "1"])
    assert r.exit_code == 2 and "--method gradcam" in r.stderr and len(r.stderr.strip().splitlines()) == 1
