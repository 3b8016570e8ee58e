"""ShapleyCAM (Cai et al., arXiv 2501.06261): Grad-CAM weights from a second-order Taylor expansion.

Reading a CAM as a Shapley-value attribution of the score ``S`` to the channels of ``A``, the
second-order expansion of ``S`` around ``A`` replaces the gradient by ``g - 1/2 H A``:

    w_k = mean_ij ( dS/dA_k(i,j) - 1/2 (H A)_k(i,j) ),   H = d^2 S / dA^2, H A a Hessian-vector product
    L   = ReLU(sum_k w_k A_k)                         (returned without the ReLU, times h*w: CAM units)

``H A`` is one double-backward per explained score (``autograd.grad`` of the gradient with
``grad_outputs=A``). A network that is piecewise linear after the target layer (ReLU, max/avg pool,
linear) has ``H = 0`` almost everywhere, and ShapleyCAM is then exactly Grad-CAM; smooth activations
(SiLU, GELU, Hardswish, softmax targets) make the two differ.
"""

from __future__ import annotations

import torch

from .base import MethodCall, MethodOutput, display_layer, forward_at_layer


def shapley_weights(a: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """``sum_ij (g - H A / 2)`` per channel, ``[B, K]`` (CAM units), for the scalar ``score`` (a sum over the batch)
    whose graph reaches the leaf ``a``; samples are independent in eval mode, so each row is its image's own."""
    (g,) = torch.autograd.grad(score, a, create_graph=True, allow_unused=True)
    if g is None:
        return torch.zeros(a.shape[:2], dtype=torch.float32, device=a.device)
    hvp = None
    if g.requires_grad:
        (hvp,) = torch.autograd.grad(g, a, grad_outputs=a.detach(), retain_graph=True, allow_unused=True)
    d = g.detach() if hvp is None else g.detach() - 0.5 * hvp
    return d.sum(dim=(2, 3)).float()


def run(call: MethodCall) -> MethodOutput:
    full, a, logits, idx, s = forward_at_layer(call, need_grad=True)
    a_det = a.detach().float()
    maps = []
    with torch.enable_grad():
        for j in range(idx.shape[1]):
            w = shapley_weights(a, s[:, j].sum())
            maps.append(torch.einsum("bk,bkhw->bhw", w, a_det))
    return MethodOutput(idx, s.detach(), logits.detach(), torch.stack(maps, dim=1), display_layer(call.model, full))
