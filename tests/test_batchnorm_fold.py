"""camkit.models.batchnorm_fold: an inference copy with each batch norm folded into the convolution before it.

Golden values worked by hand on a one-convolution network, the real EfficientNet-Lite0 against its unfolded
self (features, classes, CAM boxes on real photos), the networks it must leave alone (a convolution output
that also feeds something else, training mode, the opt-out), and evaluate's use of it (run.json, resume)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from torch import nn

from camkit.errors import CamkitError
from camkit.models.batchnorm_fold import OPT_OUT_ENV, TOLERANCE, fold_batchnorm
from camkit.models.cam_model import CAMModel
from camkit.models.efficientnet_lite import BatchNormAct2d


def _squashed(model: CAMModel, photos) -> torch.Tensor:
    """The model's input batch ``[N, 3, S, S]`` of ``photos`` (HxWx3 uint8 arrays), squashed as evaluate does."""
    return torch.from_numpy(np.stack([model.preprocess.to_array(Image.fromarray(p), "squash")[0] for p in photos]))


def _tiny(net: nn.Module, channels: int = 2) -> CAMModel:
    head = nn.Sequential()
    head.add_module("fc", nn.Linear(channels, 3))
    net.add_module("head", head)
    model = CAMModel(net, lambda n, x: n.body(x), "head.fc", name="tiny")
    return model.eval()


def _conv_bn(bn: nn.Module) -> CAMModel:
    net = nn.Module()
    net.body = nn.Sequential()
    net.body.add_module("conv", nn.Conv2d(3, 2, 1, bias=True))  # reads channel 0 only (weights below)
    net.body.add_module("bn", bn)
    model = _tiny(net)
    with torch.no_grad():
        net.body.conv.weight.copy_(torch.tensor([[2.0, 0, 0], [-1.0, 0, 0]]).view(2, 3, 1, 1))
        net.body.conv.bias.copy_(torch.tensor([1.0, 0.5]))
        bn.running_mean.copy_(torch.tensor([3.0, -2.0]))
        bn.running_var.copy_(torch.tensor([4.0 - bn.eps, 0.25 - bn.eps]))  # sqrt(var + eps) = 2 and 0.5
        bn.weight.copy_(torch.tensor([0.5, 3.0]))
        bn.bias.copy_(torch.tensor([1.0, -1.0]))
    return model


def test_the_folded_convolution_holds_the_hand_worked_weights():
    """y = (w x + b - mean) / sqrt(var + eps) * gamma + beta: channel 0 (2x + 1 - 3) / 2 * 0.5 + 1 = 0.5 x + 0.5,
    channel 1 (-x + 0.5 + 2) / 0.5 * 3 - 1 = -6 x + 14."""
    model = _conv_bn(nn.BatchNorm2d(2))
    folded = fold_batchnorm(model, input_size=8)
    assert folded is not None
    conv = folded.net.body.conv
    assert torch.allclose(conv.weight.view(2, 3), torch.tensor([[0.5, 0, 0], [-6.0, 0, 0]]), atol=1e-6)
    assert torch.allclose(conv.bias, torch.tensor([0.5, 14.0]), atol=1e-5)
    assert isinstance(folded.net.body.bn, nn.Identity)  # same name, now the identity
    x = torch.tensor([[[[0.0, 1.0], [2.0, -3.0]]]]).repeat(1, 3, 1, 1)
    with torch.inference_mode():
        assert torch.allclose(folded.features(x), model.features(x), atol=1e-5)
        assert torch.allclose(folded.features(x)[0, 1], -6 * x[0, 0] + 14, atol=1e-5)


def test_a_norm_with_its_activation_keeps_the_activation():
    model = _conv_bn(BatchNormAct2d(2, act=True))
    folded = fold_batchnorm(model, input_size=8)
    assert folded is not None and isinstance(folded.net.body.bn, nn.ReLU6)
    x = torch.linspace(-5, 5, 16).view(1, 1, 4, 4).repeat(1, 3, 1, 1)
    with torch.inference_mode():
        assert torch.allclose(folded.features(x), model.features(x), atol=1e-5)
        assert float(model.features(x).min()) == 0.0 and float(model.features(x).max()) == 6.0  # both clamps reached


def test_the_given_model_is_not_changed():
    model = _conv_bn(nn.BatchNorm2d(2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert fold_batchnorm(model, input_size=8) is not None
    assert isinstance(model.net.body.bn, nn.BatchNorm2d)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not model._forward_hooks and not any(m._forward_hooks for m in model.modules())  # hooks removed


class _AlsoUsesTheConvolution(nn.Module):
    """The convolution's output feeds the batch norm and, unnormalised, an addition: folding would change the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


def test_a_convolution_output_used_elsewhere_is_not_folded():
    net = nn.Module()
    net.body = _AlsoUsesTheConvolution()
    model = _tiny(net)
    with torch.no_grad():
        net.body.bn.running_var.fill_(9.0)  # a batch norm that is not the identity
        net.body.bn.running_mean.fill_(1.0)
    assert fold_batchnorm(model, input_size=8) is None  # the check against the original refuses it


class _TwoNormsOfOneConvolution(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.bn1, self.bn2 = nn.BatchNorm2d(2), nn.BatchNorm2d(2)

    def forward(self, x):
        y = self.conv(x)
        return self.bn1(y) + self.bn2(y)


def test_a_convolution_feeding_two_norms_is_not_folded():
    """Each norm alone would fold correctly, but the one convolution cannot take both: neither is folded."""
    net = nn.Module()
    net.body = _TwoNormsOfOneConvolution()
    assert fold_batchnorm(_tiny(net), input_size=8) is None


def test_training_mode_opt_out_and_nothing_to_fold_give_none(monkeypatch):
    model = _conv_bn(nn.BatchNorm2d(2))
    assert fold_batchnorm(model.train(), input_size=8) is None  # batch statistics: not an affine map
    model.eval()
    monkeypatch.setenv(OPT_OUT_ENV, "0")
    assert fold_batchnorm(model, input_size=8) is None
    monkeypatch.delenv(OPT_OUT_ENV)
    net = nn.Module()
    net.body = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU())
    assert fold_batchnorm(_tiny(net), input_size=8) is None


class _OtherNorm(nn.BatchNorm2d):
    def forward(self, x):
        return super().forward(x) * 2  # a forward fold_batchnorm does not know


def test_a_batch_norm_of_an_unknown_kind_stays():
    net = nn.Module()
    net.body = nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2), nn.Conv2d(2, 2, 1), _OtherNorm(2))
    folded = fold_batchnorm(_tiny(net), input_size=8)
    assert folded is not None
    assert isinstance(folded.net.body[1], nn.Identity) and type(folded.net.body[3]) is _OtherNorm


def test_lite0_folds_every_batch_norm_and_gives_the_same_classes_and_boxes(lite0):
    """The embedded EfficientNet-Lite0: its 49 batch norms fold; on chelsea, coffee and rocket the features differ
    by float rounding only (measured ~6e-6 of their range), the top-5 classes are the same and so are the
    CVPR16 boxes of the CAMs."""
    from camkit.cam.sources import make_map_source
    from camkit.localize.cvpr16 import cvpr16_box
    from camkit.resample import resize_map_cubic

    folded = fold_batchnorm(lite0)
    assert folded is not None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in lite0.modules()) == 49
    assert not any(p.requires_grad for p in folded.parameters())
    photos = (data.chelsea(), data.coffee(), data.rocket())
    x = _squashed(lite0, photos)
    with torch.inference_mode():
        a, b = lite0.features(x), folded.features(x)
    assert float((a - b).abs().max()) <= TOLERANCE * float(a.abs().max())
    gt = torch.zeros(3, dtype=torch.int64)
    (ca, _, ma), (cb, _, mb) = make_map_source(lite0)(x, gt), make_map_source(folded)(x, gt)
    assert np.array_equal(ca, cb)
    for i in range(3):
        box_a = cvpr16_box(resize_map_cubic(ma[i, 1], 224), 0.2)
        box_b = cvpr16_box(resize_map_cubic(mb[i, 1], 224), 0.2)
        assert np.array_equal(box_a, box_b)


def test_evaluate_records_the_fold_and_resume_refuses_the_other_way(tmp_path, lite0, ilsvrc_sample, monkeypatch):
    """Plain CAM in evaluate runs on the folded copy: run.json says so; a run made with it continues only with
    it, and one made without (CAMKIT_FOLD_BATCHNORM=0, or before camkit folded) only without, and the message
    names the switch. Both give the same summary on the sample (maps differ by float rounding only)."""
    from camkit.datasets import read_ilsvrc
    from camkit.evaluate import evaluate

    ds = read_ilsvrc(ilsvrc_sample)
    opts = dict(batch_size=4, progress=False, gallery_size=0)
    folded = evaluate(ds, lite0, out_dir=tmp_path / "folded", **opts)
    assert json.loads((tmp_path / "folded" / "run.json").read_text())["model"]["batchnorm"] == "folded"
    monkeypatch.setenv(OPT_OUT_ENV, "0")
    with pytest.raises(CamkitError, match="folded batch norms .*CAMKIT_FOLD_BATCHNORM=0"):
        evaluate(ds, lite0, out_dir=tmp_path / "folded", resume=True, **opts)
    plain = evaluate(ds, lite0, out_dir=tmp_path / "plain", **opts)
    assert "batchnorm" not in json.loads((tmp_path / "plain" / "run.json").read_text())["model"]
    monkeypatch.delenv(OPT_OUT_ENV)
    with pytest.raises(CamkitError, match="folded batch norms"):
        evaluate(ds, lite0, out_dir=tmp_path / "plain", resume=True, **opts)
    assert folded["model"] == {**plain["model"], "batchnorm": "folded"}
    assert {k: v for k, v in folded.items() if k not in ("run", "model")} == {
        k: v for k, v in plain.items() if k not in ("run", "model")}


@pytest.mark.parametrize(("name", "folds"), [("resnet18", 20), ("densenet121", 59)])
def test_torchvision_networks_fold_where_a_norm_follows_a_convolution(name, folds):
    """ResNet-18 (residual additions, a downsample branch): all 20 batch norms fold. DenseNet-121 normalises
    concatenations (norm1, transitions, norm5): only the 59 after a convolution (norm2 of each dense layer) do.
    Batch-norm statistics are drawn at random so that a wrongly folded norm would show in the features."""
    from camkit.models import load_model

    model = load_model(name, "random")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    folded = fold_batchnorm(model, input_size=64)
    assert folded is not None
    remaining = sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) - remaining == folds
    x = torch.randn(2, 3, 64, 64, generator=g)
    with torch.inference_mode():
        a, b = model.features(x), folded.features(x)
    assert float((a - b).abs().max()) <= TOLERANCE * float(a.abs().max())


def test_plain_cam_faithfulness_runs_on_the_folded_copy_with_the_same_numbers(lite0, ilsvrc_sample, monkeypatch):
    """Deletion/insertion AUCs and the confidence changes of plain CAM maps, computed on the folded copy, equal
    the streaming FaithfulnessEvaluator on the model itself to float rounding."""
    from camkit.datasets import read_ilsvrc
    from camkit.evaluate import evaluate
    from camkit.evaluate import faithfulness as faith_module
    from camkit.evaluate.loop import SquashTransform
    from camkit.io import load_image
    from camkit.metrics import FaithfulnessEvaluator

    seen = []
    real = faith_module.faithfulness_results

    def spy(model, *args, **kwargs):
        seen.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr("camkit.evaluate.loop.faithfulness_results", spy)
    ds = read_ilsvrc(ilsvrc_sample)
    ds.samples = ds.samples[:3]
    s = evaluate(ds, lite0, batch_size=3, progress=False, faithfulness=True, faithfulness_steps=8)
    assert seen and all(m is not lite0 and not any(isinstance(x, nn.BatchNorm2d) for x in m.modules()) for m in seen)
    tf = SquashTransform(lite0.preprocess.with_input_size(224))
    from camkit.cam.sources import make_map_source

    x = torch.stack([tf(load_image(smp.image_path)) for smp in ds.samples])
    gt = torch.tensor([smp.class_index for smp in ds.samples])
    _, _, maps = make_map_source(lite0)(x, gt)
    fe = FaithfulnessEvaluator(lite0, steps=8)
    fe.accumulate(x, torch.from_numpy(maps[:, 0]), gt)
    ref = fe.compute()
    for k in ("deletion_auc", "insertion_auc", "average_drop", "increase_in_confidence"):
        assert s["faithfulness"][k] == pytest.approx(ref[k], rel=1e-5, abs=1e-6), k  # average drop is in %


def test_a_target_convolution_keeps_its_batch_norm(lite0):
    """A method aimed at ``net.conv_head`` needs that convolution's own output: it and the norm after it (``net.bn2``)
    stay, the other 48 fold."""
    folded = fold_batchnorm(lite0, keep=["net.conv_head"])
    assert folded is not None
    assert type(folded.get_submodule("net.bn2")) is BatchNormAct2d
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == 1


@pytest.mark.parametrize(("method", "layer"), [("gradcam", None), ("gradcam", "net.conv_head"),
                                                ("gradcam++", "net.blocks.5"), ("scorecam", "net.blocks.2"),
                                                ("layercam", "net.bn2"), ("eigencam", None), ("sscam", "net.blocks.1"),
                                                ("iscam", "net.blocks.1"), ("smoothgradcam++", None),
                                                ("ablationcam", "net.blocks.5")])
def test_layer_and_logit_methods_give_the_same_maps_on_the_folded_copy(lite0, method, layer):
    """What evaluate does for these methods: the maps computed on the copy folded outside the target layer equal
    the model's own to float rounding (measured 0.7-7.0e-6 of their range; same classes). ``net.bn2`` is a folded
    norm+activation: its name now holds the activation, whose output is the norm's."""
    from camkit.cam.methods import compute_method_maps, layer_modules, reads_layer_and_logits_only

    assert reads_layer_and_logits_only(method)
    photos = (data.chelsea(),) if method in ("sscam", "iscam") else (data.chelsea(), data.coffee())  # many noisy copies a channel
    x = _squashed(lite0, photos)
    folded = fold_batchnorm(lite0, keep=layer_modules(lite0, layer))
    assert folded is not None
    a = compute_method_maps(lite0, x, method, 2, layer, batch_size=64)
    b = compute_method_maps(folded, x, method, 2, layer, batch_size=64)
    assert torch.equal(a.class_idx, b.class_idx) and a.layer == b.layer
    scale = float(a.maps.abs().max())
    assert scale > 0 and float((a.maps - b.maps).abs().max()) <= 1e-4 * scale


def test_methods_with_their_own_pipeline_run_on_the_model_itself(lite0, ilsvrc_sample):
    from camkit.cam.methods import reads_layer_and_logits_only
    from camkit.datasets import read_ilsvrc
    from camkit.evaluate import evaluate

    assert not any(reads_layer_and_logits_only(m) for m in ("cam", "fullgrad", "guidedgradcam", "guidedbackprop", "sobelcam"))
    ds = read_ilsvrc(ilsvrc_sample)
    ds.samples = ds.samples[:2]
    s = evaluate(ds, lite0, batch_size=2, progress=False, method="sobelcam")
    assert "batchnorm" not in s["model"]
