"""Similarity of two saliency maps, as reported by Adebayo et al. (NeurIPS 2018).

- Spearman rank correlation of the maps' values, with and without absolute values (the paper
  reports both: signed maps can flip sign under randomization while keeping their structure).
- SSIM (Wang et al., IEEE TIP 2004) of the maps min-max normalised to [0, 1] (a constant map
  becomes all zeros), computed by :func:`skimage.metrics.structural_similarity`.

Maps are 2-D float arrays of the same shape; values are in [-1, 1] (Spearman) and [-1, 1] (SSIM,
1 = identical).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity


def spearman(a: np.ndarray, b: np.ndarray, absolute: bool = False) -> float:
    """Spearman rank correlation of the flattened maps (0.0 when either map is constant)."""
    x, y = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if absolute:
        x, y = np.abs(x), np.abs(y)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(spearmanr(x, y).statistic)


def _unit(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    span = np.ptp(m)
    return (m - m.min()) / span if span > 0 else np.zeros_like(m)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of the two maps after min-max normalisation to [0, 1] each."""
    return float(structural_similarity(_unit(a), _unit(b), data_range=1.0))


MEASURES = {
    "spearman": lambda a, b: spearman(a, b, absolute=False),
    "spearman_abs": lambda a, b: spearman(a, b, absolute=True),
    "ssim": ssim,
}
