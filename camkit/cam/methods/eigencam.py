"""Eigen-CAM (Muhammad & Yeasin, IJCNN 2020, arXiv 2008.00299): the first principal component.

For each image, the activations ``A [K, h, w]`` are read as ``h*w`` observations of ``K`` features,
``M [h*w, K]``; after centring each channel over positions (``M - mean``, as pytorch-grad-cam does; it
is what makes this a *principal* component), the map is the projection on the first right singular
vector ``v1`` of the SVD ``M = U S V^T``:

    L = (M - mean) v1, reshaped to h x w       (returned without the final ReLU)

Sign: an SVD fixes ``v1`` only up to sign. camkit flips the map when ``|min L| > |max L|`` so the
strongest response is positive — the sign correction pytorch-grad-cam 1.5.7 ships as
``get_2d_projection_with_sign_correction`` (Seg-Eigen-CAM, Eq. 13). pytorch-grad-cam's ``EigenCAM``
class itself keeps whatever sign LAPACK returns.

Eigen-CAM is class-agnostic: every selected class of an image gets the same map.
"""

from __future__ import annotations

import torch


def eigencam_maps(a: torch.Tensor) -> torch.Tensor:
    """``[B, K, h, w]`` -> ``[B, h, w]`` first-principal-component maps (float32; SVD in float64)."""
    b, k, h, w = a.shape
    m = a.reshape(b, k, h * w).transpose(1, 2).double()  # [B, hw, K]
    m = m - m.mean(dim=1, keepdim=True)
    m = torch.nan_to_num(m)
    _, _, vh = torch.linalg.svd(m, full_matrices=False)
    proj = torch.einsum("bpk,bk->bp", m, vh[:, 0, :])
    flip = proj.amin(dim=1).abs() > proj.amax(dim=1).abs()
    proj = torch.where(flip[:, None], -proj, proj)
    return proj.reshape(b, h, w).float()
