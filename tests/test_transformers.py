"""Vision transformers and modern backbones: token layouts, family plans, gradient CAMs without a user reshape.

All on random weights with tiny configurations (no downloads). The patch-grid layout is checked
against timm's own ``forward_intermediates(output_fmt='NCHW')`` and pytorch-grad-cam's
``reshape_transform`` recipe.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from camkit.cam.engine import compute_cams
from camkit.errors import ModelError
from camkit.models.token_layout import TokenClassifierModel, TokenLayout

TINY_VIT = dict(img_size=48, depth=1, num_classes=10)


# ---------------------------------------------------------------- layouts


def test_token_layout_drops_prefix_and_keeps_row_major_order():
    # 1 class + 2 register tokens, then a 2x3 grid of patches whose 2 channels are (10 * row + col, -that).
    patches = [[10 * r + c, -(10 * r + c)] for r in range(2) for c in range(3)]
    t = torch.tensor([[[99.0, 99.0], [98.0, 98.0], [97.0, 97.0]] + patches])  # [1, 9, 2]
    m = TokenLayout("tokens", 3, (16, 16)).to_map(t, (32, 48))
    assert m.shape == (1, 2, 2, 3)
    assert m[0, 0].tolist() == [[0, 1, 2], [10, 11, 12]] and m[0, 1].tolist() == [[0, -1, -2], [-10, -11, -12]]
    # Swin: NHWC -> NCHW
    nhwc = torch.arange(24.0).reshape(1, 2, 3, 4)
    assert torch.equal(TokenLayout("nhwc").to_map(nhwc), nhwc.permute(0, 3, 1, 2))
    with pytest.raises(ModelError, match="do not form the grid"):
        TokenLayout("tokens", 1, (16, 16)).to_map(torch.zeros(1, 8, 2), (32, 48))


def test_timm_vit_registers_and_non_square_grid_match_timm():
    from camkit.models.timm_families import build_timm_family

    torch.manual_seed(0)
    model = build_timm_family("vit_tiny_patch16_224", "random", global_pool="avg", fc_norm=False, reg_tokens=4,
                              dynamic_img_size=True, **TINY_VIT)
    assert type(model).__name__ == "TokenCAMModel" and model.layout.prefix_tokens == 5
    x = torch.randn(2, 3, 48, 80)  # 3 x 5 patches
    with torch.no_grad():
        f = model.features(x)
        (ref,) = model.net.forward_intermediates(x, indices=1, norm=True, output_fmt="NCHW", intermediates_only=True)
    assert f.shape == (2, 192, 3, 5)
    torch.testing.assert_close(f, ref)
    res = compute_cams(model, x, classes=2)
    with torch.no_grad():
        torch.testing.assert_close(res.logits, model.net(x))
        lhs = res.maps.mean(dim=(2, 3)) + res.bias
    torch.testing.assert_close(lhs, res.logits.gather(1, res.class_idx), rtol=1e-5, atol=1e-5)


def test_timm_swin_is_exact_on_its_nhwc_map():
    from camkit.models.timm_families import build_timm_family

    torch.manual_seed(0)
    model = build_timm_family("swin_tiny_patch4_window7_224", "random", num_classes=10, img_size=56, window_size=7,
                              embed_dim=16, depths=(1, 1), num_heads=(1, 1))
    assert type(model).__name__ == "TokenCAMModel" and model.layout.kind == "nhwc" and model.cam_kind == "exact"
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        (ref,) = model.net.forward_intermediates(x, indices=1, norm=True, output_fmt="NCHW", intermediates_only=True)
        torch.testing.assert_close(model.features(x), ref)
    res = compute_cams(model, x, classes=2)
    assert res.maps.shape == (2, 2, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(res.logits, model.net(x))
        torch.testing.assert_close(res.maps.mean(dim=(2, 3)) + res.bias, res.logits.gather(1, res.class_idx), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- plans: exact or gradient, and why


@pytest.mark.parametrize("name,kind,reason", [
    ("convnext_atto", "exact", "pool -> LayerNorm -> linear"),
    ("beit_base_patch16_224", "exact", "token average -> LayerNorm -> linear"),
    ("swin_tiny_patch4_window7_224", "exact", "norm, then pool -> linear"),
    ("vit_base_patch16_224", "gradient", "class-token head"),
    ("deit_tiny_distilled_patch16_224", "gradient", "class + distillation token heads"),
    ("vit_base_patch16_siglip_224", "gradient", "attention-pooling head"),
    ("maxvit_tiny_tf_224", "gradient", "MLP head"),
])
def test_timm_plans_from_weightless_instances(name, kind, reason):
    from camkit.models.timm_families import plan_timm_name, timm_family_spec

    plan = plan_timm_name(name)
    assert plan.cam_kind == kind and reason in plan.reason
    spec = timm_family_spec(name)
    assert spec.name == f"timm/{name}" and spec.cam_kind == kind and reason in spec.description


def test_timm_cnn_is_left_to_the_pool_linear_adapter():
    from camkit.models.timm_families import plan_timm_name

    assert plan_timm_name("resnet18") is None
    with pytest.raises(ModelError, match="timm has no model"):
        plan_timm_name("no_such_net_xyz")


def test_timm_class_token_vit_is_a_gradient_model_at_the_last_norm1():
    from camkit.models.timm_families import build_timm_family

    torch.manual_seed(0)
    model = build_timm_family("vit_tiny_patch16_224", "random", **TINY_VIT)
    assert isinstance(model, TokenClassifierModel) and model.cam_kind == "gradient"
    assert model.default_layer == "net.blocks.0.norm1" and model.cam_reason == "class-token head"
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.net(x))
        tokens = model.net.blocks[0].norm1(model.net.norm_pre(model.net._pos_embed(model.net.patch_embed(x))))
    a = model.reshape_activations(tokens)  # pytorch-grad-cam's ViT recipe: drop the class token, reshape
    ref = tokens[:, 1:].reshape(1, 3, 3, -1).permute(0, 3, 1, 2)
    assert torch.equal(a, ref)


# ---------------------------------------------------------------- torchvision


def test_torchvision_small_configs():
    from torchvision.models.swin_transformer import SwinTransformer
    from torchvision.models.vision_transformer import VisionTransformer

    from camkit.models.torchvision_transformers import wrap_torchvision_transformer

    torch.manual_seed(0)
    swin = SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 1], window_size=[4, 4], num_classes=5)
    m = wrap_torchvision_transformer(swin, "swin", name="swin-small-config")
    x = torch.randn(2, 3, 64, 64)
    res = compute_cams(m, x, classes=2)
    assert res.maps.shape == (2, 2, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(res.logits, swin(x))
        torch.testing.assert_close(res.maps.mean(dim=(2, 3)) + res.bias, res.logits.gather(1, res.class_idx), rtol=1e-5, atol=1e-5)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5)
    v = wrap_torchvision_transformer(vit, "vit", name="vit-small-config")
    assert isinstance(v, TokenClassifierModel) and v.default_layer == "net.encoder.layers.encoder_layer_1.ln_1"
    assert v.layout == TokenLayout("tokens", 1, (8, 8))


# ---------------------------------------------------------------- gradient methods without a user reshape


def _needs_reshape_seam():
    from camkit.cam.methods import base

    if not hasattr(base, "reshape_of"):
        pytest.skip("camkit.cam.methods.base has no reshape_activations seam yet")


def test_gradcam_on_a_class_token_vit_equals_pytorch_grad_cam():
    _needs_reshape_seam()
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from camkit.cam.methods import compute_method_maps
    from camkit.models.timm_families import build_timm_family

    torch.manual_seed(0)
    model = build_timm_family("vit_tiny_patch16_224", "random", depth=2, img_size=48, num_classes=10)
    x = torch.randn(1, 3, 48, 48)
    r = compute_method_maps(model, x, "gradcam", classes=[3])
    assert r.maps.shape == (1, 1, 3, 3) and r.layer == "blocks.1.norm1"

    def reshape_transform(t, h=3, w=3):  # pytorch-grad-cam's documented ViT recipe
        return t[:, 1:].reshape(t.size(0), h, w, t.size(2)).permute(0, 3, 1, 2)

    with GradCAM(model.net, [model.net.blocks[-1].norm1], reshape_transform=reshape_transform) as cam:
        peer = cam(x, targets=[ClassifierOutputTarget(3)])  # ReLU'd, min-max scaled, upsampled to 48x48
    ours = torch.relu(r.maps[0, 0]).double()
    ours = (ours - ours.min()) / (ours.max() - ours.min() + 1e-7)
    up = torch.nn.functional.interpolate(ours[None, None], size=(48, 48), mode="bilinear", align_corners=False)[0, 0]
    # pytorch-grad-cam upsamples with cv2.resize (bilinear, half-pixel centres), the same sampling grid.
    np.testing.assert_allclose(up.numpy(), peer[0], atol=1e-5)


def test_explain_gradcam_on_vit_needs_no_reshape():
    _needs_reshape_seam()
    import skimage.data

    import camkit
    from camkit.models.timm_families import build_timm_family

    torch.manual_seed(0)
    model = build_timm_family("vit_tiny_patch16_224", "random", depth=1, num_classes=10)
    photo = skimage.data.chelsea()  # 300 x 451
    e = camkit.explain(photo, model=model, method="gradcam", topk=2)
    assert e.maps.shape == (2, 300, 451) and e.feature_maps.shape == (2, 14, 14)
    assert e.extra["layer"] == "blocks.0.norm1"


# ---------------------------------------------------------------- Hugging Face


def test_hf_vit_and_swin_layouts():
    transformers = pytest.importorskip("transformers", reason="the hf extra (transformers) is not installed")
    from camkit.models.hf_adapter import wrap_hf

    torch.manual_seed(0)
    vit = transformers.ViTForImageClassification(transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, num_labels=4))
    m = wrap_hf(vit, "hf-vit")
    assert isinstance(m, TokenClassifierModel) and m.cam_kind == "gradient"
    assert m.layout == TokenLayout("tokens", 1, (8, 8)) and m.default_layer.endswith("layers.1.layernorm_before")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(m(x), vit(pixel_values=x).logits)
        hidden = vit(pixel_values=x, output_hidden_states=True).hidden_states[-1]  # [1, 1 + 16, 16]
    assert torch.equal(m.reshape_activations(hidden), hidden[:, 1:].reshape(1, 4, 4, 16).permute(0, 3, 1, 2))
    swin = transformers.SwinForImageClassification(transformers.SwinConfig(
        image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 1], window_size=4, num_labels=3))
    s = wrap_hf(swin, "hf-swin")
    assert s.layout == TokenLayout("tokens", 0, (8, 8)) and ".layers.1." in s.default_layer
    with torch.no_grad():
        s(x)
        last = swin(pixel_values=x, output_hidden_states=True).hidden_states[-1]  # [1, 4 * 4, 16]
    assert s.reshape_activations(last).shape == (1, 16, 4, 4)

