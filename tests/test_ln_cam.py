"""Exact CAM through a LayerNorm after pooling: mean_xy M_c + (W beta + b)_c == logit_c.

Checked on a hand-worked example, then on every family whose head is pool -> LayerNorm -> linear
(torchvision ConvNeXt, timm ConvNeXt, timm ViT with global_pool='avg' + fc_norm, timm BEiT, an RMSNorm
head, Hugging Face ConvNeXt), against the network's own logits and an independent float64 map.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from camkit.cam.engine import compute_cams
from camkit.errors import ModelError, ParameterError
from camkit.models.ln_cam import LayerNormCAMModel


class _Head(nn.Module):
    def __init__(self, norm: nn.Module, k: int, c: int) -> None:
        super().__init__()
        self.norm = norm
        self.fc = nn.Linear(k, c)


def _identity_features(net, x):
    return x


def test_hand_worked_example():
    # F: channel 0 = [0, 2], channel 1 = [2, 4] -> p = [1, 3], mu = 2, sigma = 1 (eps = 0).
    # gamma = [2, 1], beta = [0.5, -1]: Fn_0 = 2 (F_0 - 2) = [-4, 0], Fn_1 = F_1 - 2 = [0, 2].
    # W = [[1, 1]], b = 0.25: M = [-4, 2], mean M = -1, W beta + b = -0.25, logit = -1.25.
    net = _Head(nn.LayerNorm(2, eps=0.0), 2, 1)
    with torch.no_grad():
        net.norm.weight.copy_(torch.tensor([2.0, 1.0]))
        net.norm.bias.copy_(torch.tensor([0.5, -1.0]))
        net.fc.weight.copy_(torch.tensor([[1.0, 1.0]]))
        net.fc.bias.fill_(0.25)
    model = LayerNormCAMModel(net, _identity_features, "fc", "norm").eval()
    f = torch.tensor([[[[0.0, 2.0]], [[2.0, 4.0]]]])  # [1, 2, 1, 2]
    res = compute_cams(model, f, classes=[0])
    assert res.maps[0, 0].tolist() == [[-4.0, 2.0]]
    assert model.cam_bias.tolist() == [-0.25]
    assert res.logits.tolist() == [[-1.25]]
    with torch.no_grad():  # the same logit from the textbook head: fc(LayerNorm(mean_xy F))
        assert net.fc(net.norm(f.mean(dim=(2, 3)))).tolist() == [[-1.25]]


def _reference_maps(model: LayerNormCAMModel, raw: torch.Tensor, idx: torch.Tensor) -> np.ndarray:
    """M_c = sum_k W[c,k] gamma_k (F_k - mu) / sigma in float64 numpy, from the raw map and the norm's own parameters."""
    f = raw.detach().double().numpy()
    p = f.mean(axis=(2, 3))
    mu = p.mean(axis=1) if model.norm_kind == "layernorm" else np.zeros(len(p))
    var = ((p - mu[:, None]) ** 2).mean(axis=1)
    sigma = np.sqrt(var + model.norm.eps)
    gamma = model.norm.weight.detach().double().numpy()
    w = model.classifier.weight.detach().double().numpy() * gamma[None, :]
    fn = (f - mu[:, None, None, None]) / sigma[:, None, None, None]
    return np.stack([np.einsum("kc,khw->chw", w[idx[b]].T, fn[b]) for b in range(len(f))])


def _check_family(model: LayerNormCAMModel, x: torch.Tensor, own_logits, float64: bool = True) -> None:
    model.eval()
    res = compute_cams(model, x, classes=3)
    idx = res.class_idx
    with torch.no_grad():
        bias = model.cam_bias[idx]
        chosen = res.logits.gather(1, idx)
        scale = float(res.logits.abs().max())
        # The invariant, float32.
        lhs = res.maps.double().mean(dim=(2, 3)) + bias.double()
        assert float((lhs - chosen.double()).abs().max()) / scale < 1e-5
        # The decomposition reproduces the network's own logits.
        torch.testing.assert_close(res.logits, own_logits(x), rtol=1e-5, atol=1e-5 * scale)
        # The maps equal an independent float64 computation from the raw map.
        ref = _reference_maps(model, model.raw_features(x), idx.numpy())
        np.testing.assert_allclose(res.maps.double().numpy(), ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    if not float64:
        return
    # float64: the same invariant to ~machine precision.
    model.double()
    try:
        r64 = compute_cams(model, x.double(), classes=3)
        with torch.no_grad():
            lhs = r64.maps.mean(dim=(2, 3)) + model.cam_bias[r64.class_idx]
            err = float((lhs - r64.logits.gather(1, r64.class_idx)).abs().max()) / float(r64.logits.abs().max())
        assert err < 1e-12
    finally:
        model.float()


def test_torchvision_convnext_tiny_is_exact():
    from camkit.models.torchvision_transformers import build_torchvision_transformer

    torch.manual_seed(0)
    model = build_torchvision_transformer("convnext_tiny", "random")
    assert isinstance(model, LayerNormCAMModel) and model.cam_kind == "exact"
    _check_family(model, torch.randn(2, 3, 64, 64), model.net, float64=False)  # float64 below, on a small config


def test_torchvision_convnext_small_config_float64():
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    from camkit.models.torchvision_transformers import wrap_torchvision_transformer

    torch.manual_seed(0)
    net = ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)], num_classes=7)
    model = wrap_torchvision_transformer(net, "convnext", name="convnext-small-config")
    _check_family(model, torch.randn(2, 3, 64, 64), net)


def test_timm_convnext_is_exact():
    from camkit.models.timm_families import build_timm_family

    torch.manual_seed(0)
    model = build_timm_family("convnext_atto", "random", num_classes=10, depths=(1, 1, 1, 1))
    assert isinstance(model, LayerNormCAMModel) and model.norm_path == "head.norm"
    _check_family(model, torch.randn(2, 3, 64, 64), model.net)


@pytest.mark.parametrize("name,kwargs", [
    ("vit_tiny_patch16_224", dict(global_pool="avg", fc_norm=True)),
    ("vit_tiny_patch16_224", dict(global_pool="avg", fc_norm=True, reg_tokens=2, norm_layer="rmsnorm")),
    ("beit_base_patch16_224", dict(embed_dim=32, num_heads=2)),  # BEiT's default head: token mean -> fc_norm
])
def test_timm_token_average_with_fc_norm_is_exact(name, kwargs):
    from camkit.models.timm_families import build_timm_family

    torch.manual_seed(0)
    model = build_timm_family(name, "random", num_classes=10, img_size=48, depth=1, **kwargs)
    assert isinstance(model, LayerNormCAMModel) and model.norm_path == "fc_norm"
    assert model.norm_kind == ("rmsnorm" if kwargs.get("norm_layer") == "rmsnorm" else "layernorm")
    _check_family(model, torch.randn(2, 3, 48, 48), model.net)


def test_hf_convnext_is_exact():
    transformers = pytest.importorskip("transformers", reason="the hf extra (transformers) is not installed")
    from camkit.models.hf_adapter import wrap_hf

    torch.manual_seed(0)
    hf = transformers.ConvNextForImageClassification(
        transformers.ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], num_labels=6)
    )
    model = wrap_hf(hf, "hf-convnext")
    assert isinstance(model, LayerNormCAMModel)
    _check_family(model, torch.randn(2, 3, 64, 64), lambda x: hf(pixel_values=x).logits)


def test_only_average_pooling_and_layer_norms():
    net = _Head(nn.LayerNorm(4), 4, 3)
    with pytest.raises(ParameterError, match="pool='max'"):
        LayerNormCAMModel(net, _identity_features, "fc", "norm", pool="max")
    bn = _Head(nn.BatchNorm1d(4), 4, 3)
    with pytest.raises(ModelError, match="BatchNorm1d after the pool is not a LayerNorm"):
        LayerNormCAMModel(bn, _identity_features, "fc", "norm")
