"""Resizing maps: the one place camkit resamples a class activation map.

Two conventions, each matching a reference exactly:

- :func:`resize_map_cubic`: one ``[h, w]`` map -> float32 ``[size, size]`` with OpenCV's bicubic
  (``cv2.resize(..., INTER_CUBIC)``), as wsolevaluation's ``CAMComputer`` resizes maps before
  normalising and thresholding them; the benchmark numbers depend on this exact kernel.
- :func:`upsample`: a batch ``[B, k, h, w]`` (torch) -> ``[B, k, H, W]``, equal to
  ``F.interpolate(maps, size, mode, align_corners=False)`` (bilinear or bicubic). Both kernels are
  separable, so the resize is two small matrix products ``A_H @ M @ A_W^T`` with the 1-D
  interpolation matrices (exact up to float rounding), several times faster than ``F.interpolate``
  on the CPU. Used for overlays and sanity checks.
- :func:`resize_maps_bilinear`: ``[B, h, w]`` -> float32 ``[B, H, W]`` with ``F.interpolate`` itself
  (bilinear, align_corners=False), as RISE's evaluation and pytorch-grad-cam resize saliency maps;
  the faithfulness metrics order pixels by these values, so they keep the reference's exact rounding.

torch is imported only by :func:`upsample` (``import camkit`` stays light).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import cv2
import numpy as np

from camkit.errors import ParameterError

if TYPE_CHECKING:
    import torch

__all__ = ["resize_map_cubic", "resize_maps_bilinear", "upsample"]


def resize_map_cubic(cam: np.ndarray, size: int) -> np.ndarray:
    """A float map ``[h, w]`` -> float32 ``[size, size]`` with ``cv2.resize(..., INTER_CUBIC)``."""
    return cv2.resize(np.ascontiguousarray(cam, dtype=np.float32), (size, size), interpolation=cv2.INTER_CUBIC)


@lru_cache(maxsize=64)
def _interp_matrix(n_in: int, n_out: int, mode: str) -> torch.Tensor:
    """``[n_out, n_in]`` matrix of 1-D ``F.interpolate`` (align_corners=False): column i = resized unit vector i."""
    import torch
    import torch.nn.functional as F

    eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, 1, n_in, 1)
    cols = F.interpolate(eye, size=(n_out, 1), mode=mode, align_corners=False)
    return cols.reshape(n_in, n_out).T.contiguous()


def upsample(maps: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Resize maps ``[..., h, w]`` to ``size = (H, W)`` (bilinear or bicubic, align_corners=False).

    Equal to ``F.interpolate(maps, size, mode=mode, align_corners=False)`` up to float rounding
    (see the module docstring); runs under ``torch.inference_mode()``.
    """
    import torch

    if mode not in ("bilinear", "bicubic"):
        raise ParameterError("mode", mode, "is not an upsampling mode; use 'bilinear' or 'bicubic'")
    h, w = maps.shape[-2:]
    ah = _interp_matrix(int(h), int(size[0]), mode).to(device=maps.device, dtype=maps.dtype)
    aw = _interp_matrix(int(w), int(size[1]), mode).to(device=maps.device, dtype=maps.dtype)
    with torch.inference_mode():
        return torch.matmul(torch.matmul(ah, maps), aw.T)


def resize_maps_bilinear(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Maps ``[B, h, w]`` (or one ``[h, w]``) -> float32 ``[B, H, W]``, ``F.interpolate`` bilinear,
    align_corners=False; maps already at ``size`` are returned as float32 unchanged."""
    import torch.nn.functional as F

    m = maps.float()
    if m.dim() == 2:
        m = m[None]
    if tuple(m.shape[-2:]) != tuple(size):
        m = F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return m
