"""Finer-CAM (Zhang et al., CVPR 2025, arXiv 2501.11309): Grad-CAM of the difference from the most similar classes.

Fine-grained classes share most of their evidence; Finer-CAM explains what separates class c from the
classes the model finds most similar to it. For the explained class c of an image with logits y:

    D_c   = the classes ranked 1, 2, 3 by |y_d - y_c| (rank 0 is c itself): the nearest logits
    S     = sum_{d in D_c} p_d (y_c - alpha y_d) / sum_{d in D_c} p_d      p = softmax(y), alpha = 1
    L     = Grad-CAM of S at the target layer     (:func:`camkit.cam.methods.gradient.gradcam`)

``p_d`` is part of S (differentiated through, as in the authors' pytorch-grad-cam ``FinerWeightedTarget``),
which adds 1e-9 to the denominator; camkit does not (a softmax sum is positive). With alpha = 0 S is the
plain logit ``y_c`` and Finer-CAM is Grad-CAM. Maps are in Grad-CAM's CAM units.
"""

from __future__ import annotations

import torch

from ...errors import ClassSelectionError
from .base import MethodCall, MethodOutput, activations_and_logits, display_layer, resolve_layer, target_scores
from .gradient import gradient_maps

COMPARISON_RANKS = (1, 2, 3)


def comparison_classes(logits: torch.Tensor, idx: torch.Tensor, ranks: tuple[int, ...] = COMPARISON_RANKS) -> torch.Tensor:
    """``[B, k, r]``: for each explained class, the classes at ``ranks`` of ``|y_d - y_c|`` (ascending; stable sort)."""
    ranks = tuple(r for r in ranks if r < logits.shape[1])
    diff = (logits[:, None, :] - logits.gather(1, idx)[:, :, None]).abs()  # [B, k, C]
    order = diff.argsort(dim=2, stable=True)
    return order[:, :, list(ranks)]


def finer_scores(logits: torch.Tensor, idx: torch.Tensor, comp: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``S [B, k]`` (differentiable in ``logits``): the probability-weighted mean of ``y_c - alpha y_d``."""
    p = logits.softmax(dim=1)
    b, k, r = comp.shape
    yd = logits.gather(1, comp.reshape(b, k * r)).reshape(b, k, r)
    pd = p.gather(1, comp.reshape(b, k * r)).reshape(b, k, r)
    yc = logits.gather(1, idx)[:, :, None]
    return (pd * (yc - alpha * yd)).sum(dim=2) / pd.sum(dim=2)


def run(call: MethodCall, alpha: float = 1.0) -> MethodOutput:
    if callable(call.targets) and not isinstance(call.targets, torch.Tensor):
        raise ClassSelectionError("finercam explains a class against its most similar classes; pass class ids or names")
    model, x = call.model, call.x
    full = resolve_layer(model, x, call.layer)
    a, logits = activations_and_logits(model, x, full, need_grad=True)
    with torch.enable_grad():
        idx, s = target_scores(logits, call.targets, call.categories)
        comp = comparison_classes(logits.detach(), idx)
        maps = gradient_maps("gradcam", a, finer_scores(logits, idx, comp, alpha))
    return MethodOutput(idx, s.detach(), logits.detach(), maps, display_layer(model, full))
