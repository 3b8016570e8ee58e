"""camkit.metrics.faithfulness: golden values by hand, RISE's reference loop, the streaming evaluator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from camkit.metrics.faithfulness import (
    FaithfulnessEvaluator,
    auc,
    baseline_image,
    confidence_change,
    deletion_insertion_curves,
    rise_blur_kernel,
)


def sig(v: float) -> float:
    return 1 / (1 + math.exp(-v))


class SumChannel0(nn.Module):
    """Logits [s, 0] with s = sum of channel 0 over all pixels, so p(class 0) = sigmoid(s)."""

    def forward(self, x):
        s = x[:, 0].flatten(1).sum(1)
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def test_auc_golden():
    assert auc(np.array([1.0, 0.5, 0.0])) == pytest.approx(0.5)  # (1.5 - 0.5 - 0) / 2
    assert auc(np.array([0.0, 1.0])) == pytest.approx(0.5)
    assert auc(np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 3.0]])) == pytest.approx([1.0, 0.5])  # (3 - 1.5)/3


def test_deletion_and_insertion_worked_by_hand():
    # One 1x2 image, channel 0 = [2, 1], map [0, 1] -> pixel 1 goes first; one pixel per step (steps=2).
    x = torch.zeros(1, 3, 1, 2)
    x[0, 0, 0] = torch.tensor([2.0, 1.0])
    maps = torch.tensor([[[0.0, 1.0]]])
    cls = torch.tensor([0])
    d = deletion_insertion_curves(SumChannel0(), x, maps, cls, "deletion", steps=2, baseline="zero")
    # s: 3 -> (pixel 1 deleted) 2 -> (pixel 0 deleted) 0
    assert d[0].tolist() == pytest.approx([sig(3), sig(2), 0.5])
    ins = deletion_insertion_curves(SumChannel0(), x, maps, cls, "insertion", steps=2, baseline="zero")
    # s: 0 -> (pixel 1 inserted) 1 -> 3
    assert ins[0].tolist() == pytest.approx([0.5, sig(1), sig(3)])
    assert auc(d)[0] == pytest.approx((sig(3) / 2 + sig(2) + 0.25) / 2)


def test_average_drop_and_increase_worked_by_hand():
    # Channel 0 of three 1x2 images and their maps; E = X * minmax(relu(map)).
    x = torch.zeros(3, 3, 1, 2)
    x[:, 0, 0] = torch.tensor([[2.0, 1.0], [2.0, 1.0], [-1.0, 1.0]])
    maps = torch.tensor([[[0.0, 1.0]], [[5.0, -3.0]], [[0.0, 2.0]]])  # N = [0,1], [1,0], [0,1]
    cls = torch.tensor([0, 0, 0])
    y, o = confidence_change(SumChannel0(), x, maps, cls)
    # Y: s = 3, 3, 0; O: s = 1 (keeps pixel 1), 2 (keeps pixel 0), 1
    assert y.tolist() == pytest.approx([sig(3), sig(3), 0.5])
    assert o.tolist() == pytest.approx([sig(1), sig(2), sig(1)])
    ev = FaithfulnessEvaluator(SumChannel0(), steps=2, deletion_baseline="zero", insertion_baseline="zero")
    ev.accumulate(x[:2], maps[:2], cls[:2])
    ev.accumulate(x[2:], maps[2:, None], cls[2:, None])  # [B, k, h, w] maps and [B, k] classes take the first
    r = ev.compute()
    drop = ((sig(3) - sig(1)) / sig(3) + (sig(3) - sig(2)) / sig(3) + 0.0) / 3  # image 3: O > Y, no drop
    assert r["n"] == 3
    assert r["average_drop"] == pytest.approx(100 * drop)
    assert r["increase_in_confidence"] == pytest.approx(100 / 3)
    assert r["deletion_auc"] == pytest.approx(
        np.mean(auc(deletion_insertion_curves(SumChannel0(), x, maps, cls, "deletion", steps=2, baseline="zero"))))


def rise_reference(model, img, expl, step, substrate, mode):
    """RISE's CausalMetric.single_run loop (pixel copies one step at a time), ties broken like camkit."""
    h, w = img.shape[-2:]
    hw = h * w
    n_steps = (hw + step - 1) // step
    start, finish = (img.clone(), substrate.clone()) if mode == "del" else (substrate.clone(), img.clone())
    order = np.argsort(-expl.reshape(hw), kind="stable")
    scores = np.empty(n_steps + 1)
    for i in range(n_steps + 1):
        with torch.no_grad():
            scores[i] = model(start).softmax(1)[0, 0].item()
        if i < n_steps:
            coords = order[step * i : step * (i + 1)]
            start.reshape(1, 3, hw)[0, :, coords] = finish.reshape(1, 3, hw)[0, :, coords]
    return scores


def test_curves_equal_the_rise_loop_on_a_cnn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    x = torch.randn(2, 3, 12, 12)
    maps = torch.rand(2, 3, 3)  # upsampled to 12x12 inside
    up = torch.nn.functional.interpolate(maps[:, None], size=(12, 12), mode="bilinear", align_corners=False)[:, 0]
    for mode, kind, base in (("deletion", "del", "zero"), ("insertion", "ins", "blur")):
        got = deletion_insertion_curves(model, x, maps, torch.tensor([0, 0]), mode, steps=10, batch_size=4)
        assert got.shape == (2, 11)  # 144 px, ceil(144/10) = 15 px per step, ceil(144/15) = 10 steps
        for i in range(2):
            ref = rise_reference(model, x[i : i + 1], up[i].numpy(), 15, baseline_image(x[i : i + 1], base), kind)
            assert np.allclose(got[i], ref, atol=1e-6), mode


def test_blur_baseline_is_rises_kernel_with_zero_padding():
    from scipy.ndimage import convolve

    k = rise_blur_kernel()
    assert k.shape == (11, 11) and k.sum() == pytest.approx(1.0) and k[5, 5] == k.max()
    torch.manual_seed(1)
    x = torch.randn(1, 3, 20, 17, dtype=torch.float64)
    got = baseline_image(x, "blur")
    for c in range(3):
        ref = convolve(x[0, c].numpy(), k, mode="constant", cval=0.0)  # symmetric kernel: conv == correlation
        assert np.allclose(got[0, c].numpy(), ref, atol=1e-12)


def test_a_faithful_map_beats_its_reverse_on_a_real_model():
    import skimage.data
    from PIL import Image

    from camkit.cam.methods import compute_method_maps
    from camkit.models import load_model

    model = load_model("efficientnet_lite0")
    arr, _ = model.preprocess.to_array(Image.fromarray(skimage.data.chelsea()), "squash")
    x = torch.from_numpy(arr)[None]
    x = torch.nn.functional.interpolate(x, size=(96, 96), mode="bilinear", align_corners=False)
    r = compute_method_maps(model, x, "cam", classes=1)
    good, bad = FaithfulnessEvaluator(model, steps=8), FaithfulnessEvaluator(model, steps=8)
    good.accumulate(x, r.maps, r.class_idx)
    bad.accumulate(x, -r.maps, r.class_idx)
    g, b = good.compute(), bad.compute()
    assert g["deletion_auc"] < b["deletion_auc"] and g["insertion_auc"] > b["insertion_auc"]
