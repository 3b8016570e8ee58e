"""Random-CAM: a baseline for the metrics (pytorch-grad-cam's ``RandomCAM``).

``L = sum_k w_k A_k`` with ``w_k ~ Uniform(-1, 1)``, one weight vector per (image, target), drawn from
a ``torch.Generator`` seeded with ``seed`` (``compute_method_maps(seed=...)``, default 0) at every call: the same input gives the same
maps, and the maps carry no information about the class beyond the activations themselves. A method
that does no better than this on a localization metric has learned nothing from the class.
"""

from __future__ import annotations

import torch

from .base import MethodCall, MethodOutput, display_layer, forward_at_layer


def random_weights(b: int, channels: int, k: int, seed: int = 0) -> torch.Tensor:
    """``[B, k, K]`` weights, uniform in [-1, 1), from a generator seeded with ``seed`` (float32, CPU)."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.rand((b, k, channels), generator=gen) * 2 - 1


def randomcam_maps(a: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_k w_k A_k``: activations ``[B, K, h, w]``, weights ``[B, k, K]`` -> ``[B, k, h, w]``."""
    return torch.einsum("bjk,bkhw->bjhw", weights.to(a.device, torch.float32), a.float())


def run(call: MethodCall) -> MethodOutput:
    with torch.inference_mode():
        full, a, logits, idx, s = forward_at_layer(call, need_grad=False)
        maps = randomcam_maps(a, random_weights(a.shape[0], a.shape[1], idx.shape[1], call.seed))
    return MethodOutput(idx, s, logits, maps, display_layer(call.model, full))
