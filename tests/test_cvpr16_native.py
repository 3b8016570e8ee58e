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


def _both(m: np.ndarray, tau: float) -> None:
    got, want = _cvpr16_box_native(m, tau), _cvpr16_box_numpy(m, tau)
    assert got.tolist() == want.tolist(), (m.shape, m.dtype, tau)


def _as_map(keep: np.ndarray, rs: np.random.RandomState) -> np.ndarray:
    """A map whose kept set at tau = 0.5 is ``keep`` (values 0.5..1 inside, -1..0.49 outside), max 1."""
    m = np.where(keep, rs.uniform(0.5, 1.0, keep.shape), rs.uniform(-1.0, 0.49, keep.shape))
    if keep.any():
        m.flat[int(rs.choice(np.flatnonzero(keep.ravel())))] = 1.0
    return m


def test_lines_and_columns():
    # 1 x N and N x 1 maps: runs of one row, and runs of length one stacked in a column
    rs = np.random.RandomState(5)
    for _ in range(400):
        n = int(rs.randint(1, 300))
        for shape in ((1, n), (n, 1)):
            keep = rs.rand(n) < rs.choice([0.2, 0.5, 0.9])
            for dtype in (np.float32, np.float64):
                m = _as_map(keep.reshape(shape), rs).astype(dtype)
                for tau in (0.0, 0.5, 1.0):
                    _both(m, tau)


def test_diagonal_only_connections_join_components():
    # a checkerboard is one 8-connected component (each pixel touches only diagonal neighbours);
    # so are the main and the anti-diagonal lines: the rule must join runs that touch only at a corner
    for h, w in ((1, 1), (2, 2), (7, 5), (64, 64), (65, 129), (3, 200)):
        yy, xx = np.mgrid[:h, :w]
        checkerboard = (yy + xx) % 2 == 0
        for keep in (checkerboard, ~checkerboard, xx == yy, xx + yy == w - 1, (xx - yy) % 5 == 0):
            if keep.any():
                _both(np.where(keep, 1.0, 0.0), 0.5)
        if min(h, w) >= 2:
            assert cvpr16_box(np.where(checkerboard, 1.0, 0.0), 0.5).tolist() == [0, 0, w - 1, h - 1]
    # two diagonal strokes two columns apart are separate (equal sizes: the first maximum's, at (0, 0));
    # a bridge whose pixels touch each stroke only at a corner makes them one
    m = np.zeros((6, 9))
    for i in range(4):
        m[i, i] = m[i, i + 3] = 1.0
    assert cvpr16_box(m, 0.5).tolist() == [0, 0, 3, 3]
    m[4, 4] = m[4, 5] = 1.0  # (4, 4) touches (3, 3), (4, 5) touches (3, 6)
    assert cvpr16_box(m, 0.5).tolist() == [0, 0, 6, 4]


def test_u_shapes_and_spirals_that_merge_late():
    # arms that stay apart for many rows and join at the last row (several at once, nested), so
    # union-find roots chain; sizes arranged so that the merged component must win
    rs = np.random.RandomState(9)
    for _ in range(200):
        h, w = int(rs.randint(3, 60)), int(rs.randint(3, 60))
        keep = np.zeros((h, w), bool)
        arms = np.sort(rs.choice(w, size=min(w, int(rs.randint(2, 12))), replace=False))
        keep[:, arms] = True
        keep[-1, arms.min():arms.max() + 1] = bool(rs.rand() < 0.7)
        if rs.rand() < 0.5:  # a nested U inside, joining one row higher
            inner = arms[(arms > arms.min()) & (arms < arms.max())]
            if len(inner) >= 2:
                keep[-2, inner.min():inner.max() + 1] = True
        if rs.rand() < 0.5:  # bridges through diagonal steps only
            y = int(rs.randint(0, h - 1))
            keep[y, arms[0]] = keep[y + 1, min(arms[0] + 1, w - 1)] = True
        noise = rs.rand(h, w) < 0.05
        for k in (keep, keep | noise, keep[::-1], keep[:, ::-1], keep.T):
            m = _as_map(k, rs)
            _both(m.astype(np.float64), 0.5)
            _both(m.astype(np.float32), 0.5)
    # a square spiral: one long component whose rows hold several runs joined far below/above
    n = 41
    spiral = np.zeros((n, n), bool)
    lo, hi = 0, n - 1
    while lo <= hi:
        spiral[lo, lo:hi + 1] = spiral[lo:hi + 1, hi] = True
        spiral[hi, lo:hi + 1] = True
        spiral[lo + 2:hi + 1, lo] = True
        if lo + 2 <= hi:
            spiral[lo + 2, lo:lo + 3] = True
        lo += 2
        hi -= 2
    _both(np.where(spiral, 1.0, 0.0), 0.5)
    _both(np.where(spiral, 1.0, 0.0)[::-1], 0.5)


def test_equal_sized_components_tie_by_the_rule():
    # many equal blocks, the maximum in one of them, in none (a smaller component), or in a block
    # whose first pixel comes late; float32 and float64
    rs = np.random.RandomState(13)
    for _ in range(300):
        h, w = int(rs.randint(4, 50)), int(rs.randint(4, 50))
        bh, bw = int(rs.randint(1, 4)), int(rs.randint(1, 4))
        keep = np.zeros((h, w), bool)
        for y in range(0, h - bh + 1, bh + 1 + int(rs.randint(0, 2))):
            for x in range(0, w - bw + 1, bw + 1 + int(rs.randint(0, 2))):
                if rs.rand() < 0.6:
                    keep[y:y + bh, x:x + bw] = True
        m = np.where(keep, 0.75, 0.0)
        where = rs.randint(3)
        if where == 0 and keep.any():  # the maximum in a random block
            m.flat[int(rs.choice(np.flatnonzero(keep.ravel())))] = 1.0
        elif where == 1:  # the maximum alone, in a 1-pixel component, or on the background
            p = int(rs.randint(m.size))
            m.flat[p] = 1.0
        for dtype in (np.float32, np.float64):
            for tau in (0.5, 0.75, 0.9):
                _both(m.astype(dtype), tau)


def test_values_straddling_the_threshold_by_one_ulp_in_two_dimensions():
    # maps whose values sit at tau * max and one or two ulps either side, in both dtypes, with
    # taus whose product with the maximum is not representable
    rs = np.random.RandomState(17)
    for _ in range(300):
        dtype = np.float32 if rs.rand() < 0.5 else np.float64
        h, w = int(rs.randint(1, 30)), int(rs.randint(1, 30))
        top = dtype(rs.choice([1.0, 3.0, 0.1, 1e-30, 7.5e30, rs.uniform(0.01, 100)]))
        tau = float(rs.choice([0.2, 0.1, 1 / 3, 0.7, rs.rand()]))
        c = dtype(tau * float(top))
        near = np.array([np.nextafter(c, dtype(np.inf)), np.nextafter(c, dtype(-np.inf)), c,
                         np.nextafter(np.nextafter(c, dtype(np.inf)), dtype(np.inf)),
                         np.nextafter(np.nextafter(c, dtype(-np.inf)), dtype(-np.inf))], dtype=dtype)
        m = rs.choice(near, (h, w)).astype(dtype)
        m.flat[int(rs.randint(m.size))] = top
        _both(m, tau)


def test_large_maps_with_many_components_and_wide_rows():
    # thousands of components (the kernel's component table grows past its stack part) and rows
    # wider than its stack work space; a full row of a width that is a multiple of 64 (no clear bit)
    rs = np.random.RandomState(21)
    dots = np.zeros((120, 300), bool)
    dots[::2, ::2] = True  # 9000 one-pixel components, every one a tie but one
    m = _as_map(dots, rs)
    _both(m, 0.5)
    m[5, 7] = 0.8  # join two dots: a 3-pixel component wins
    _both(m, 0.5)
    for h, w in ((3, 2000), (40, 1500), (64, 128), (5, 64)):
        for p in (0.3, 0.6, 1.0):
            keep = rs.rand(h, w) < p
            for dtype in (np.float32, np.float64):
                _both(_as_map(keep, rs).astype(dtype), 0.5)
    noise = rs.randn(224, 224).astype(np.float32)
    for tau in (0.0, 0.05, 0.2, 0.6):
        _both(noise, tau)


def test_infinite_maximum_and_tau_outside_the_range_are_errors():
    for dtype in (np.float32, np.float64):
        m = np.array([[1.0, np.inf, 2.0], [-np.inf, 0.5, 3.0]], dtype=dtype)
        for tau in (0.0, 0.2):
            for box in (cvpr16_box, _cvpr16_box_native, _cvpr16_box_numpy):
                with pytest.raises(ValueError, match="inf"):
                    box(m, tau)
        # -inf is an ordinary negative value
        m = np.array([[-np.inf, 1.0, 0.3], [0.1, -np.inf, 2.0]], dtype=dtype)
        for tau in (0.0, 0.2, 1.0):
            _both(m, tau)
    m = np.ones((2, 2), np.float32)
    for tau in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="tau"):
            cvpr16_module._components.cvpr16(m, 2, 2, False, tau)
