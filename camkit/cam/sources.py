"""Map sources: batched functions that give the maps a localization benchmark scores.

A :data:`MapSource` takes a normalised input batch and the ground-truth classes and returns, per
image, the GT class's map followed by the top-k predicted classes' maps, all from one forward:

``source(x [B, 3, S, S], gt [B] int64) -> (classes [B, 1 + k] int64 (GT first, then top-k by score),
scores [B, k] float softmax of the top-k, maps [B, 1 + k, h, w] float32 at feature resolution)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from camkit.models.cam_model import CAMModel

MapSource = Callable[["torch.Tensor", "torch.Tensor"], tuple[np.ndarray, np.ndarray, np.ndarray]]


def make_map_source(model: CAMModel, method: str = "cam", topk: int = 5, layer: str | Sequence[str] | None = None,
                    *, smooth: str | None = None, seed: int = 0) -> MapSource:
    """The map source of ``method`` on ``model``.

    ``"cam"`` at the model's own feature map without smoothing: one forward under ``torch.inference_mode()``; the GT class's and the top-k classes'
    maps come from the same feature map (the engine's :func:`~camkit.cam.engine.select_classes` and
    :func:`~camkit.cam.engine.cams_from_features`, one einsum). Any other method: a forward for the
    top-k, then :func:`camkit.cam.methods.compute_method_maps` with those classes, ``layer`` (one
    name, or several whose maps are fused), ``smooth`` and ``seed`` (each batch starts from it).
    """
    import torch

    from camkit.cam.engine import cams_from_features, select_classes

    def top_classes(logits: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        top = select_classes(logits, topk, None)
        scores = logits.float().softmax(dim=1).gather(1, top)
        return torch.cat([gt.to(top.device).view(-1, 1), top], dim=1), scores

    if method == "cam" and layer is None and smooth is None:

        def cam_source(x: torch.Tensor, gt: torch.Tensor):
            with torch.inference_mode():
                feats = model.features(x)
                idx, scores = top_classes(model.head(feats), gt)
                maps = cams_from_features(model, feats, idx).float()
            return idx.cpu().numpy(), scores.cpu().numpy(), maps.cpu().numpy()

        return cam_source

    from camkit.cam.methods import compute_method_maps

    def method_source(x: torch.Tensor, gt: torch.Tensor):
        with torch.inference_mode():
            idx, scores = top_classes(model(x), gt)
        idx = idx.clone()  # out of inference mode: the method may need autograd
        r = compute_method_maps(model, x, method=method, classes=idx, layer=layer, seed=seed, smooth=smooth)
        return idx.cpu().numpy(), scores.cpu().numpy(), r.maps.detach().float().cpu().numpy()

    return method_source
