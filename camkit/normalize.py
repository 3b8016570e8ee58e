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

from typing import Literal, TypeVar

import numpy as np

from camkit.errors import ParameterError

Normalization = Literal["raw", "relu_max", "minmax"]
NORMALIZATIONS: tuple[str, ...] = ("raw", "relu_max", "minmax")

ArrayT = TypeVar("ArrayT")


def normalize_maps(maps: ArrayT, method: Normalization = "minmax") -> ArrayT:
    """Normalise each map over its last two axes; returns the same kind (numpy or torch) and shape.

    Float inputs keep their dtype; integer numpy inputs come back as float64.
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

    m = maps if maps.is_floating_point() else maps.float()
    if method == "relu_max":
        m = m.clamp_min(0)
        top = m.amax(dim=(-2, -1), keepdim=True)
        return torch.where(top > 0, m / top.clamp_min(torch.finfo(m.dtype).tiny), torch.zeros_like(m))
    lo = m.amin(dim=(-2, -1), keepdim=True)
    span = m.amax(dim=(-2, -1), keepdim=True) - lo
    return torch.where(span > 0, (m - lo) / span.clamp_min(torch.finfo(m.dtype).tiny), torch.zeros_like(m))
