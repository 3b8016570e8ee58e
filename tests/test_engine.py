"""The CAM engine on a model small enough to work by hand, and the fast separable upsampling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from camkit.cam import compute_cams, upsample
from camkit.models.cam_model import CAMModel


def _tiny() -> CAMModel:
    net = nn.Module()
    net.fc = nn.Linear(2, 2)
    with torch.no_grad():
        net.fc.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, -1.0]]))
        net.fc.bias.copy_(torch.tensor([0.5, 0.0]))
    return CAMModel(net, lambda n, x: x, "fc", name="tiny").eval()  # the input *is* the feature map


def test_cam_worked_by_hand():
    # F0 = [[1,0],[0,1]], F1 = [[2,2],[0,0]]; W = [[1,2],[0,-1]], b = [0.5, 0].
    # CAM_0 = 1*F0 + 2*F1 = [[5,4],[0,1]], mean 2.5, + b0 = 3.0 = logit_0 (= 1*0.5 + 2*1 + 0.5).
    # CAM_1 = -F1 = [[-2,-2],[0,0]], mean -1.0 = logit_1. Top-1 is class 0.
    x = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]], [[2.0, 2.0], [0.0, 0.0]]]])
    r = compute_cams(_tiny(), x, classes=2)
    assert r.class_idx.tolist() == [[0, 1]]
    assert r.maps[0, 0].tolist() == [[5.0, 4.0], [0.0, 1.0]] and r.maps[0, 1].tolist() == [[-2.0, -2.0], [0.0, 0.0]]
    assert r.logits[0].tolist() == [3.0, -1.0] and r.bias[0].tolist() == [0.5, 0.0]
    p0 = torch.exp(torch.tensor(3.0)) / (torch.exp(torch.tensor(3.0)) + torch.exp(torch.tensor(-1.0)))
    assert float(r.scores[0, 0]) == pytest.approx(float(p0), rel=1e-6)


def test_per_image_classes_and_gmp():
    x = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    m = _tiny()
    r = compute_cams(m, x, classes=[[1], [0], [1]])
    assert r.class_idx[:, 0].tolist() == [1, 0, 1]
    w = m.classifier.weight
    for b, c in enumerate([1, 0, 1]):
        torch.testing.assert_close(r.maps[b, 0], torch.einsum("k,khw->hw", w[c], x[b]))
    m.pool = "max"  # GMP: logits from the spatial max, maps unchanged (the paper's GMP comparison)
    r2 = compute_cams(m, x, classes=[[1], [0], [1]])
    torch.testing.assert_close(r2.maps, r.maps)
    torch.testing.assert_close(r2.logits, x.amax(dim=(2, 3)) @ w.T + m.classifier.bias)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("shape", [(7, 7, 224, 224), (14, 14, 224, 224), (7, 9, 300, 451), (1, 1, 5, 5), (13, 13, 224, 224)])
def test_upsample_equals_interpolate(mode, shape):
    h, w, big_h, big_w = shape
    maps = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(1))
    ref = F.interpolate(maps, size=(big_h, big_w), mode=mode, align_corners=False)
    torch.testing.assert_close(upsample(maps, (big_h, big_w), mode), ref, rtol=1e-5, atol=1e-5)
