"""`camkit evaluate --method M --faithfulness`: the runner's per-image faithfulness equals the streaming
FaithfulnessEvaluator fed the same inputs and maps; gradient-only models refuse plain CAM and default to
Grad-CAM; fused layers, smoothing and --sanity reach the run."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from camkit.cam.methods import layer_modules
from camkit.cam.sources import make_map_source
from camkit.cli.app import app
from camkit.datasets import read_ilsvrc
from camkit.evaluate import evaluate
from camkit.evaluate.loop import SquashTransform
from camkit.io import load_image
from camkit.metrics import FaithfulnessEvaluator
from camkit.models.batchnorm_fold import fold_batchnorm


def test_gradcam_faithfulness_equals_streaming_evaluator(lite0, ilsvrc_sample):
    ds = read_ilsvrc(ilsvrc_sample)
    ds.samples = ds.samples[:3]
    s = evaluate(ds, lite0, batch_size=3, method="gradcam", progress=False, faithfulness=True, faithfulness_steps=8)
    assert s["protocol"]["method"] == "gradcam" and s["protocol"]["faithfulness_steps"] == 8

    # Independent route: the same squashed inputs and GT-class maps through FaithfulnessEvaluator, on the network
    # the run computes with (Grad-CAM reads only its layer and the logits: the batch norms are folded)
    assert s["model"]["batchnorm"] == "folded"
    net = fold_batchnorm(lite0, 224)
    tf = SquashTransform(lite0.preprocess.with_input_size(224))
    x = torch.stack([tf(load_image(smp.image_path)) for smp in ds.samples])
    gt = torch.tensor([smp.class_index for smp in ds.samples])
    _, _, maps = make_map_source(net, "gradcam")(x, gt)
    fe = FaithfulnessEvaluator(net, steps=8)
    fe.accumulate(x, torch.from_numpy(maps[:, 0]), gt)
    ref = fe.compute()
    for k in ("deletion_auc", "insertion_auc", "average_drop", "increase_in_confidence"):
        assert s["faithfulness"][k] == pytest.approx(ref[k], abs=1e-6), k
    assert s["faithfulness"]["n"] == 3 and 0 <= s["faithfulness"]["deletion_auc"] <= 1


def test_gradient_only_model_refuses_plain_cam_and_defaults_to_gradcam(tmp_path, ilsvrc_sample):
    import json

    args = ["evaluate", "--dataset", "ilsvrc", "--root", str(ilsvrc_sample), "--model", "vgg16", "--weights", "random",
            "--limit", "1", "--no-progress"]
    r = CliRunner().invoke(app, [*args, "--method", "cam", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "--method gradcam" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "d"), "--json"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["protocol"]["method"] == "gradcam"


def test_fused_layers_and_smoothing_are_the_maps_scored_and_resume(tmp_path, lite0, ilsvrc_sample):
    """`layer=[a, b]` + `smooth` reach the map source (per-image maps equal compute_method_maps fed the same
    inputs), the protocol records them, and a run stopped early resumes to the same summary."""
    from camkit.cam.methods import compute_method_maps
    from camkit.evaluate.records import read_records

    ds = read_ilsvrc(ilsvrc_sample)
    ds.samples = ds.samples[:2]
    opts = {"method": "gradcam", "layer": ["net.blocks.5", "net.bn2"], "smooth": "eigen", "batch_size": 1, "progress": False}
    full = evaluate(ds, lite0, out_dir=tmp_path / "full", **opts)
    p = full["protocol"]
    assert (p["method"], p["layer"], p["smooth"], p["seed"]) == ("gradcam", ["net.blocks.5", "net.bn2"], "eigen", 0)

    tf = SquashTransform(lite0.preprocess.with_input_size(224))
    x = torch.stack([tf(load_image(smp.image_path)) for smp in ds.samples])
    gt = torch.tensor([smp.class_index for smp in ds.samples])
    idx, _, maps = make_map_source(lite0, "gradcam", layer=opts["layer"], smooth="eigen")(x[:2], gt[:2])
    direct = compute_method_maps(lite0, x[:2], "gradcam", torch.from_numpy(idx), opts["layer"], smooth="eigen")
    assert torch.allclose(torch.from_numpy(maps), direct.maps.float(), atol=1e-6)
    # The runner scores exactly those maps: a run fed that source explicitly gives the same metrics (computed, as
    # the run computes them, on the copy with the batch norms folded outside the target layers)
    assert full["model"]["batchnorm"] == "folded"
    net = fold_batchnorm(lite0, 224, keep=layer_modules(lite0, opts["layer"]))
    source = make_map_source(net, "gradcam", layer=opts["layer"], smooth="eigen")
    same = evaluate(ds, lite0, batch_size=1, progress=False, map_source=source, method="gradcam")
    plain = evaluate(ds, lite0, batch_size=1, progress=False, method="gradcam")
    metrics = ("maxboxacc_v2", "maxboxacc_v2_per_iou", "gt_known_loc", "top1_loc", "curves")
    assert all(same[k] == full[k] for k in metrics)
    assert any(plain[k] != full[k] for k in metrics)  # and the options changed them

    # Stop after the first batch (drop the second batch's records), then resume: same summary.
    import shutil

    part = tmp_path / "part"
    shutil.copytree(tmp_path / "full", part)
    log = (part / "records.jsonl").read_text().splitlines(keepends=True)
    assert len(read_records(part / "records.jsonl").records) == 2
    (part / "records.jsonl").write_text("".join(log[:1]))
    (part / "summary.json").unlink()
    resumed = evaluate(ds, lite0, out_dir=part, resume=True, **opts)
    strip = ("run",)
    assert {k: v for k, v in resumed.items() if k not in strip} == {k: v for k, v in full.items() if k not in strip}


def test_evaluate_sanity_flag_writes_the_randomization_test(tmp_path, ilsvrc_sample):
    """`camkit evaluate --sanity`: sanity.json holds the cascading test of the run's method on the first images,
    equal to camkit.sanity.model_randomization_test called directly; Grad-CAM decorrelates as the paper reports."""
    import json

    from camkit.models import load_model
    from camkit.sanity import model_randomization_test

    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["evaluate", "--dataset", "ilsvrc", "--root", str(ilsvrc_sample), "--limit", "2",
                                 "--method", "gradcam", "--sanity", "--sanity-images", "2", "--out", str(out),
                                 "--no-progress", "--json"])
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    saved = json.loads((out / "sanity.json").read_text())
    assert doc["sanity"]["scores"] == saved["scores"] and (out / "sanity.png").stat().st_size > 5_000
    ds = read_ilsvrc(ilsvrc_sample)
    direct = model_randomization_test(load_model(), [str(s.image_path) for s in ds.samples[:2]], ["gradcam"],
                                      classes=[s.class_index for s in ds.samples[:2]])
    assert saved["steps"] == direct.steps and saved["steps"][0] == "original"
    for measure, values in direct.scores["gradcam"].items():
        assert saved["scores"]["gradcam"][measure] == pytest.approx(values, abs=1e-9)
    assert saved["scores"]["gradcam"]["spearman_abs"][0] == 1.0
    assert saved["scores"]["gradcam"]["spearman_abs"][-1] < 0.5  # fully randomized: maps no longer the trained ones
