"""How LeGrad, SS-CAM and IS-CAM spend their time: the work they skip, shown not to change the maps.

- LeGrad: one forward and one backward per explained class for all blocks (the blocks' outputs are
  detached downstream, so the backward of the summed scores gives each block's own gradient); the
  attention of a torchvision block runs once (MultiheadAttention's own path is not called as well);
  torchvision's EncoderBlocks differentiate the class token's attention row only, equal to the full
  attention's gradient (the general path, taken by a subclass of the block).
- SS-CAM / IS-CAM: the Score-CAM masks are made once for all copies/steps, and the masked inputs go
  through the model in full batches (the last one holds the rest), each exactly once.
The maps are checked against runs that do the work the long way (one block, one class, one image).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from camkit.cam.methods import compute_method_maps
from camkit.cam.methods import iscam as iscam_mod
from camkit.cam.methods import sscam as sscam_mod
from camkit.cam.methods.base import activations_and_logits, model_state
from camkit.cam.methods.iscam import iscam_weights
from camkit.cam.methods.legrad import block_names
from camkit.cam.methods.sscam import sscam_maps, sscam_weights


@pytest.fixture(scope="module")
def tv_vit():
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=10).eval()
    with torch.no_grad():
        for p in vit.parameters():
            p.normal_(0, 0.3)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    return vit, x


@pytest.fixture(scope="module")
def timm_vit():
    timm = pytest.importorskip("timm")
    torch.manual_seed(1)
    vit = timm.models.vision_transformer.VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=3, num_heads=2,
                                                           num_classes=10, global_pool="avg", class_token=False).eval()
    with torch.no_grad():
        for p in vit.parameters():
            p.normal_(0, 0.3)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    return vit, x


def count_grad_calls(monkeypatch, rows: list[int] | None = None) -> list[int]:
    """Inputs per ``torch.autograd.grad`` call; ``rows`` gets each input's query rows (shape[-2])."""
    calls: list[int] = []
    real = torch.autograd.grad

    def counted(outputs, inputs, *args, **kwargs):
        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        calls.append(len(inputs))
        if rows is not None:
            rows.extend(int(t.shape[-2]) for t in inputs)
        return real(outputs, inputs, *args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counted)
    return calls


@pytest.mark.parametrize("which", ["tv_vit", "timm_vit"])
def test_legrad_all_blocks_in_one_backward_equals_the_mean_of_single_blocks(which, request, monkeypatch):
    vit, x = request.getfixturevalue(which)
    names = [n.removeprefix("net.") for n in block_names(vit, None)]
    classes = [[1, 6], [4, 2]]
    calls = count_grad_calls(monkeypatch)
    together = compute_method_maps(vit, x, "legrad", classes).maps
    assert calls == [len(names)] * 2  # one backward per class, every block's attention at once
    monkeypatch.undo()
    single = [compute_method_maps(vit, x, "legrad", [[c] for c in col], layer=name).maps[:, 0]
              for name in names for col in zip(*classes, strict=True)]
    by_block = torch.stack(single).reshape(len(names), 2, *together.shape[:1], *together.shape[2:])  # [L, k, B, h, w]
    expected = by_block.mean(dim=0).transpose(0, 1)
    assert torch.allclose(together, expected, rtol=1e-5, atol=1e-7 * float(expected.abs().max()))
    assert float(together.abs().max()) > 0
    # a block named twice counts twice in the mean
    twice = compute_method_maps(vit, x, "legrad", classes, layer=[names[0], names[0], names[2]]).maps
    assert torch.allclose(twice, (2 * by_block[0] + by_block[2]).transpose(0, 1) / 3, rtol=1e-5,
                          atol=1e-7 * float(expected.abs().max()))


def test_legrad_class_token_rows_equal_the_full_attention_gradient(tv_vit, monkeypatch):
    """torchvision blocks: the class-token row only; a subclass of EncoderBlock takes the full-attention path."""
    from torchvision.models.vision_transformer import EncoderBlock

    class SameBlock(EncoderBlock):
        pass

    vit, x = tv_vit
    classes = [[1, 6], [4, 2]]
    rows: list[int] = []
    count_grad_calls(monkeypatch, rows)
    fast = compute_method_maps(vit, x, "legrad", classes).maps
    assert rows == [1] * 6  # 3 blocks x 2 classes, one query row each
    rows.clear()
    layers = vit.encoder.layers
    original = [type(b) for b in layers]
    try:
        for b in layers:
            b.__class__ = SameBlock
        full = compute_method_maps(vit, x, "legrad", classes).maps
    finally:
        for b, t in zip(layers, original, strict=True):
            b.__class__ = t
    assert rows == [17] * 6  # 16 patches + the class token
    assert torch.allclose(fast, full, rtol=1e-5, atol=1e-7 * float(full.abs().max()))
    assert float(full.abs().max()) > 0


def test_legrad_runs_a_torchvision_attention_once(tv_vit, monkeypatch):
    vit, x = tv_vit

    def fused(*_a, **_k):
        raise AssertionError("the fused attention ran besides the explicit one")

    monkeypatch.setattr(nn.functional, "multi_head_attention_forward", fused)
    monkeypatch.setattr(torch, "_native_multi_head_attention", fused)
    maps = compute_method_maps(vit, x, "legrad", 1).maps
    assert maps.shape == (2, 1, 4, 4) and torch.isfinite(maps).all()
    mha = vit.encoder.layers[0].self_attention
    assert "forward" not in vars(mha)  # the instance is left as it was
    monkeypatch.undo()
    with torch.no_grad():
        assert torch.isfinite(vit(x)).all()


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 7, 3, padding=1, stride=2)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(7, 5)

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def cnn_case():
    torch.manual_seed(0)
    m = SmallCNN().eval()
    with torch.no_grad():
        m.conv.weight[3] = 0.0  # a constant channel
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    with model_state(m), torch.no_grad():
        a, _ = activations_and_logits(m, x, "relu", need_grad=False)
    idx = torch.tensor([[1], [4]])
    return m, x, a, lambda logits, sample: logits.gather(1, idx[sample])


def counting(monkeypatch, module, name: str) -> list[int]:
    calls: list[int] = []
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


@pytest.mark.parametrize("bs", [1, 5, 8, 100])
def test_sscam_masks_once_and_full_batches(cnn_case, bs, monkeypatch):
    m, x, a, sel = cnn_case
    b, k = a.shape[:2]
    n = 3
    seen: list[int] = []

    def forward(t):
        seen.append(t.shape[0])
        return m(t)

    masks = counting(monkeypatch, sscam_mod, "feature_masks")
    with model_state(m), torch.inference_mode():
        alpha = sscam_weights(forward, x, a, sel, bs, num_samples=n, std=0.7, seed=5)
    total = n * b * k
    assert len(masks) == 1
    assert seen == [bs] * (total // bs) + ([total % bs] if total % bs else [])
    monkeypatch.undo()
    # the long way: one image, one forward per masked input
    with model_state(m), torch.inference_mode():
        alone = [sscam_weights(m, x[i : i + 1], a[i : i + 1], lambda lg, s, i=i: sel(lg, s + i), 1, num_samples=n, std=0.7, seed=5)
                 for i in range(b)]
    assert torch.allclose(sscam_maps(a, alpha), sscam_maps(a, torch.cat(alone)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bs", [1, 4, 100])
def test_iscam_masks_once_and_full_batches(cnn_case, bs, monkeypatch):
    m, x, a, sel = cnn_case
    b, k = a.shape[:2]
    n = 4
    seen: list[int] = []

    def forward(t):
        seen.append(t.shape[0])
        return m(t)

    masks = counting(monkeypatch, iscam_mod, "feature_masks")
    with model_state(m), torch.inference_mode():
        alpha = iscam_weights(forward, x, a, sel, bs, num_samples=n)
    live = b * (k - 1)
    total = n * live
    assert len(masks) == 1
    assert seen == [bs] * (total // bs) + ([total % bs] if total % bs else []) + [1]  # + the all-zero input once
    monkeypatch.undo()
    with model_state(m), torch.inference_mode():
        alone = [iscam_weights(m, x[i : i + 1], a[i : i + 1], lambda lg, s, i=i: sel(lg, s + i), 1, num_samples=n)
                 for i in range(b)]
    assert torch.allclose(sscam_maps(a, alpha), sscam_maps(a, torch.cat(alone)), rtol=1e-5, atol=1e-6)
