"""Model registry: the CAM decomposition reproduces each network and the exactness invariant holds.

For every registered pool+linear model (random weights; the invariant holds for any weights):
    mean_xy M_c + b_c == logit_c            to 1e-4 relative (GAP)
and the explicit decomposition head(features(x)) equals the original network's own forward.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from camkit.cam import compute_cams
from camkit.errors import ModelError, WeightsError
from camkit.models import get_spec, list_models, load_model

# The larger torchvision ConvNeXt/Swin members run the same family code as their tiny member: test that one.
_SAME_CODE_AS_TINY = {"convnext_small", "convnext_base", "convnext_large", "swin_s", "swin_b", "swin_v2_s", "swin_v2_b"}
CAM_SPECS = [s for s in list_models() if s.cam_kind in ("exact", "needs-finetune") and s.name not in _SAME_CODE_AS_TINY]


def _size(model) -> int:
    return 32 if model.preprocess.crop <= 32 else 96  # CIFAR nets take 32x32; 96 keeps big nets quick


@pytest.mark.parametrize("name", [s.name for s in CAM_SPECS])
def test_invariant_and_decomposition(name):
    torch.manual_seed(0)
    model = load_model(name, weights="random")
    x = torch.randn(2, 3, _size(model), _size(model))
    res = compute_cams(model, x, classes=4)
    assert res.maps.shape[:2] == (2, 4) and res.maps.dim() == 4
    chosen = res.logits.gather(1, res.class_idx)
    if model.pool == "avg":
        lhs = res.maps.double().mean(dim=(2, 3)) + res.bias.double()
        scale = res.logits.abs().max().double().clamp_min(1e-30)
        assert float((lhs - chosen.double()).abs().max() / scale) < 1e-4
    else:  # GMP: logit = W @ max_xy F + b, checked against the pooled features directly
        with torch.inference_mode():
            f = model.features(x)
            ref = f.amax(dim=(2, 3)) @ model.classifier.weight.T + model.classifier.bias
        torch.testing.assert_close(res.logits, ref, rtol=1e-5, atol=1e-6)
    if get_spec(name).cam_kind == "exact" and hasattr(model.net, "forward") and type(model.net).forward is not torch.nn.Module.forward:
        with torch.inference_mode():
            ref = model.net(x)
        torch.testing.assert_close(res.logits, ref, rtol=1e-5, atol=1e-6)


def test_paper_map_resolutions():
    # Zhou et al. (CVPR 2016) §3: VGG16-GAP and GoogLeNet-GAP give 14x14 maps at 224, AlexNet-GAP 13x13,
    # the dilated ResNet 14x14 instead of 7x7.
    x = torch.zeros(1, 3, 224, 224)
    for name, hw in (("vgg16_gap", 14), ("googlenet_gap", 14), ("alexnet_gap", 13), ("resnet50_dilated", 14), ("resnet50", 7)):
        m = load_model(name, weights="random")
        with torch.inference_mode():
            assert m.features(x).shape[-2:] == (hw, hw), name


def test_registry_lists_kinds_and_untrained_surgery():
    specs = {s.name: s for s in list_models()}
    assert specs["efficientnet_lite0"].cam_kind == "exact"
    for n in ("vgg16_gap", "vgg16_gmp", "googlenet_gap", "googlenet_gmp", "alexnet_gap", "alexnet_gmp"):
        assert specs[n].cam_kind == "needs-finetune"
        assert "fine-tun" in specs[n].cam_kind_text
    assert load_model("vgg16_gmp", weights="random").pool == "max"


def test_unknown_model_suggests():
    with pytest.raises(ModelError, match="did you mean resnet50"):
        load_model("resnet5O")


def test_named_weights_offline_error_names_weights_path(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty cache: a download is needed, and fails offline
    import socket

    def no_network(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(WeightsError) as e:
        load_model("resnet18")
    msg = str(e.value)
    assert "weights=PATH" in msg and "\n" not in msg and "resnet18" in msg


def test_unknown_weights_name():
    with pytest.raises(WeightsError, match="IMAGENET1K_V1"):
        load_model("resnet18", weights="IMAGENET9K")


def test_checkpoint_roundtrip_plain_torchvision_state_dict(tmp_path):
    import torchvision

    torch.manual_seed(1)
    net = torchvision.models.resnet18(num_classes=10).eval()
    path = tmp_path / "r18.pt"
    torch.save(net.state_dict(), path)
    model = load_model("resnet18", weights=str(path))
    assert model.num_classes == 10 and model.categories is None
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), net(x))


def test_checkpoint_that_does_not_fit(tmp_path):
    import torchvision

    path = tmp_path / "r34.pt"
    torch.save(torchvision.models.resnet34().state_dict(), path)
    with pytest.raises(WeightsError) as e:
        load_model("resnet18", weights=str(path))
    assert "does not fit model resnet18" in str(e.value) and "\n" not in str(e.value)


class _Payload:
    def __reduce__(self):
        return (print, ("this code must never run",))


def test_pickle_with_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"fc.weight": torch.zeros(2, 2), "hook": _Payload()}, path)  # a real torch.save pickle
    raw = tmp_path / "evil.pkl"
    with open(raw, "wb") as f:  # and a raw pickle of a newer protocol
        pickle.dump({"state_dict": _Payload()}, f, protocol=4)
    with pytest.raises(WeightsError, match="not a PyTorch checkpoint"):
        load_model("resnet18", weights=str(raw))
    with pytest.raises(WeightsError, match="refuses to load"):
        load_model("resnet18", weights=str(path))
    assert "must never run" not in capsys.readouterr().out


def test_missing_and_garbage_checkpoints(tmp_path):
    with pytest.raises(WeightsError, match="no such checkpoint"):
        load_model("resnet18", weights=str(tmp_path / "nope.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00\x01 definitely not a checkpoint")
    with pytest.raises(WeightsError, match="not a"):
        load_model("resnet18", weights=str(bad))


def test_lite0_preprocess_equals_timm_and_torchvision_transform():
    # The embedded weights' transform equals timm's resolved eval transform on a real photo.
    import skimage.data
    import timm.data
    from PIL import Image

    m = load_model("efficientnet_lite0")
    img = Image.fromarray(skimage.data.chelsea())
    cfg = timm.data.resolve_data_config({}, model=timm.create_model("tf_efficientnet_lite0", pretrained=False))
    ref = timm.data.create_transform(**cfg)(img)
    ours = m.preprocess(img)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)


def test_torchvision_preprocess_equals_weights_transforms():
    import skimage.data
    from PIL import Image
    from torchvision.models import Inception_V3_Weights, ResNet50_Weights

    from camkit.models.weights import preprocess_of

    img = Image.fromarray(skimage.data.astronaut())
    for w in (ResNet50_Weights.IMAGENET1K_V2, Inception_V3_Weights.IMAGENET1K_V1):
        torch.testing.assert_close(preprocess_of(w)(img), w.transforms()(img), rtol=0, atol=1e-6)


def test_timm_generic_adapter_and_refusal():
    m = load_model("timm/resnet18", weights="random")
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(m(x), m.net(x))
    with pytest.raises(ModelError, match="not"):
        load_model("timm/mobilenetv3_small_100", weights="random")  # pool -> conv -> act -> linear: not exact


def test_lite0_timm_and_native_agree(lite0):
    timm_model = load_model("tf_efficientnet_lite0")
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    a, b = compute_cams(lite0, x, 3), compute_cams(timm_model, x, 3)
    assert torch.equal(a.class_idx, b.class_idx)
    torch.testing.assert_close(a.maps, b.maps, rtol=1e-5, atol=1e-5)
    assert np.isclose(float(a.scores[0, 0]), float(b.scores[0, 0]), atol=1e-6)
