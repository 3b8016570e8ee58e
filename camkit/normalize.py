"""Named map normalisations.

Maps are arrays or tensors whose last two axes are (height, width); every map is normalised
on its own.

- ``raw``: unchanged (class activation in logit units; ``mean_xy M_c + b_c == logit_c``).
- ``relu_max`` (CVPR16, Zhou et al.): ``max(M, 0) / max(M)``, in [0, 1]; a map whose maximum is
  <= 0 becomes all zeros.
- ``minmax`` (wsolevaluation, Choe et al.): ``(M - min) / (max - min)``, in [0, 1]; a constant map,
  or one holding NaN, becomes all zeros (wsolevaluation's ``normalize_scoremap``).

This is camkit's one min-max normalisation: the evaluator and the wsol box rule use it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, overload

import numpy as np

from camkit.errors import ParameterError

if TYPE_CHECKING:
    import torch

Normalization = Literal["raw", "relu_max", "minmax"]
NORMALIZATIONS: tuple[str, ...] = ("raw", "relu_max", "minmax")


@overload
def normalize_maps(maps: np.ndarray, method: Normalization = "minmax") -> np.ndarray: ...
@overload
def normalize_maps(maps: torch.Tensor, method: Normalization = "minmax") -> torch.Tensor: ...


def normalize_maps(maps: np.ndarray | torch.Tensor, method: Normalization = "minmax") -> np.ndarray | torch.Tensor:
    """Normalise each map over its last two axes; returns the same kind (numpy or torch) and shape.

    Float inputs keep their dtype; integer inputs come back as float64 (numpy) or float32 (torch).
    A tensor's zero test guards the division with the dtype's smallest normal number, so the result
    is exactly ``(M - min) / (max - min)`` (or ``M / max``) wherever the map is not constant.
    """
    if method not in NORMALIZATIONS:
        raise ParameterError("method", method, f"is not a normalisation; use one of {', '.join(NORMALIZATIONS)}")
    if method == "raw":
        return maps
    if isinstance(maps, np.ndarray):
        m = maps if np.issubdtype(maps.dtype, np.floating) else maps.astype(np.float64)
        if method == "relu_max":
            m = np.maximum(m, 0)
            top = m.max(axis=(-2, -1), keepdims=True)
            return np.divide(m, top, out=np.zeros_like(m), where=top > 0)
        lo = m.min(axis=(-2, -1), keepdims=True)
        span = m.max(axis=(-2, -1), keepdims=True) - lo
        return np.divide(m - lo, span, out=np.zeros_like(m), where=span > 0)

    import torch  # only reached with a tensor, so torch is already imported

    t = maps if maps.is_floating_point() else maps.float()
    if method == "relu_max":
        t = t.clamp_min(0)
        top = t.amax(dim=(-2, -1), keepdim=True)
        return torch.where(top > 0, t / top.clamp_min(torch.finfo(t.dtype).tiny), torch.zeros_like(t))
    lo_t = t.amin(dim=(-2, -1), keepdim=True)
    span_t = t.amax(dim=(-2, -1), keepdim=True) - lo_t
    return torch.where(span_t > 0, (t - lo_t) / span_t.clamp_min(torch.finfo(t.dtype).tiny), torch.zeros_like(t))
