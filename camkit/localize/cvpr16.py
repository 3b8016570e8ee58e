"""CVPR16 box rule (Zhou et al., "Learning Deep Features for Discriminative Localization").

The paper's text: take the map after ReLU divided by its maximum, keep the pixels >= 20% of the
maximum, and box the largest connected component. camkit implements exactly that:

- connectivity: 8 (``cv2.connectedComponentsWithStats(..., connectivity=8)``);
- "largest" = most pixels; ties go to the component containing the map's maximum (the first
  maximum in raster order), otherwise to the component whose first pixel comes first in raster
  order;
- box ``x0, y0, x1, y1``: inclusive pixels of that component, in the map's own coordinates;
- a map whose maximum is <= 0 (or that is all zero) has no positive evidence and nothing to keep:
  the paper gives no rule, so camkit returns the whole map ``(0, 0, W - 1, H - 1)``, the box that
  claims nothing about where the object is (the same box the rule gives at ``tau = 0``, where
  every pixel is kept). Callers that prefer to skip such maps can test ``cam.max() <= 0`` first.

A map holding NaN, or whose maximum is +inf (``relu(cam) / max`` is then undefined), raises
``ValueError``.

With the compiled kernel (``_components.c``, built by setup.py when a C compiler is present) the
maximum, the threshold and a run-length labelling take one C pass each, box for box equal to the
numpy + ``cv2.connectedComponentsWithStats`` path used without it (tested on random maps with ties,
maps straddling the threshold by one ulp, and shapes that join only at corners or late).

The authors' released code differs (thresholds 20/100/110 of 255, erosion by a distance
transform, merged boxes); camkit follows the paper's text and does not copy that code.
"""

from __future__ import annotations

from types import ModuleType

import cv2
import numpy as np

from camkit.errors import ParameterError
from camkit.normalize import normalize_maps

_components: ModuleType | None  # the compiled kernel, None when it is not built
try:  # setup.py builds it when a C compiler is present
    import camkit.localize._components as _components
except ImportError:  # pragma: no cover - exercised by installs without a compiler
    _components = None

__all__ = ["cvpr16_box", "cvpr16_boxes"]

_INFINITE_MAX = "the map's maximum is +inf, so relu(cam) / max is undefined; clip the map to finite values first"


def cvpr16_box(cam: np.ndarray, tau: float = 0.2) -> np.ndarray:
    """Box of the largest 8-connected component of ``relu(cam) / max >= tau``.

    Args:
        cam: ``[H, W]`` float map (raw class activation; any scale).
        tau: fraction of the maximum to keep, in [0, 1] (paper: 0.2).

    Returns:
        int64 ``[4]`` ``x0, y0, x1, y1``, inclusive pixels in the map's coordinates; the whole map
        when ``cam.max() <= 0`` (see module docstring).

    Raises:
        ValueError: the map is not 2-D, holds NaN, or its maximum is +inf.

    Example:
        >>> import numpy as np
        >>> cam = np.zeros((4, 6)); cam[1:3, 2:5] = 1.0; cam[0, 0] = 0.5
        >>> cvpr16_box(cam).tolist()
        [2, 1, 4, 2]
    """
    cam = np.asarray(cam)
    if cam.ndim != 2 or cam.size == 0:
        raise ValueError(f"a map must be a non-empty 2-D array (H, W); got shape {cam.shape}")
    if not 0.0 <= float(tau) <= 1.0:
        raise ParameterError("tau", tau, "must be in [0, 1] (the paper: 0.2)")
    if _components is not None and cam.size < 1 << 31:
        return _cvpr16_box_native(cam, float(tau))
    return _cvpr16_box_numpy(cam, float(tau))


def _cvpr16_box_native(cam: np.ndarray, tau: float) -> np.ndarray:
    """The compiled kernel's box: one pass for the maximum, one labelling pass, same rule and ties."""
    if cam.dtype not in (np.float32, np.float64):
        cam = cam.astype(np.float64)
    cam = np.ascontiguousarray(cam)
    height, width = cam.shape
    assert _components is not None  # cvpr16_box takes this path only with the kernel
    status, x0, y0, x1, y1 = _components.cvpr16(cam, height, width, cam.dtype == np.float64, tau)
    if status == 1:
        raise ValueError("the map contains NaN")
    if status == 2:
        return np.array([0, 0, width - 1, height - 1], dtype=np.int64)
    if status == 3:
        raise ValueError(_INFINITE_MAX)
    return np.array([x0, y0, x1, y1], dtype=np.int64)


def _cvpr16_box_numpy(cam: np.ndarray, tau: float) -> np.ndarray:
    """The rule with numpy and ``cv2.connectedComponentsWithStats`` (when the kernel is not built)."""
    m = np.asarray(cam, dtype=np.float64)
    if np.isnan(m).any():
        raise ValueError("the map contains NaN")
    height, width = m.shape
    if not m.max() > 0:
        return np.array([0, 0, width - 1, height - 1], dtype=np.int64)
    if m.max() == np.inf:
        raise ValueError(_INFINITE_MAX)
    keep = (normalize_maps(m, "relu_max") >= tau).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(keep, connectivity=8, ltype=cv2.CV_32S)
    areas = stats[1:, cv2.CC_STAT_AREA]
    tied = np.flatnonzero(areas == areas.max()) + 1
    if len(tied) == 1:
        best = int(tied[0])
    else:
        peak = int(labels.flat[int(np.argmax(m))])
        if peak in tied:
            best = peak
        else:
            first_pixel = {int(lab): int(np.flatnonzero(labels.ravel() == lab)[0]) for lab in tied}
            best = min(first_pixel, key=first_pixel.__getitem__)
    x, y, w, h = stats[best, :4]
    return np.array([x, y, x + w - 1, y + h - 1], dtype=np.int64)


def cvpr16_boxes(cams: np.ndarray, tau: float = 0.2) -> np.ndarray:
    """:func:`cvpr16_box` for each of ``cams[N, H, W]``; int64 ``[N, 4]``."""
    cams = np.asarray(cams)
    if cams.ndim != 3:
        raise ValueError(f"maps must be a 3-D array (N, H, W); got shape {cams.shape}")
    out = np.empty((len(cams), 4), dtype=np.int64)
    for i, cam in enumerate(cams):
        out[i] = cvpr16_box(cam, tau)
    return out
