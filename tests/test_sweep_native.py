"""The compiled sweep kernel (camkit/localize/_components.c): built, validated, exact on larger maps."""

from __future__ import annotations

import shutil
import sysconfig

import cv2
import numpy as np
import pytest

import camkit.localize.sweep as sweep_mod
from camkit.localize import normalize_scoremap, sweep_boxes, wsol_boxes_per_threshold

needs_kernel = pytest.mark.skipif(sweep_mod.resolve_backend("auto") != "native", reason="the compiled sweep kernel is not built")


def test_kernel_is_built_where_a_compiler_exists():
    # setup.py marks the extension optional, so a failed build would pass silently: catch it here.
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}) on this machine: the numpy path is expected")
    assert sweep_mod._components is not None, "camkit.localize._components failed to build; reinstall camkit"


@needs_kernel
def test_ring_golden_boxes():
    # A 5x5 square ring (1 pixel wide) around a 3x3 hole in a 7x7 map, threshold 0.5:
    # outer contour through x, y = 1..5 -> (1, 1, 5 + 1, 5 + 1) = (1, 1, 6, 6) (6 = W - 1, no clip);
    # hole pixels x, y = 2..4 -> (2 - 1, 2 - 1, 4 + 2, 4 + 2) = (1, 1, 6, 6).
    cam = np.zeros((7, 7))
    cam[1:6, 1:6] = 1.0
    cam[2:5, 2:5] = 0.0
    assert sweep_boxes(cam, [0.5], True)[0].tolist() == [[1, 1, 6, 6], [1, 1, 6, 6]]
    # V1: the outer contour (area 16, the 4x4 square through the ring's pixel centres) and the hole
    # contour (the same polygon) tie; OpenCV lists the outer one first and Python's max keeps it.
    assert sweep_boxes(cam, [0.5], False)[0].tolist() == [[1, 1, 6, 6]]
    assert wsol_boxes_per_threshold(cam, [0.5], False)[0].tolist() == [[1, 1, 6, 6]]


@needs_kernel
@pytest.mark.parametrize("shape", [(97, 301), (301, 97), (2, 500), (500, 2)])
def test_rectangular_maps_equal_the_reference(shape):
    rng = np.random.default_rng(sum(shape))
    h, w = shape
    taus = np.arange(0, 1, 0.01)
    smooth = cv2.resize(rng.standard_normal((9, 9)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    for m in (smooth, rng.random(shape)):
        cam = normalize_scoremap(m.astype(np.float64))
        for multi in (False, True):
            expected = wsol_boxes_per_threshold(cam, taus, multi)
            got = sweep_boxes(cam, taus, multi)
            assert all(np.array_equal(e, g) for e, g in zip(expected, got, strict=True))


@needs_kernel
def test_kernel_rejects_bad_arguments():
    u = np.zeros((4, 4), dtype=np.uint8)
    kernel = sweep_mod._components.sweep
    with pytest.raises(ValueError, match="ascending"):
        kernel(u, 4, 4, np.array([3, 2], dtype=np.int32), True, 8)
    with pytest.raises(ValueError, match=r"\[-1, 255\]"):
        kernel(u, 4, 4, np.array([256], dtype=np.int32), False, 8)
    with pytest.raises(ValueError, match="h \\* w"):
        kernel(u, 4, 5, np.array([0], dtype=np.int32), False, 8)


@needs_kernel
def test_evaluator_ious_equal_with_and_without_the_kernel():
    # camkit evaluate's per-tau best IoUs: from the kernel's sweep, or from one findContours per level.
    from camkit.evaluate.boxes import wsol_best_ious

    rng = np.random.default_rng(4)
    gt = np.array([[40, 50, 150, 180], [120, 10, 200, 90]])
    cams = [
        normalize_scoremap(
            cv2.resize(rng.standard_normal((s, s)).astype(np.float32), (224, 224), interpolation=cv2.INTER_CUBIC)
        )
        for s in (7, 14, 7, 14)
    ]
    for taus in (np.arange(0, 1, 0.01), np.arange(0, 1, 0.001)):
        native = [wsol_best_ious(c, taus, gt, backend="native") for c in cams]
        per_level = [wsol_best_ious(c, taus, gt, backend="numpy") for c in cams]
        for (a1, a2), (b1, b2) in zip(native, per_level, strict=True):
            assert np.array_equal(a1, b1) and np.array_equal(a2, b2)
            assert a1.shape == taus.shape and (a2 >= a1).all()  # V2 scores every contour, V1's included


@needs_kernel
def test_threads_share_the_kernel():
    # The kernel releases the GIL while it computes and keeps no global state: maps swept from a
    # thread pool give what they give one at a time.
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(8)
    cams = [
        normalize_scoremap(cv2.resize(rng.standard_normal((7, 7)).astype(np.float32), (224, 224), interpolation=cv2.INTER_CUBIC))
        for _ in range(16)
    ]
    taus = np.arange(0, 1, 0.001)
    jobs = [(cam, multi) for cam in cams for multi in (False, True)]
    alone = [sweep_boxes(cam, taus, multi) for cam, multi in jobs]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda job: sweep_boxes(job[0], taus, job[1]), jobs))
    for a, b in zip(alone, threaded, strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
