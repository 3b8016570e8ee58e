"""sweep_boxes must equal the per-threshold reference loop box for box (V1 and V2)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import camkit.localize.sweep as sweep_mod
from camkit.localize import normalize_scoremap, wsol_boxes_per_threshold

TAUS = np.arange(0, 1, 0.01)
FINE_TAUS = np.arange(0, 1, 0.001)

# The implementation the current test runs on (set by the autouse fixture below): sweep keywords.
_OPTIONS: dict = {}


def sweep_boxes_flat(cam, taus, multi_contour=False):
    return sweep_mod.sweep_boxes_flat(cam, taus, multi_contour, **_OPTIONS)


def sweep_boxes(cam, taus, multi_contour=False):
    return sweep_boxes_flat(cam, taus, multi_contour).per_tau()


def assert_same(cam: np.ndarray, taus, multi_contour: bool, expected=None) -> None:
    if expected is None:
        expected = wsol_boxes_per_threshold(cam, taus, multi_contour)
    got = sweep_boxes(cam, taus, multi_contour)
    assert len(got) == len(expected)
    for i, (e, g) in enumerate(zip(expected, got, strict=True)):
        assert g.dtype == np.int64 and g.shape[1] == 4
        if not np.array_equal(e, g):
            raise AssertionError(
                f"tau index {i} (tau {np.asarray(taus)[i]}), multi_contour={multi_contour}, map {cam.shape}: "
                f"reference {e.tolist()} != sweep {g.tolist()}"
            )


@pytest.fixture(
    params=["native-per-level", "native-sorted", "native-exact-pass", "numpy-forest", "numpy-per-level"], autouse=True
)
def implementation(request):
    """Every test runs on the compiled kernel's two strategies (per-level run labelling; passes over the
    value-sorted pixels, V1 levels its bounds leave open settled by reference calls or always by its
    exact pass over the basin-filled map) and on the pure-numpy path, the latter with hole contours
    from the hole forest and from per-level reference calls."""
    if request.param.startswith("native") and sweep_mod.resolve_backend("auto") != "native":
        pytest.skip("the compiled sweep kernel is not built (camkit was installed without a C compiler)")
    _OPTIONS.clear()
    _OPTIONS.update(sweep_options(request.param))
    yield request.param
    _OPTIONS.clear()


def sweep_options(implementation: str) -> dict:
    """The ``sweep_boxes_flat`` keywords that select ``implementation``."""
    return {
        "native-per-level": {"backend": "native", "strategy": "per_level"},
        "native-sorted": {"backend": "native", "strategy": "sorted", "exact_pass_levels": 10**9},
        "native-exact-pass": {"backend": "native", "strategy": "sorted", "exact_pass_levels": -1},
        "numpy-forest": {"backend": "numpy", "hole_levels_per_call": -1},
        "numpy-per-level": {"backend": "numpy", "hole_levels_per_call": 10**9},
    }[implementation]


def _normalised(m: np.ndarray) -> np.ndarray:
    return normalize_scoremap(np.asarray(m, dtype=np.float64))


def _random_map(rng: np.random.Generator) -> np.ndarray:
    h, w = (int(v) for v in rng.integers(1, 25, 2))
    kind = int(rng.integers(0, 9))
    if kind == 0:  # smooth blobs, bicubic like an upsampled CAM
        s = int(rng.integers(2, 7))
        m = cv2.resize(rng.random((s, s)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    elif kind == 1:  # noise
        m = rng.random((h, w))
    elif kind == 2:  # plateaus: few distinct values
        m = rng.integers(0, int(rng.integers(2, 5)), (h, w)).astype(float)
    elif kind == 3:  # binary blobs with holes
        m = cv2.morphologyEx((rng.random((h, w)) < 0.6).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((2, 2), np.uint8))
    elif kind == 4:  # constant (zeros after normalisation) or constant non-zero unit map
        return np.full((h, w), float(rng.choice([0.0, 0.3, 1.0])))
    elif kind == 5:  # checkerboard with holes punched in
        m = (np.indices((h, w)).sum(0) % 2).astype(float)
        m[rng.random((h, w)) < 0.3] = 0.5
    elif kind == 6:  # mirrored blobs: exact ties in contour area
        half = rng.random((h, max(1, w // 2)))
        m = np.concatenate([half, np.zeros((h, 1)), half[:, ::-1]], axis=1)
    elif kind == 7:  # rings and craters (holes at many levels)
        yy, xx = np.indices((h, w))
        r = np.hypot(yy - h / 2, xx - w / 2)
        m = np.cos(r * rng.uniform(0.5, 2.0)) + 0.3 * rng.random((h, w))
    else:  # quantised smooth map: large plateaus at several levels
        s = int(rng.integers(2, 5))
        m = cv2.resize(rng.random((s, s)).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        m = np.round(m * 4)
    return _normalised(m)


def test_seeded_random_maps(implementation):
    rng = np.random.default_rng(20240501)
    # the kernel is what users run: 2000 maps (the same first 500 as the numpy paths, then more)
    for _ in range(2000 if implementation.startswith("native") else 500):
        cam = _random_map(rng)
        for multi in (False, True):
            assert_same(cam, TAUS, multi)


unit_maps = arrays(
    np.float64,
    st.tuples(st.integers(1, 10), st.integers(1, 10)),
    elements=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5, 0.75, 1.0, 1.0]),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cam=unit_maps, multi=st.booleans())
def test_property_small_maps(cam, multi):
    assert_same(cam, TAUS, multi)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cam=arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(1, 8)), elements=st.floats(0, 1)),
    taus=st.lists(st.floats(-0.5, 1.5, allow_nan=False), min_size=1, max_size=20),
    multi=st.booleans(),
)
def test_property_arbitrary_taus(cam, taus, multi):
    # Negative taus keep everything, taus >= 1 keep nothing, as cv2.threshold does.
    assert_same(cam, taus, multi)


def test_float32_maps_and_taus_follow_the_reference_arithmetic():
    rng = np.random.default_rng(5)
    cam = _normalised(rng.random((20, 20))).astype(np.float32)
    for taus in (TAUS.astype(np.float32), list(TAUS)):
        assert_same(cam, taus, False)
        assert_same(cam, taus, True)


def _photo_maps() -> list[np.ndarray]:
    data = pytest.importorskip("skimage.data")
    maps = []
    for name in ("chelsea", "coffee", "astronaut"):
        img = getattr(data, name)().astype(np.float32)
        gray = img.mean(axis=2)
        grad = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
        for m in (
            cv2.GaussianBlur(grad, (0, 0), 8),  # CAM-like: smooth saliency of edges
            cv2.GaussianBlur(img[:, :, 0], (0, 0), 4),  # a blurred colour channel
            cv2.resize(grad, (56, 56), interpolation=cv2.INTER_AREA),  # rough, many local maxima
        ):
            maps.append(_normalised(cv2.resize(m, (224, 224), interpolation=cv2.INTER_CUBIC)))
    return maps


def test_real_photo_maps_fine_grid():
    maps = _photo_maps()
    for i, cam in enumerate(maps):
        # every map at 0.01; two at the 0.001 grid of wsolevaluation's training code
        taus = FINE_TAUS if i in (0, 4) else TAUS
        assert_same(cam, taus, False)
        assert_same(cam, taus, True)


def test_upsampled_cam_like_maps_fine_grid():
    rng = np.random.default_rng(11)
    for s in (7, 14):
        m = cv2.resize(rng.standard_normal((s, s)).astype(np.float32), (224, 224), interpolation=cv2.INTER_CUBIC)
        cam = _normalised(m)
        assert_same(cam, FINE_TAUS, False)
        assert_same(cam, FINE_TAUS, True)


def test_v1_ties_resolve_like_opencv():
    # Two identical 3x3 blocks: equal contourArea 4; the reference keeps OpenCV's first contour.
    cam = np.zeros((7, 11))
    cam[2:5, 1:4] = 1.0
    cam[2:5, 7:10] = 1.0
    assert_same(cam, TAUS, False)
    # A thin diamond ring: outer contour and hole contour both have area 2.
    ring = np.zeros((5, 5))
    ring[1, 2] = ring[2, 1] = ring[2, 3] = ring[3, 2] = 1.0
    assert_same(ring, TAUS, False)
    assert len(sweep_boxes(ring, [0.5], True)[0]) == 2


def test_empty_levels_and_constant_maps():
    assert [b.tolist() for b in sweep_boxes(np.zeros((4, 4)), [0.0, 0.5])] == [[[0, 0, 0, 0]]] * 2
    full = sweep_boxes(np.full((4, 5), 0.5), [0.0, 0.99], True)
    assert [b.tolist() for b in full] == [[[0, 0, 4, 3]]] * 2
    # tau >= 1 keeps nothing: no contour, the reference's (0, 0, 0, 0)
    assert sweep_boxes(np.eye(4), [1.0])[0].tolist() == [[0, 0, 0, 0]]


def test_flat_result_shares_levels():
    cam = _normalised(np.arange(12.0).reshape(3, 4))
    res = sweep_boxes_flat(cam, FINE_TAUS, True)
    # u.max() == 255: 1000 taus collapse to int(tau * 255) in 0..254 -> 255 distinct levels
    assert len(res.levels) == 255
    assert res.level_start[-1] == len(res.boxes)
    per_tau = res.per_tau()
    assert per_tau[0] is per_tau[1]  # taus 0.000 and 0.001 share level 0


def test_row_order_matches_lexsort():
    # The packed int64 sort key must order rows exactly as a 5-key lexsort (column, then box).
    rng = np.random.default_rng(3)
    for shape in ((224, 224), (7, 300), (1, 1)):
        n = 500
        boxes = rng.integers(0, max(shape), (n, 4)).astype(np.int64)
        boxes[: n // 2] = boxes[0]  # many duplicate rows: ties must keep a valid order
        col = rng.integers(0, 256, n).astype(np.int64)
        got = sweep_mod._row_order(boxes, col, shape)
        want = np.lexsort((boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0], col))
        assert np.array_equal(np.c_[col, boxes][got], np.c_[col, boxes][want])


def test_one_row_and_one_column_maps():
    # Flat-raster neighbour pairs must not wrap across rows (w == 1) or run past the end (h == 1).
    rng = np.random.default_rng(9)
    for shape in ((1, 30), (30, 1), (2, 30), (30, 2)):
        for _ in range(20):
            cam = _normalised(rng.random(shape))
            for multi in (False, True):
                assert_same(cam, TAUS, multi)


def test_backend_names_are_checked():
    from camkit.errors import ParameterError

    with pytest.raises(ParameterError, match="backend='gpu' is not a sweep backend"):
        sweep_mod.sweep_boxes_flat(np.zeros((3, 3)), TAUS, backend="gpu")
