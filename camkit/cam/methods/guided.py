"""Guided Backprop (Springenberg et al., ICLR-W 2015, arXiv 1412.6806) and Guided Grad-CAM (Selvaraju et al., ICCV 2017).

Guided Backprop is the gradient of the score with respect to the *input pixels*, where every
rectifier passes back only positive gradients at positions where its input was positive:

    R_l = 1[z_l > 0] * ReLU(R_{l+1})                 (plain backprop: R_l = 1[z_l > 0] * R_{l+1})

camkit applies the rule at every ``nn.ReLU`` and ``nn.ReLU6`` module (forward hooks that clamp the
incoming gradient at 0; the module's own backward then applies its mask). pytorch-grad-cam's
``GuidedBackpropReLUModel`` swaps ``nn.ReLU`` modules only (ReLU6 networks are left with the plain
gradient there) and leaves them as new non-in-place ReLUs afterwards; camkit's hooks leave the model
as it was. Functional ReLUs (``F.relu`` inside a forward) cannot be hooked and stay plain.

How it fits the map/box pipeline: the gradient is a ``[3, H, W]`` image, not a layer map. camkit's map
is its saliency magnitude at input resolution, ``M(i,j) = max_c |R_0(c,i,j)|`` (Simonyan et al.,
arXiv 1312.6034, Sec. 3.1: the maximum over colour channels), so ``maps`` is ``[B, k, H, W]``,
non-negative, and goes through the same resizing, normalisation and box extraction as any CAM (it is
already at input resolution, so only the crop/squash geometry maps it to the photo). The signed
3-channel gradients are available from :func:`guided_gradients` for display.

Guided Grad-CAM (Grad-CAM paper, Sec. 3.1) multiplies the guided gradient by the Grad-CAM map of the
target layer, ReLU'd and bilinearly upsampled to the input: ``G = R_0 o Up(ReLU(L_GradCAM))``; its map
is ``max_c |G_c| = M * Up(ReLU(L_GradCAM))`` (units: Grad-CAM's CAM units times the gradient's).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ...errors import ModelError
from ..engine import upsample
from .base import MethodCall, MethodOutput, activations_and_logits, display_layer, resolve_layer, target_scores
from .gradient import gradient_maps


class _PositiveGrad(torch.autograd.Function):
    """Identity forward; the backward passes ``ReLU(grad)``."""

    @staticmethod
    def forward(ctx, t):
        return t.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp_min(0)


@contextmanager
def guided_relus(model: nn.Module) -> Iterator[int]:
    """For one call: every ReLU/ReLU6 module's output passes back only positive gradients (yields how many)."""

    def hook(_m, _inp, out):
        return _PositiveGrad.apply(out) if isinstance(out, torch.Tensor) and out.requires_grad else None

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
    try:
        yield len(handles)
    finally:
        for h in handles:
            h.remove()


def guided_gradients(model: nn.Module, x: torch.Tensor, targets, categories=None):
    """``(class_idx [B, k], scores [B, k], logits [B, C], R_0 [B, k, 3, H, W])``; call inside ``model_state``."""
    xin = x.detach().clone().requires_grad_(True)
    with torch.enable_grad(), guided_relus(model):
        logits = model(xin)
        idx, s = target_scores(logits, targets, categories)
        k = s.shape[1]
        grads = []
        for j in range(k):
            (g,) = torch.autograd.grad(s[:, j].sum(), xin, retain_graph=j < k - 1, allow_unused=True)
            grads.append(torch.zeros_like(xin) if g is None else g)
    return idx, s.detach(), logits.detach(), torch.stack(grads, dim=1)


def saliency_magnitude(grads: torch.Tensor) -> torch.Tensor:
    """``[..., 3, H, W]`` -> ``[..., H, W]``: the maximum over colour channels of the absolute gradient."""
    return grads.abs().amax(dim=-3).float()


def run_guided_backprop(call: MethodCall) -> MethodOutput:
    if call.layer is not None:
        raise ModelError("guidedbackprop explains the input pixels; layer= does not apply to it")
    idx, s, logits, grads = guided_gradients(call.model, call.x, call.targets, call.categories)
    return MethodOutput(idx, s, logits, saliency_magnitude(grads), "input")


def run_guided_gradcam(call: MethodCall) -> MethodOutput:
    model, x = call.model, call.x
    full = resolve_layer(model, x, call.layer)
    a, logits = activations_and_logits(model, x, full, need_grad=True)
    with torch.enable_grad():
        idx, s = target_scores(logits, call.targets, call.categories)
        cam = gradient_maps("gradcam", a, s)
    size = (int(x.shape[-2]), int(x.shape[-1]))
    up = upsample(cam.clamp_min(0).float(), size, "bilinear")
    _, _, _, grads = guided_gradients(model, x, idx if not (idx < 0).any() else call.targets, call.categories)
    return MethodOutput(idx, s.detach(), logits.detach(), saliency_magnitude(grads) * up, display_layer(model, full))
