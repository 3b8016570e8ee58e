"""camkit's CAM equals torch-cam's `CAM` (an independent, hook-based implementation) to 1e-5."""

from __future__ import annotations

import pytest
import torch

from camkit.cam import compute_cams
from camkit.models import load_model

torchcam = pytest.importorskip("torchcam.methods")


@pytest.mark.parametrize(
    "name,weights,target,fc",
    [("resnet18", "random", "layer4", "fc"), ("efficientnet_lite0", None, "bn2", "classifier")],
)
def test_maps_equal_torchcam(name, weights, target, fc):
    torch.manual_seed(0)
    model = load_model(name, weights=weights)
    x = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    ours = compute_cams(model, x, classes=3)
    with torchcam.CAM(model.net, target, fc) as extractor:
        with torch.inference_mode():
            scores = model.net(x)
        theirs = torch.stack(
            [extractor(ours.class_idx[:, r].tolist(), scores, normalized=False)[0] for r in range(3)], dim=1
        )
    torch.testing.assert_close(ours.logits, scores, rtol=1e-5, atol=1e-5)
    scale = float(theirs.abs().max())
    assert float((ours.maps - theirs).abs().max()) <= 1e-5 * max(scale, 1.0)
    # and after torch-cam's own normalisation (ReLU is off for CAM; min-max per map)
    from camkit.normalize import normalize_maps

    with torchcam.CAM(model.net, target, fc) as extractor:
        with torch.inference_mode():
            scores = model.net(x)
        theirs_n = extractor(ours.class_idx[:, 0].tolist(), scores, normalized=True)[0]
    torch.testing.assert_close(normalize_maps(ours.maps[:, 0], "minmax"), theirs_n, rtol=1e-5, atol=1e-5)
