"""camkit.resample.resize_map_cubic against a hand-worked golden row and an independent float64 evaluation
of the interpolation (Keys' cubic with a = -0.75, half-pixel centres, edge pixels repeated)."""

from __future__ import annotations

import numpy as np
import pytest

from camkit.resample import resize_map_cubic


def _keys_weights(x: float, a: float = -0.75) -> list[float]:
    """The four tap weights at fractional offset ``x`` in [0, 1) (Keys 1981, as OpenCV's interpolateCubic)."""
    def k(t: float) -> float:
        t = abs(t)
        if t <= 1:
            return (a + 2) * t**3 - (a + 3) * t**2 + 1
        if t < 2:
            return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
        return 0.0

    return [k(x + 1), k(x), k(1 - x), k(2 - x)]


def _matrix(n_in: int, n_out: int) -> np.ndarray:
    """float64 ``[n_out, n_in]``: output pixel centre ``(d + 0.5) * n_in / n_out - 0.5``, taps clamped to the edge."""
    m = np.zeros((n_out, n_in))
    for d in range(n_out):
        f = (d + 0.5) * n_in / n_out - 0.5
        i = int(np.floor(f))
        for t, w in enumerate(_keys_weights(f - i)):
            m[d, min(max(i - 1 + t, 0), n_in - 1)] += w
    return m


def _reference(cam: np.ndarray, size: int) -> np.ndarray:
    h, w = cam.shape
    return _matrix(h, size) @ cam.astype(np.float64) @ _matrix(w, size).T


def test_golden_row_worked_by_hand():
    # Columns 0, 1 of a 2-px row at 4 px: offsets -0.25, 0.25, 0.75, 1.25. At 0.25 (x = 0.25 from pixel 0) the
    # weights are -0.10546875, 0.87890625, 0.26171875, -0.03515625 on pixels -1, 0, 1, 2 -> clamped 0, 0, 1, 1:
    # 0.26171875 - 0.03515625 = 0.2265625; at -0.25 (x = 0.75 from pixel -1) only the last tap (-0.10546875)
    # lands on pixel 1. The other two by symmetry (1 - v).
    row = np.array([-0.10546875, 0.2265625, 0.7734375, 1.10546875], dtype=np.float32)
    out = resize_map_cubic(np.array([[0, 1], [0, 1]], dtype=np.float32), 4)
    assert out.dtype == np.float32 and out.shape == (4, 4)
    assert np.array_equal(out, np.tile(row, (4, 1)))


@pytest.mark.parametrize("shape,size", [((7, 7), 224), ((14, 14), 224), ((7, 9), 224), ((7, 7), 32), ((28, 28), 224)])
def test_equals_float64_evaluation(shape, size):
    cam = np.random.default_rng(sum(shape) + size).standard_normal(shape).astype(np.float32) * 5
    out = resize_map_cubic(cam, size)
    ref = _reference(cam, size)
    assert out.shape == (size, size)
    # float32 arithmetic: a few ulps of the values' scale
    assert np.abs(out - ref).max() <= 4e-6 * np.abs(cam).max()
