"""SS-CAM (Wang, Naidu et al., "SS-CAM: Smoothed Score-CAM for Sharper Visual Feature Localization", arXiv 2006.14255, 2020).

Score-CAM whose channel scores are averaged over ``N`` noisy copies of each mask (the paper's
SS-CAM(1), noise on the activation masks, as torch-cam implements it). For activations ``A [B, K, h, w]``
and input ``X [B, 3, H, W]``:

    H_k       = s(Up(A_k))                                  as in Score-CAM (min-max to [0, 1])
    S_k^c     = (1/N) sum_i f^c(X o (H_k + delta_ik))       delta_ik ~ N(0, sigma^2), one H x W field
    alpha_k^c = softmax_k(S_k^c)
    L^c       = ReLU(sum_k alpha_k^c A_k)                   (returned without the ReLU, at h x w)

The baseline term ``f^c(X_b)`` of the paper is the same for every channel and cancels in the softmax
(not run). Defaults ``N = 10``, ``sigma = 2`` are the paper's; torch-cam's are ``N = 35``, ``sigma = 2``.

Noise: ``delta_ik`` comes from a generator seeded from ``(seed, i, k)``, so it is the same field for
every image of a batch and a map does not depend on the batch size or on its neighbours. ``noise=``
overrides it: a callable ``(i, rows) -> [len(rows), 1, H, W]`` where ``rows`` index the flattened
``[B*K]`` (image, channel) pairs (the parity test feeds torch-cam's own draws this way).

Up and s: ``align_corners`` / ``normalize_first`` as in :mod:`camkit.cam.methods.scorecam` (default:
upsample then min-max, the Score-CAM paper's order; torch-cam normalises first). A constant channel
is *not* skipped here: its mask is zero but its noisy mask ``delta_ik`` is not. All ``N*B*K`` masked
inputs are forwarded ``batch_size`` at a time, in full batches across copies.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .base import MethodCall, MethodOutput, activations_and_logits, display_layer, resolve_layer, target_scores
from .scorecam import feature_masks
from .smoothgradcampp import score_selector, seeded_normal

MaskNoiseFn = Callable[[int, torch.Tensor], torch.Tensor]


def sscam_weights(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    a: torch.Tensor,
    select: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch_size: int = 32,
    *,
    num_samples: int = 10,
    std: float = 2.0,
    seed: int = 0,
    noise: MaskNoiseFn | None = None,
    align_corners: bool = False,
    normalize_first: bool = False,
) -> torch.Tensor:
    """Channel weights ``alpha [B, K, k]`` (softmax over K) for ``k`` targets per image.

    Args as :func:`~camkit.cam.methods.scorecam.scorecam_weights`, plus the noise (module docstring).
    """
    b, kch, h, w = a.shape
    size = (int(x.shape[-2]), int(x.shape[-1]))
    n = max(1, int(num_samples))
    flat = a.reshape(b * kch, 1, h, w).float()
    sample = torch.arange(b, device=a.device).repeat_interleave(kch)
    sums: torch.Tensor | None = None
    step = max(1, int(batch_size))
    total = n * b * kch
    for start in range(0, total, step):
        jobs = torch.arange(start, min(start + step, total), device=a.device)
        copy, rows = jobs // (b * kch), jobs % (b * kch)
        m = feature_masks(flat[rows], size, align_corners, normalize_first)
        m = m + _noise(copy, rows, kch, size, std, seed, noise, m)
        logits = forward(x[sample[rows]] * m.to(x.dtype))
        vals = select(logits, sample[rows]).float()
        if sums is None:
            sums = torch.zeros((b * kch, vals.shape[1]), dtype=torch.float64, device=a.device)
        sums.index_add_(0, rows, vals.double())
    assert sums is not None
    return (sums / n).float().reshape(b, kch, -1).softmax(dim=1)


def _noise(copy, rows, kch, size, std, seed, noise, like) -> torch.Tensor:
    out = torch.empty_like(like)
    for c in copy.unique().tolist():
        sel = torch.nonzero(copy == c).reshape(-1)
        if noise is not None:
            out[sel] = noise(int(c), rows[sel]).to(device=like.device, dtype=like.dtype)
            continue
        cache: dict[int, torch.Tensor] = {}
        for j, k in zip(sel.tolist(), (rows[sel] % kch).tolist(), strict=True):
            if k not in cache:
                cache[k] = seeded_normal(seed, (c, k), (1, *size), std, like.device).to(like.dtype)
            out[j] = cache[k]
    return out


def sscam_maps(a: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``sum_k alpha_k A_k``: activations ``[B, K, h, w]``, weights ``[B, K, k]`` -> maps ``[B, k, h, w]``."""
    return torch.einsum("bkhw,bkj->bjhw", a.float(), alpha)


def run(call: MethodCall) -> MethodOutput:
    """``compute_method_maps(method="sscam")``: SS-CAM at the target layer, masked inputs ``call.batch_size`` per forward."""
    model, x = call.model, call.x
    full = resolve_layer(model, x, call.layer)
    with torch.inference_mode():
        a, logits = activations_and_logits(model, x, full, need_grad=False)
        idx, s = target_scores(logits, call.targets, call.categories)
        select = score_selector(call.targets, idx, call.categories)
        alpha = sscam_weights(model, x, a, select, call.batch_size, seed=call.seed)
        maps = torch.einsum("bkhw,bkj->bjhw", a.float(), alpha)
    return MethodOutput(idx, s, logits, maps, display_layer(model, full))
