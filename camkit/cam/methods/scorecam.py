"""Score-CAM (Wang et al., CVPR-W 2020, arXiv 1910.01279): channel weights from masked forward passes.

Algorithm 1 of the paper, for target layer activations ``A [B, K, h, w]`` and input ``X [B, 3, H, W]``:

    H_k   = s(Up(A_k))                 bilinear upsampling to H x W, then min-max to [0, 1]
    S_k^c = f^c(X o H_k) - f^c(X_b)    f^c = the logit of class c, o = element-wise product
    alpha_k^c = softmax_k(S_k^c)       over the K channels
    L^c   = ReLU(sum_k alpha_k^c A_k)  (returned without the ReLU, at the layer's resolution h x w)

Choices and differences, documented:

- ``f^c(X_b)`` (the baseline image's logit) is the same for every channel k, so it cancels in the
  softmax over k; camkit does not run it. torch-cam subtracts the unmasked input's logit instead,
  which cancels just the same.
- Up: ``F.interpolate(bilinear, align_corners=False)`` as in the authors' code; min-max after
  upsampling (paper order). pytorch-grad-cam 1.5.7 upsamples with ``align_corners=True``; torch-cam
  0.5.0 min-max normalises at feature resolution and then upsamples. Both are reproducible with the
  keyword arguments ``align_corners`` / ``normalize_first`` (used by the parity tests).
- The authors' released code weights each map by the softmax *probability* of class c (no softmax
  over channels); the paper's Algorithm 1 (followed here, and by both peers) uses logits and a
  softmax over channels.
- A constant channel gives the all-zero mask, hence the all-zero input for every image; it is
  forwarded once, not once per channel (the result is identical, the work is not repeated).

One masked forward yields the logits of every class, so explaining k classes costs the same as one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ...normalize import normalize_maps
from ..engine import upsample


def scorecam_weights(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    a: torch.Tensor,
    select: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch_size: int = 32,
    *,
    align_corners: bool = False,
    normalize_first: bool = False,
) -> torch.Tensor:
    """Channel weights ``alpha [B, K, k]`` (softmax over K) for ``k`` targets per image.

    Args:
        forward: the model, ``[n, 3, H, W] -> logits [n, C]`` (called under inference mode).
        x: the input ``[B, 3, H, W]``; a: activations ``[B, K, h, w]``.
        select: ``select(logits [n, C], sample_index [n]) -> scores [n, k]`` of the masked inputs.
        batch_size: masked inputs per forward pass.
    """
    b, kch = a.shape[:2]
    size = (int(x.shape[-2]), int(x.shape[-1]))
    flat, sample, constant, live = channel_rows(a)
    scores: torch.Tensor | None = None

    def put(rows: torch.Tensor, vals: torch.Tensor) -> None:
        nonlocal scores
        if scores is None:
            scores = torch.empty((b * kch, vals.shape[1]), dtype=torch.float32, device=a.device)
        scores[rows] = vals.float()

    if len(constant):
        zero_logits = forward(torch.zeros_like(x[:1]))
        put(constant, select(zero_logits.expand(len(constant), -1), sample[constant]))
    for start in range(0, len(live), max(1, int(batch_size))):
        rows = live[start : start + batch_size]
        m = feature_masks(flat[rows], size, align_corners, normalize_first)
        logits = forward(x[sample[rows]] * m.to(x.dtype))
        put(rows, select(logits, sample[rows]))
    assert scores is not None
    return scores.reshape(b, kch, -1).softmax(dim=1)


def channel_rows(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The channel maps of activations ``a [B, K, h, w]`` one per row: ``(flat [B*K, 1, h, w]`` float32,
    ``sample [B*K]`` each row's image, ``constant`` the rows of constant maps (all-zero masks),
    ``live`` the other rows``)``, rows in ``(image, channel)`` order."""
    b, kch, h, w = a.shape
    flat = a.reshape(b * kch, 1, h, w).float()
    span = flat.amax(dim=(2, 3)) - flat.amin(dim=(2, 3))
    is_constant = (span <= 0).reshape(-1)
    sample = torch.arange(b, device=a.device).repeat_interleave(kch)
    return flat, sample, torch.nonzero(is_constant).reshape(-1), torch.nonzero(~is_constant).reshape(-1)


def feature_masks(
    flat: torch.Tensor, size: tuple[int, int], align_corners: bool = False, normalize_first: bool = False
) -> torch.Tensor:
    """Score-CAM masks ``s(Up(A_k))`` ``[n, 1, H, W]`` in [0, 1] of channel maps ``flat [n, 1, h, w]``
    (``s`` the min-max normalisation; ``normalize_first`` applies it before the upsampling)."""
    if normalize_first:
        return _bilinear(normalize_maps(flat, "minmax"), size, align_corners)
    return normalize_maps(_bilinear(flat, size, align_corners), "minmax")


def _bilinear(m: torch.Tensor, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    if align_corners:  # only for parity with pytorch-grad-cam
        return F.interpolate(m, size=size, mode="bilinear", align_corners=True)
    return upsample(m, size, "bilinear")  # separable matrices: equal to F.interpolate, faster on the CPU


def scorecam_maps(a: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``sum_k alpha_k A_k``: activations ``[B, K, h, w]``, weights ``[B, K, k]`` -> maps ``[B, k, h, w]``."""
    return torch.einsum("bkhw,bkj->bjhw", a.float(), alpha)
