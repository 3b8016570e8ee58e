"""IS-CAM (Naidu et al., "IS-CAM: Integrated Score-CAM for axiomatic-based explanations", arXiv 2010.03023, 2020).

Score-CAM whose channel scores are integrated along a path of growing masks. For activations
``A [B, K, h, w]`` and input ``X [B, 3, H, W]``, with ``H_k = s(Up(A_k))`` as in Score-CAM:

    M_k^i     = sum_{j=1..i} (j/N) H_k  = c_i H_k,   c_i = i (i + 1) / (2 N),   i = 1..N
    S_k^c     = (1/N) sum_{i=1..N} f^c(X o M_k^i)
    alpha_k^c = softmax_k(S_k^c)
    L^c       = ReLU(sum_k alpha_k^c A_k)          (returned without the ReLU, at h x w)

The path accumulates the increments ``(i/N) H_k`` as the paper's Algorithm 1 (``M <- M + (i/N) M_k``)
and torch-cam 0.5.0's ``ISCAM`` do, so the last masks exceed 1 (``c_N = (N+1)/2``). The baseline term
``f^c(X_b)`` is the same for every channel and cancels in the softmax (not run). Default ``N = 10``
(torch-cam's). Up and s: ``align_corners`` / ``normalize_first`` as in Score-CAM (default: upsample
then min-max; torch-cam normalises first).

A constant channel has the zero mask at every step, so every step sees the all-zero input: it is
forwarded once, not ``N`` times per channel and image. The other ``N * live`` masked inputs are
forwarded ``batch_size`` at a time, in full batches across steps (:class:`~camkit.cam.methods.sscam.MaskedBatches`);
the masks are made once for all steps, and step ``i``'s input is ``c_i (X o H_k)`` (torch-cam's order).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .base import MethodCall, MethodOutput, activations_and_logits, display_layer, resolve_layer, target_scores
from .scorecam import channel_rows, feature_masks
from .smoothgradcampp import score_selector
from .sscam import MaskedBatches, row_blocks


def iscam_coefficients(num_samples: int) -> torch.Tensor:
    """``c_i = sum_{j=1..i} j / N`` for ``i = 1..N`` (float64)."""
    n = max(1, int(num_samples))
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return i * (i + 1) / (2 * n)


def iscam_weights(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    a: torch.Tensor,
    select: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch_size: int = 32,
    *,
    num_samples: int = 10,
    align_corners: bool = False,
    normalize_first: bool = False,
) -> torch.Tensor:
    """Channel weights ``alpha [B, K, k]`` (softmax over K); args as :func:`~camkit.cam.methods.scorecam.scorecam_weights`."""
    b, kch = a.shape[:2]
    size = (int(x.shape[-2]), int(x.shape[-1]))
    n = max(1, int(num_samples))
    coeff = iscam_coefficients(n).tolist()
    flat, sample, constant, live = channel_rows(a)
    batches = MaskedBatches(forward, x, sample, select, batch_size, n * len(live))
    for rows in row_blocks(live, size, batch_size):
        base = feature_masks(flat[rows], size, align_corners, normalize_first)  # the same for every step
        for c in coeff:
            batches.add(rows, base, scale=c)
    if len(constant):
        zero = select(forward(torch.zeros_like(x[:1])).expand(len(constant), -1), sample[constant])
        batches.add_scores(constant, zero.double() * n)  # N identical steps
    sums = batches.sums()
    if sums is None:  # no channel at all
        return torch.zeros((b, kch, 1), dtype=torch.float32, device=a.device)
    return (sums / n).float().reshape(b, kch, -1).softmax(dim=1)


def run(call: MethodCall) -> MethodOutput:
    """``compute_method_maps(method="iscam")``: IS-CAM at the target layer, masked inputs ``call.batch_size`` per forward."""
    model, x = call.model, call.x
    full = resolve_layer(model, x, call.layer)
    with torch.inference_mode():
        a, logits = activations_and_logits(model, x, full, need_grad=False)
        idx, s = target_scores(logits, call.targets, call.categories)
        select = score_selector(call.targets, idx, call.categories)
        alpha = iscam_weights(model, x, a, select, call.batch_size)
        maps = torch.einsum("bkhw,bkj->bjhw", a.float(), alpha)
    return MethodOutput(idx, s, logits, maps, display_layer(model, full))
