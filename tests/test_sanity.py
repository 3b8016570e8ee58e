"""Sanity checks (Adebayo et al. 2018): similarity measures, the randomization cascade, the data test, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from camkit.models.cam_model import CAMModel
from camkit.preprocess import Preprocess
from camkit.sanity import (
    data_randomization_test,
    model_randomization_test,
    randomization_blocks,
    randomized_copies,
    spearman,
    ssim,
    train_head,
)


class TinyNet(nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.stages = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1))
        self.fc = nn.Linear(16, classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.stages(torch.relu(self.bn(self.stem(x)))))


def tiny_model(seed: int = 0, classes: int = 3) -> CAMModel:
    torch.manual_seed(seed)
    net = TinyNet(classes)
    with torch.no_grad():  # a "trained" norm layer, so that re-initialising it is visible
        net.bn.weight.uniform_(0.5, 1.5)
        net.bn.bias.normal_()
        net.bn.running_mean.normal_()
        net.bn.running_var.uniform_(0.5, 2.0)
    pre = Preprocess(resize=32, crop=32, interpolation="bilinear", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    return CAMModel(net, lambda net, x: net.forward_features(x), "fc", name="tiny", preprocess=pre).eval()


def photos(n: int = 2) -> list[np.ndarray]:
    return [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut(), skimage.data.rocket()][:n]


# ---------------------------------------------------------------- similarity


def test_spearman_golden_values():
    # ranks 1,2,3,4 vs 1,3,2,4: sum d^2 = 2 -> rho = 1 - 6*2 / (4*15) = 0.8
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([10.0, 30, 20, 40])) == pytest.approx(0.8)
    m = np.random.default_rng(0).normal(size=(9, 9))
    assert spearman(m, m) == pytest.approx(1.0)
    assert spearman(m, -m) == pytest.approx(-1.0)
    assert spearman(m, -m, absolute=True) == pytest.approx(1.0)
    assert spearman(m, np.zeros_like(m)) == 0.0  # a constant map has no ranking


def test_ssim_identity_and_scale_invariance():
    m = np.random.default_rng(1).random((32, 32))
    assert ssim(m, m) == pytest.approx(1.0)
    assert ssim(m, 5 * m + 3) == pytest.approx(1.0)  # min-max normalised first
    assert ssim(m, np.random.default_rng(2).random((32, 32))) < 0.2


# ---------------------------------------------------------------- blocks and randomization


def test_blocks_top_down_with_norm_merged():
    model = tiny_model()
    blocks = randomization_blocks(model, torch.zeros(1, 3, 32, 32))
    assert [b.name for b in blocks] == ["fc", "stages.2", "stages.0", "stem"]
    assert blocks[-1].names == ["net.stem", "net.bn"]


def test_cascade_randomizes_cumulatively_and_leaves_the_model_alone():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    blocks = randomization_blocks(model, torch.zeros(1, 3, 32, 32))
    changed = []
    for _block, copy in randomized_copies(model, blocks, "cascading", seed=0):
        sd = copy.state_dict()
        changed.append(sorted({k.split(".")[1] for k in sd if not torch.equal(sd[k], before[k]) and "num_batches" not in k}))
    assert changed == [["fc"], ["fc", "stages"], ["fc", "stages"], ["bn", "fc", "stages", "stem"]]
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    independent = [c for _b, c in randomized_copies(model, blocks, "independent", seed=0)]
    assert torch.equal(independent[1].net.fc.weight, before["net.fc.weight"])
    assert not torch.equal(independent[1].net.stages[2].weight, before["net.stages.2.weight"])


def test_same_seed_same_randomized_models():
    model = tiny_model()
    blocks = randomization_blocks(model, torch.zeros(1, 3, 32, 32))
    a = [c.state_dict() for _b, c in randomized_copies(model, blocks, seed=7)]
    b = [c.state_dict() for _b, c in randomized_copies(model, blocks, seed=7)]
    for sa, sb in zip(a, b, strict=True):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_tiny_model_result_shape_and_first_step_is_identity():
    r = model_randomization_test(tiny_model(), photos(2), ["cam", "gradcam"], classes=[0, 2])
    assert r.steps == ["original", "fc", "stages.2", "stages.0", "stem"]
    for method in ("cam", "gradcam"):
        for measure in ("spearman", "spearman_abs", "ssim"):
            assert len(r.scores[method][measure]) == 5
            assert r.scores[method][measure][0] == 1.0


@pytest.mark.slow
def test_gradcam_maps_decorrelate_on_the_embedded_model():
    from camkit.models import load_model

    r = model_randomization_test(load_model(), [Image.fromarray(skimage.data.chelsea())], ["cam", "gradcam"])
    assert r.steps[:3] == ["original", "classifier", "conv_head"] and r.steps[-1] == "conv_stem"
    # On a pool+linear head Grad-CAM is CAM times a positive factor, so every similarity agrees.
    for measure in ("spearman", "spearman_abs", "ssim"):
        np.testing.assert_allclose(r.scores["gradcam"][measure], r.scores["cam"][measure], atol=1e-6)
    sp = r.scores["gradcam"]["spearman_abs"]
    assert sp[0] == 1.0
    assert min(sp[2:]) < 0.3  # once the features are random the map's ranking is gone
    assert max(r.scores["gradcam"]["ssim"][2:]) < 0.75


# ---------------------------------------------------------------- data randomization


def test_train_head_fits_its_labels():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(12, 20, generator=g)
    labels = torch.tensor([0, 1, 2] * 4)
    head = train_head(feats, labels, 3)
    assert bool((head(feats).argmax(1) == labels).all())


def test_data_randomization_on_a_tiny_model():
    images = photos(4) * 2
    labels = [0, 1, 0, 1] * 2  # the same photo always has the same true label
    r = data_randomization_test(tiny_model(), images, labels, images[:2], labels[:2], ["cam"], seed=3)
    assert r.steps == ["true labels", "permuted labels"]
    assert r.extra["train_accuracy_true_labels"] == 1.0
    assert r.scores["cam"]["spearman"][0] == 1.0
    assert r.scores["cam"]["spearman"][1] < 0.999  # a differently trained head draws another map


def test_data_randomization_refuses_a_single_class():
    from camkit.errors import DatasetError

    with pytest.raises(DatasetError, match="at least 2 classes"):
        data_randomization_test(tiny_model(), photos(2), [0, 0], photos(1), [0], ["cam"])


# ---------------------------------------------------------------- CLI


def test_cli_writes_json_csv_and_plot(tmp_path):
    from camkit.cli.app import app

    photo = tmp_path / "cat.png"
    Image.fromarray(skimage.data.chelsea()).resize((96, 64)).save(photo)
    out = tmp_path / "sanity"
    res = CliRunner().invoke(app, ["sanity", str(photo), "--model", "cifar_resnet18", "--weights", "random",
                                   "--method", "cam", "--method", "gradcam", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["test"] == "cascading" and set(doc["scores"]) == {"cam", "gradcam"}
    assert doc["steps"][0] == "original" and len(doc["steps"]) > 3
    assert {p.name for p in out.iterdir()} >= {"sanity.json", "sanity.csv", "sanity.png"}
    rows = (out / "sanity.csv").read_text().splitlines()
    assert rows[0] == "method,measure,step_index,step,mean,std" and len(rows) == 1 + 2 * 3 * len(doc["steps"])
