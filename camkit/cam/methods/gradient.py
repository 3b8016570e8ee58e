"""The gradient CAM family: Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM, HiResCAM, Grad-CAM element-wise,
Eigen-Grad-CAM, Seg-Eigen-CAM.

All of them combine the target layer's activations ``A [B, K, h, w]`` with the gradient
``g = dS/dA`` of the explained score ``S`` (a class logit, or a custom target). The gradient is taken
with ``torch.autograd.grad(S, A)`` with every parameter frozen, so the backward runs from the score
to the target layer only (autograd computes just the gradients asked for, unlike ``S.backward()``,
which reaches every parameter), once per explained class.

Units ("CAM units"): camkit reports every gradient map multiplied by ``n = h*w``, i.e. with the
gradient ``G = n * g``. On a global-average-pool + linear head ``G_k(x, y) = W[c, k]`` at every
position, so Grad-CAM, XGrad-CAM and HiResCAM equal the CAM ``sum_k W[c, k] A_k`` exactly, and
``mean_xy HiResCAM = sum_{k,x,y} g A`` is the first-order (Taylor) contribution of the layer to the
score. Normalised maps (relu_max, minmax) are the same as the papers'; only raw maps carry the factor.
Raw maps are returned before the papers' final ReLU (the normalisations apply it).
"""

from __future__ import annotations

import torch

from .eigencam import eigencam_maps


def _n(a: torch.Tensor) -> int:
    return int(a.shape[-2] * a.shape[-1])


def gradcam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., ICCV 2017, arXiv 1610.02391), Eq. 1-2.

    ``alpha_k = (1/Z) sum_ij dS/dA_k(i,j)``, ``L = ReLU(sum_k alpha_k A_k)``; returned without the ReLU,
    times ``h*w`` (CAM units: ``alpha_k = sum_ij g_k(i,j)``). ``a``, ``g``: ``[B, K, h, w]`` -> ``[B, h, w]``.
    """
    w = g.sum(dim=(2, 3))  # = h*w * mean
    return torch.einsum("bk,bkhw->bhw", w, a)


def gradcam_pp(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al., WACV 2018, arXiv 1710.11063), Eq. 19 with the exponential score.

    ``alpha_k(i,j) = g^2 / (2 g^2 + sum_ab A_k(a,b) g^3)`` = ``1 / (2 + sum_ab A_k(a,b) g)`` where
    ``g = dS/dA_k(i,j)`` is the gradient of the logit (the paper's ``Y = exp(S)`` turns its higher
    derivatives into powers of g; the common factor exp(S) cancels after normalisation),
    ``w_k = sum_ij alpha_k(i,j) ReLU(g)``, ``L = ReLU(sum_k w_k A_k)``. Positions with ``g <= 0`` contribute
    nothing (ReLU); a zero denominator gives ``alpha = 0``. No epsilon: the ratio is computed in the
    reduced form, exact for any gradient scale. Returned without the final ReLU, times ``h*w``.
    """
    s = a.sum(dim=(2, 3), keepdim=True)
    denom = 2.0 + s * g
    pos = g > 0
    alpha = torch.where(pos & (denom != 0), 1.0 / torch.where(denom != 0, denom, torch.ones_like(denom)), torch.zeros_like(g))
    w = (alpha * g.clamp_min(0)).sum(dim=(2, 3)) * _n(a)
    return torch.einsum("bk,bkhw->bhw", w, a)


def xgradcam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """XGrad-CAM (Fu et al., BMVC 2020, arXiv 2008.02312), Eq. 13.

    ``w_k = sum_ij (A_k(i,j) / sum_ab A_k(a,b)) dS/dA_k(i,j)``, ``L = ReLU(sum_k w_k A_k)``; a channel
    whose activations sum to 0 gets weight 0 (no epsilon). Returned without the ReLU, times ``h*w``.
    """
    s = a.sum(dim=(2, 3))
    num = (a * g).sum(dim=(2, 3))
    w = torch.where(s != 0, num / torch.where(s != 0, s, torch.ones_like(s)), torch.zeros_like(s)) * _n(a)
    return torch.einsum("bk,bkhw->bhw", w, a)


def layercam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """LayerCAM (Jiang et al., IEEE TIP 2021), Eq. 6-7.

    ``L(i,j) = ReLU(sum_k ReLU(dS/dA_k(i,j)) A_k(i,j))``; returned without the outer ReLU, times ``h*w``.
    """
    return (g.clamp_min(0) * a).sum(dim=1) * _n(a)


def hirescam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """HiResCAM (Draelos & Carin, arXiv 2011.08891), Eq. 4.

    ``L(i,j) = sum_k dS/dA_k(i,j) A_k(i,j)`` (element-wise, no spatial averaging of the gradient), times
    ``h*w``: on a GAP + linear head this is exactly the CAM ``sum_k W[c,k] A_k``.
    """
    return (g * a).sum(dim=1) * _n(a)


def gradcam_elementwise(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Grad-CAM element-wise (pytorch-grad-cam's ``GradCAMElementWise``): HiResCAM with a ReLU per channel.

    ``L(i,j) = sum_k ReLU(dS/dA_k(i,j) A_k(i,j))``, times ``h*w`` (non-negative, so no final ReLU needed).
    """
    return (g * a).clamp_min(0).sum(dim=1) * _n(a)


def eigengradcam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Eigen-Grad-CAM: Eigen-CAM's first principal component (see :mod:`camkit.cam.methods.eigencam`)
    of the element-wise product ``(h*w) dS/dA o A`` instead of ``A``.

    The sign rule of :func:`eigencam_maps` applies (strongest response positive); pytorch-grad-cam's
    ``EigenGradCAM`` keeps LAPACK's arbitrary sign.
    """
    return eigencam_maps(g * a * _n(a))


def segeigencam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Seg-Eigen-CAM (Chung & Ying, Appl. Sci. 2025), Eq. 10-13: the first principal component of
    ``|dS/dA| o A`` (gradient weighting with absolute gradients), sign-corrected so that
    ``|max| >= |min|`` (Eq. 13). Times ``h*w``.
    """
    return eigencam_maps(g.abs() * a * _n(a))


GRADIENT_METHODS = {
    "gradcam": gradcam,
    "gradcam++": gradcam_pp,
    "xgradcam": xgradcam,
    "layercam": layercam,
    "hirescam": hirescam,
    "gradcamelementwise": gradcam_elementwise,
    "eigengradcam": eigengradcam,
    "segeigencam": segeigencam,
}


def gradient_maps(method: str, a: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Maps ``[B, k, h, w]`` of each score column ``scores [B, k]`` (a graph down to the leaf ``a``).

    One ``autograd.grad`` per column: samples are independent in eval mode, so the gradient of the
    column's sum over the batch is each sample's own gradient.
    """
    fn = GRADIENT_METHODS[method]
    k = scores.shape[1]
    a_det = a.detach()
    out = []
    for j in range(k):
        (g,) = torch.autograd.grad(scores[:, j].sum(), a, retain_graph=j < k - 1, allow_unused=True)
        if g is None:
            g = torch.zeros_like(a_det)
        out.append(fn(a_det, g.detach()))
    return torch.stack(out, dim=1)
