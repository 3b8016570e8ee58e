"""Smooth Grad-CAM++ (Omeiza et al., arXiv 1908.01224, 2019): Grad-CAM++ with SmoothGrad's noise averaging.

The input is perturbed ``n`` times, ``X_m = X + N(0, sigma^2)``; the derivatives of the class score
``S`` with respect to the target layer ``A [K, h, w]`` are averaged over the noisy copies
(``g_m = dS(X_m)/dA``, ``D^p = (1/n) sum_m g_m^p``) and put into Grad-CAM++'s pixel weights
(Eq. 7-10 of the paper, with the exponential score of Grad-CAM++ so that the p-th derivative is
``g^p`` up to a factor that is dropped, as every implementation does):

    alpha_k(i,j) = D^2_k(i,j) / (2 D^2_k(i,j) + sum_ab A_k(a,b) D^3_k(i,j))     (0 where D^2 = 0)
    w_k          = sum_ij alpha_k(i,j) ReLU(D^1_k(i,j))
    L            = ReLU(sum_k w_k A_k)        (returned without the ReLU, times h*w: "CAM units")

``A`` is the clean image's activation. The numerator is ``D^2`` (the paper prints ``D^1``, which is not
Grad-CAM++'s ratio; torch-cam makes the same correction). With ``std = 0`` every copy is the clean
image and the result is camkit's Grad-CAM++ exactly.

Differences from torch-cam 0.5.0 ``SmoothGradCAMpp`` (reproduced in the parity test, not hidden):
its denominator is ``2 D^2 + sum_ab A_k(a,b) D^3_k(a,b)`` (the sum taken over the product, so it is
not Grad-CAM++'s even without noise), it weights with ``ReLU`` of the *last* noisy copy's gradient
instead of ``D^1``, multiplies the weights with the last noisy copy's activations instead of the clean
ones, and adds ``eps = 1e-8`` to the denominator.

Noise: ``sigma`` is in the units of the normalised input. Copy ``m`` uses the noise of a generator
seeded from ``(seed, m)``: the same for every image of a batch, so an image's map does not depend on
its neighbours or on ``batch_size``. ``noise=`` overrides it (a callable ``m -> [1 or B, 3, H, W]``).
The ``n * B`` noisy forwards run ``batch_size`` at a time; one backward per explained class and chunk.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .base import MethodCall, MethodOutput, Targets, activations_and_logits, display_layer, resolve_layer, target_scores

NoiseFn = Callable[[int], torch.Tensor]


def seeded_normal(seed: int, key: tuple[int, ...], shape: tuple[int, ...], std: float, device=None) -> torch.Tensor:
    """``std * N(0, 1)`` noise of ``shape`` from a CPU generator seeded by ``(seed, *key)`` (reproducible anywhere)."""
    h = int(seed) & 0xFFFFFFFF
    for v in key:
        h = (h * 0x9E3779B1 + int(v) + 0x7F4A7C15) % (1 << 61)
    g = torch.Generator().manual_seed(h)
    return (torch.randn(shape, generator=g) * float(std)).to(device)


def smoothgradcampp_maps(
    model: torch.nn.Module,
    x: torch.Tensor,
    full_layer: str | None,
    a_clean: torch.Tensor,
    select: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    num_classes: int,
    *,
    num_samples: int = 4,
    std: float = 0.3,
    seed: int = 0,
    noise: NoiseFn | None = None,
    batch_size: int = 32,
) -> torch.Tensor:
    """Maps ``[B, k, h, w]`` (CAM units, before the ReLU).

    Args:
        model: the network (call inside :func:`~camkit.cam.methods.base.model_state`).
        x: clean input ``[B, 3, H, W]``; a_clean: its activations ``[B, K, h, w]`` at ``full_layer``.
        select: ``select(logits [n, C], sample_index [n]) -> scores [n, k]`` (differentiable) of the
            noisy copies: the explained classes' logits of their image, or a custom target's values.
        num_classes: k, the number of explained scores per image.
        num_samples, std, seed, noise: the noisy copies (see the module docstring).
        batch_size: noisy inputs per forward pass.
    """
    b = x.shape[0]
    n = max(1, int(num_samples))
    a_clean = a_clean.detach().float()
    shape = (b, num_classes) + tuple(a_clean.shape[1:])
    m1 = torch.zeros(shape, dtype=torch.float64, device=a_clean.device)
    m2 = torch.zeros_like(m1)
    m3 = torch.zeros_like(m1)
    noises: dict[int, torch.Tensor] = {}

    def noise_of(i: int) -> torch.Tensor:
        if i not in noises:
            if noise is not None:
                noises[i] = noise(i).to(device=x.device, dtype=x.dtype)
            else:
                noises[i] = seeded_normal(seed, (i,), (1,) + tuple(x.shape[1:]), std, x.device).to(x.dtype)
        return noises[i]

    jobs = torch.arange(n * b)
    step = max(1, int(batch_size))
    for start in range(0, len(jobs), step):
        chunk = jobs[start : start + step]
        copy, sample = chunk // b, chunk % b
        parts = []
        for c, s in zip(copy.tolist(), sample.tolist(), strict=True):
            nz = noise_of(c)
            parts.append(x[s] + nz[s if nz.shape[0] > 1 else 0])
        xn = torch.stack(parts)
        a, logits = activations_and_logits(model, xn, full_layer, need_grad=True)
        with torch.enable_grad():
            scores = select(logits, sample.to(logits.device))
            for j in range(num_classes):
                (g,) = torch.autograd.grad(scores[:, j].sum(), a, retain_graph=j < num_classes - 1, allow_unused=True)
                g = torch.zeros_like(a) if g is None else g.detach()
                g = g.double()
                idx = sample.to(m1.device)
                m1[:, j].index_add_(0, idx, g)
                m2[:, j].index_add_(0, idx, g * g)
                m3[:, j].index_add_(0, idx, g * g * g)
        del a, logits, scores
    m1, m2, m3 = m1 / n, m2 / n, m3 / n
    return smoothgradcampp_from_moments(a_clean, m1, m2, m3)


def smoothgradcampp_from_moments(a: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor, d3: torch.Tensor) -> torch.Tensor:
    """Eq. 7-10 from averaged derivatives: activations ``[B, K, h, w]``, ``D^p [B, k, K, h, w]`` -> ``[B, k, h, w]``.

    ``alpha = D2 / (2 D2 + sum_ab A * D3)`` (0 where D2 or the denominator is 0), ``w = h*w * sum_ij alpha ReLU(D1)``.
    """
    a64 = a.double()
    s = a64.sum(dim=(-2, -1), keepdim=True).unsqueeze(1)  # [B, 1, K, 1, 1]
    denom = 2.0 * d2 + s * d3
    ok = (d2 > 0) & (denom != 0)
    alpha = torch.where(ok, d2 / torch.where(ok, denom, torch.ones_like(denom)), torch.zeros_like(d2))
    n_hw = a.shape[-2] * a.shape[-1]
    w = (alpha * d1.clamp_min(0)).sum(dim=(-2, -1)) * n_hw  # [B, k, K]
    return torch.einsum("bjk,bkhw->bjhw", w, a64).float()


def score_selector(targets: Targets, idx: torch.Tensor, categories) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``select(logits [n, C], sample [n]) -> [n, k]``: the explained classes' logits of each row's image, or
    a callable target's values (differentiable; used on perturbed copies of the batch)."""
    if callable(targets) and not isinstance(targets, torch.Tensor):
        return lambda logits, sample: target_scores(logits, targets, categories)[1]
    return lambda logits, sample: logits.gather(1, idx.to(logits.device)[sample])


def run(call: MethodCall) -> MethodOutput:
    """``compute_method_maps(method="smoothgradcam++")``: classes chosen on the clean image, noise seeded by ``call.seed``."""
    model, x = call.model, call.x
    full = resolve_layer(model, x, call.layer)
    with torch.no_grad():
        a, logits = activations_and_logits(model, x, full, need_grad=False)
        idx, s = target_scores(logits, call.targets, call.categories)
    select = score_selector(call.targets, idx, call.categories)
    maps = smoothgradcampp_maps(model, x, full, a, select, idx.shape[1], seed=call.seed, batch_size=call.batch_size)
    return MethodOutput(idx, s.detach(), logits.detach(), maps, display_layer(model, full))
