"""The evaluator's one-call kernel (``native_map_ious``: normalise, threshold, sweep, IoU with the GIL released)
gives the numbers of the numpy steps it replaces, bit for bit: on raw CAM-like, noisy and few-level maps (V1
ties settled by the reference call), tau grids of 100 and 1000 and odd taus, one to three GT boxes; and it
declines (the caller's numpy steps then run) on what those steps treat specially."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from camkit.evaluate.boxes import wsol_best_ious, wsol_map_ious
from camkit.localize import sweep as sweep_module
from camkit.localize.sweep import native_map_ious
from camkit.normalize import normalize_maps

pytestmark = pytest.mark.skipif(sweep_module._components is None, reason="the compiled sweep kernel is not built")


def _raw_maps(n: int, seed: int = 0) -> list[np.ndarray]:
    rs = np.random.RandomState(seed)
    out = []
    for t in range(n):
        h, w = rs.randint(1, 60), rs.randint(1, 60)
        if t % 4 == 0:
            m = rs.rand(h, w) * 7 - 3
        elif t % 4 == 1:  # few levels: equal blobs, V1 ties left to the reference call
            m = rs.randint(0, 4, (h, w)) * 0.37
        else:  # smooth, like a CAM upsampled with INTER_CUBIC, in logit-like units
            small = rs.randn(rs.randint(1, 8), rs.randint(1, 8)) * 5
            m = cv2.resize(small.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        out.append(np.asarray(m, dtype=np.float32))
    for _ in range(4):  # the evaluator's case: 7x7 -> 224x224
        out.append(cv2.resize(rs.randn(7, 7).astype(np.float32) * 9, (224, 224), interpolation=cv2.INTER_CUBIC))
    out.append(np.full((9, 13), 2.5, dtype=np.float32))  # constant: the unit map is zeros
    return out


def _gt_boxes(rs: np.random.RandomState, h: int, w: int) -> np.ndarray:
    boxes = []
    for _ in range(rs.randint(1, 4)):
        x0, x1 = sorted(rs.randint(0, w, 2))
        y0, y1 = sorted(rs.randint(0, h, 2))
        boxes.append([x0, y0, x1, y1])
    return np.array(boxes, dtype=np.int64)


def _numpy_steps(cam, taus, gt):
    unit = normalize_maps(cam, "minmax")
    return (*wsol_best_ious(unit, taus, gt, "numpy"), unit)


def test_one_call_equals_the_numpy_steps_bit_for_bit():
    rs = np.random.RandomState(1)
    opened = 0
    for cam in _raw_maps(48):
        gt = _gt_boxes(rs, *cam.shape)
        for taus in (np.arange(0, 1, 0.01), np.arange(0, 1, 0.001), np.array([0.5, -0.25, 0.0, 0.999, 1.0, 1.75])):
            got = native_map_ious(cam, taus, gt, want_unit=True)
            assert got is not None
            want = _numpy_steps(cam, taus, gt)
            for g, w in zip(got, want, strict=True):
                assert g.dtype == w.dtype and np.array_equal(g, w)
            raw = sweep_module._components.wsol_ious(cam, *cam.shape, taus, gt, 8, 0, False)
            opened += bool(raw[2])
            assert raw[4] is None  # no unit map unless asked for
    assert opened > 0, "no map left a V1 tie to the reference call: the settling path went untested"


def test_the_evaluator_entry_point_takes_the_kernel_and_the_same_numbers_either_way():
    rs = np.random.RandomState(2)
    taus = np.arange(0, 1, 0.01)
    for cam in _raw_maps(12, seed=3):
        gt = _gt_boxes(rs, *cam.shape)
        native = wsol_map_ious(cam, taus, gt, "auto", want_unit=False)
        numpy_path = wsol_map_ious(cam, taus, gt, "numpy", want_unit=True)
        assert native[2] is None
        assert np.array_equal(native[0], numpy_path[0]) and np.array_equal(native[1], numpy_path[1])
        assert np.array_equal(numpy_path[2], normalize_maps(cam, "minmax"))


def test_it_declines_what_the_numpy_steps_treat_specially():
    cam = cv2.resize(np.random.RandomState(4).randn(7, 7).astype(np.float32), (32, 32), interpolation=cv2.INTER_CUBIC)
    taus, gt = np.arange(0, 1, 0.01), np.array([[2, 3, 20, 25]], dtype=np.int64)
    with_nan = cam.copy()
    with_nan[5, 5] = np.nan
    huge = np.array([[-3e38, 3e38]], dtype=np.float32)  # max - min overflows: numpy's quotients hold NaN
    for args in [
        (with_nan, taus, gt),  # NaN: the numpy steps make the map zeros
        (huge, taus, np.array([[0, 0, 1, 0]])),
        (cam, taus.astype(np.float32), gt),  # float32 taus: threshold_levels multiplies in float32
        (cam.astype(np.float64), taus, gt),  # a float64 map normalises in float64
        (cam, taus, gt.astype(np.float64)),
        (cam, np.array([np.inf]), gt),
        (cam, taus, np.array([[5, 5, 4, 9]])),  # x1 < x0: box_iou_inclusive names the problem
    ]:
        assert native_map_ious(*args) is None
    zeros = wsol_map_ious(with_nan, taus, gt, "auto", want_unit=True)
    assert not zeros[2].any() and np.array_equal(zeros[0], wsol_best_ious(np.zeros_like(cam), taus, gt, "numpy")[0])
    with pytest.raises(ValueError, match="x1 >= x0"):
        wsol_map_ious(cam, taus, np.array([[5, 5, 4, 9]]), "auto")


def test_the_kernel_refuses_buffers_that_do_not_fit_its_shapes():
    k = sweep_module._components
    cam, taus, gt = np.zeros((4, 5), np.float32), np.arange(0, 1, 0.1), np.array([[0, 0, 2, 2]], np.int64)
    for args in [
        (cam, 5, 5, taus, gt, 8, 0, False),  # h * w does not match the map
        (cam, 4, 5, taus[:0], gt, 8, 0, False),  # no taus
        (cam, 4, 5, taus, gt[:0], 8, 0, False),  # no GT box
        (cam, 4, 5, taus, gt.ravel()[:3], 8, 0, False),  # not n x 4
    ]:
        with pytest.raises(ValueError, match="float32"):
            k.wsol_ious(*args)
    with pytest.raises(ValueError, match="strategy"):
        k.wsol_ious(cam, 4, 5, taus, gt, 8, 7, False)
