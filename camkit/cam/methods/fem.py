"""FEM, the Feature Explanation Method (Fuad et al., IPTA 2020, hal-02963298): gradient-free, class-agnostic.

For activations ``A [B, K, h, w]`` and ``k_sigma`` (default 2):

    th_k = mean_ij A_k + k_sigma * std_ij A_k      (population std, over the h*w positions)
    w_k  = mean_ij [A_k(i,j) > th_k]                (the fraction of positions above the k-sigma threshold)
    L    = sum_k w_k A_k                           (returned without a ReLU)

Channels whose few strong positions stand out (a local feature) get large weights. Every class of an
image gets the same map.
"""

from __future__ import annotations

import torch

from .base import MethodCall, MethodOutput, class_agnostic, display_layer, forward_at_layer


def fem_maps(a: torch.Tensor, k_sigma: float = 2.0) -> torch.Tensor:
    """``[B, K, h, w]`` -> ``[B, h, w]`` (float32)."""
    a = a.float()
    mean = a.mean(dim=(2, 3), keepdim=True)
    std = a.std(dim=(2, 3), keepdim=True, correction=0)
    w = (a > mean + k_sigma * std).float().mean(dim=(2, 3))
    return torch.einsum("bk,bkhw->bhw", w, a)


def run(call: MethodCall) -> MethodOutput:
    with torch.inference_mode():
        full, a, logits, idx, s = forward_at_layer(call, need_grad=False)
        maps = class_agnostic(fem_maps(a), idx.shape[1])
    return MethodOutput(idx, s, logits, maps, display_layer(call.model, full))
