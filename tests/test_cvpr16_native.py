"""The compiled CVPR16 box (``_components.cvpr16``) equals the numpy + ``cv2.connectedComponentsWithStats``
implementation box for box: random maps with plateaus and ties, negative and all-zero maps, float32 and
float64, thresholds at the ends of [0, 1]."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from camkit.localize import cvpr16 as cvpr16_module
from camkit.localize.cvpr16 import _cvpr16_box_native, _cvpr16_box_numpy, cvpr16_box

pytestmark = pytest.mark.skipif(cvpr16_module._components is None, reason="the compiled kernel is not built")


def _maps(rs: np.random.RandomState, n: int):
    for trial in range(n):
        h, w = rs.randint(1, 40), rs.randint(1, 40)
        kind = trial % 5
        if kind == 0:
            m = rs.randn(h, w)
        elif kind == 1:  # few levels: many equal-sized components, ties decided by the rule
            m = rs.randint(-2, 4, (h, w)).astype(np.float64)
        elif kind == 2:  # scattered single pixels and pairs
            m = (rs.rand(h, w) > 0.6) * rs.choice([1.0, 2.0], (h, w))
        elif kind == 3:  # smooth, like an upsampled CAM
            small = rs.randn(rs.randint(1, 8), rs.randint(1, 8)).astype(np.float32)
            m = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        else:  # no positive evidence
            m = -np.abs(rs.randn(h, w)) if trial % 2 else np.zeros((h, w))
        yield m.astype(np.float32) if rs.rand() < 0.5 else m.astype(np.float64)


def test_native_box_equals_the_numpy_box_on_random_maps():
    rs = np.random.RandomState(7)
    n = 0
    for m in _maps(rs, 3000):
        for tau in (0.0, 0.2, float(rs.rand()), 1.0):
            assert _cvpr16_box_native(m, tau).tolist() == _cvpr16_box_numpy(m, tau).tolist(), (m, tau)
            n += 1
    assert n == 12000


def test_native_box_on_upsampled_cams_of_the_input_size():
    rs = np.random.RandomState(3)
    for _ in range(40):
        m = cv2.resize(rs.randn(7, 7).astype(np.float32), (224, 224), interpolation=cv2.INTER_CUBIC)
        assert _cvpr16_box_native(m, 0.2).tolist() == _cvpr16_box_numpy(m, 0.2).tolist()


def test_ties_follow_the_documented_rule_on_the_native_path():
    # two 2-pixel components; the max sits in the right one
    cam = np.zeros((4, 8))
    cam[2, 1:3] = 1.0
    cam[2, 5:7] = [1.0, 2.0]
    assert cvpr16_box(cam).tolist() == [5, 2, 6, 2]
    # equal blobs, max in neither (a third, smaller component holds it): raster-first wins
    cam = np.zeros((5, 9))
    cam[3, 0:2] = 1.0
    cam[1, 4:6] = 1.0
    cam[4, 8] = 5.0
    assert cvpr16_box(cam).tolist() == [4, 1, 5, 1]


def test_native_errors_and_integer_maps():
    with pytest.raises(ValueError, match="NaN"):
        cvpr16_box(np.array([[1.0, np.nan]], dtype=np.float32))
    assert cvpr16_box(np.full((3, 4), -1.0, dtype=np.float32)).tolist() == [0, 0, 3, 2]
    ints = np.arange(12, dtype=np.int64).reshape(3, 4)
    assert cvpr16_box(ints).tolist() == _cvpr16_box_numpy(ints, 0.2).tolist() == [0, 0, 3, 2]
    # a non-contiguous view gives the box of its copy
    big = np.random.RandomState(0).randn(20, 30)
    assert cvpr16_box(big[::2, 1::3]).tolist() == _cvpr16_box_numpy(np.ascontiguousarray(big[::2, 1::3]), 0.2).tolist()


def test_values_within_rounding_of_the_threshold_follow_the_quotient():
    # one row: the maximum, then values descending through tau * max a few ulps apart. The box of the
    # maximum's component ends at the last kept value, so it shows every keep decision near the threshold
    # (where the kernel divides instead of comparing with tau * max).
    rs = np.random.RandomState(11)
    for dtype in (np.float64, np.float32):
        for _ in range(300):
            top, tau = float(rs.uniform(0.01, 1000)), float(rs.choice([0.2, 0.5, rs.rand()]))
            c = dtype(tau * top)
            up, down = [c], [c]
            for _ in range(8):
                up.append(np.nextafter(up[-1], dtype(np.inf)))
                down.append(np.nextafter(down[-1], dtype(-np.inf)))
            row = np.array([top] + up[::-1] + down[1:], dtype=dtype)[None]
            got, want = _cvpr16_box_native(row, tau), _cvpr16_box_numpy(row, tau)
            assert got.tolist() == want.tolist(), (top, tau, dtype)
            kept = row[0] / np.float64(row[0].max()) >= tau
            assert want[2] == int(np.flatnonzero(kept)[-1])  # the row is kept up to there, in one run
