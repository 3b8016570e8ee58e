"""KPCA-CAM (Karmani et al., MMSP 2024, arXiv 2410.00267): Eigen-CAM with kernel PCA. Gradient-free, class-agnostic.

Per image, the activations ``A [K, h, w]`` are ``n = h*w`` observations ``m_p`` of ``K`` features,
centred over positions (as in Eigen-CAM). With a kernel ``k``:

    Kmat[p, q] = k(m_p, m_q)                        sigmoid: tanh(gamma <m_p, m_q> + coef0), gamma = 1/K, coef0 = 1
    Kc = (I - 1/n) Kmat (I - 1/n)                    centred in feature space
    Kc v1 = lambda1 v1                               the leading eigenpair
    L = sqrt(lambda1) v1, reshaped to h x w          the first kernel principal component of each position

(``sqrt(lambda1) v1`` is what scikit-learn's ``KernelPCA.fit_transform`` returns, pytorch-grad-cam's
implementation.) Sign: an eigenvector's sign is arbitrary; the map is flipped so that its entry of
largest magnitude is positive — Eigen-CAM's rule, and the same as scikit-learn's ``svd_flip``.
With the linear kernel ``<m_p, m_q>`` this is exactly Eigen-CAM (``Kc`` = M M^T, whose leading
eigenvector scaled by sqrt(lambda1) is the projection M v1).
"""

from __future__ import annotations

import torch

from .base import MethodCall, MethodOutput, class_agnostic, display_layer, forward_at_layer

KERNELS = ("sigmoid", "rbf", "linear", "cosine")


def _kernel(m: torch.Tensor, kernel: str, gamma: float | None) -> torch.Tensor:
    g = 1.0 / m.shape[-1] if gamma is None else float(gamma)
    dot = m @ m.transpose(1, 2)
    if kernel == "sigmoid":
        return torch.tanh(g * dot + 1.0)
    if kernel == "linear":
        return dot
    if kernel == "rbf":
        sq = dot.diagonal(dim1=1, dim2=2)
        return torch.exp(-g * (sq[:, :, None] + sq[:, None, :] - 2 * dot).clamp_min(0))
    if kernel == "cosine":
        norm = m.norm(dim=2).clamp_min(torch.finfo(m.dtype).tiny)
        return dot / (norm[:, :, None] * norm[:, None, :])
    raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")


def kpca_maps(a: torch.Tensor, kernel: str = "sigmoid", gamma: float | None = None) -> torch.Tensor:
    """``[B, K, h, w]`` -> ``[B, h, w]`` first kernel principal component maps (float32; computed in float64)."""
    b, k, h, w = a.shape
    m = torch.nan_to_num(a.reshape(b, k, h * w).transpose(1, 2).double())
    m = m - m.mean(dim=1, keepdim=True)
    kmat = _kernel(m, kernel, gamma)
    kc = kmat - kmat.mean(dim=1, keepdim=True) - kmat.mean(dim=2, keepdim=True) + kmat.mean(dim=(1, 2), keepdim=True)
    vals, vecs = torch.linalg.eigh(kc)
    proj = vecs[:, :, -1] * vals[:, -1:].clamp_min(0).sqrt()
    flip = proj.amin(dim=1).abs() > proj.amax(dim=1).abs()
    proj = torch.where(flip[:, None], -proj, proj)
    return proj.reshape(b, h, w).float()


def run(call: MethodCall) -> MethodOutput:
    with torch.inference_mode():
        full, a, logits, idx, s = forward_at_layer(call, need_grad=False)
        maps = class_agnostic(kpca_maps(a), idx.shape[1])
    return MethodOutput(idx, s, logits, maps, display_layer(call.model, full))
