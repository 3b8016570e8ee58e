"""Hand-worked cases for the two localization conventions (CVPR16 text, wsolevaluation)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from camkit.errors import ParameterError
from camkit.localize import (
    cvpr16_box,
    cvpr16_boxes,
    localize,
    normalize_scoremap,
    scoremap_to_uint8,
    wsol_boxes,
    wsol_boxes_per_threshold,
)

# ---------------------------------------------------------------- CVPR16


def test_cvpr16_largest_component_by_pixels():
    cam = np.zeros((6, 8))
    cam[0, 0] = 1.0  # the max, but a 1-pixel component
    cam[2:5, 3:7] = 0.5  # 12 pixels >= 0.2 * 1.0
    cam[5, 0:2] = 0.3  # 2 pixels
    assert cvpr16_box(cam).tolist() == [3, 2, 6, 4]


def test_cvpr16_threshold_is_inclusive_20_percent_after_relu():
    cam = np.array([[-5.0, 0.2, 1.0, 0.1999]])
    # relu -> [0, .2, 1, .1999]; / max 1 -> keep >= 0.2: columns 1 and 2 (0.1999 is out).
    assert cvpr16_box(cam).tolist() == [1, 0, 2, 0]
    assert cvpr16_box(cam, tau=0.1).tolist() == [1, 0, 3, 0]


def test_cvpr16_uses_8_connectivity():
    cam = np.zeros((5, 5))
    # A diagonal chain of 3 pixels is one 8-connected component (3 px) beating a 2-px bar.
    cam[0, 0] = cam[1, 1] = cam[2, 2] = 1.0
    cam[4, 3:5] = 1.0
    assert cvpr16_box(cam).tolist() == [0, 0, 2, 2]


def test_cvpr16_tie_goes_to_the_component_holding_the_max():
    cam = np.zeros((4, 7))
    cam[0:2, 0:2] = 0.5  # 4 pixels, first in raster order
    cam[2:4, 5:7] = 0.5  # 4 pixels
    cam[3, 6] = 1.0  # the max lives in the second block
    assert cvpr16_box(cam).tolist() == [5, 2, 6, 3]


def test_cvpr16_tie_without_the_max_goes_to_raster_first():
    cam = np.zeros((5, 7))
    cam[0, 0] = 1.0  # the max, a 1-pixel component
    cam[3:5, 5:7] = 0.5  # 4 pixels, later in raster order
    cam[1:3, 2:4] = 0.5  # 4 pixels, first pixel (1, 2) comes first
    assert cvpr16_box(cam).tolist() == [2, 1, 3, 2]


def test_cvpr16_no_positive_evidence_gives_the_whole_map():
    assert cvpr16_box(np.full((3, 4), -1.0)).tolist() == [0, 0, 3, 2]
    assert cvpr16_box(np.zeros((3, 4))).tolist() == [0, 0, 3, 2]


def test_cvpr16_batch_and_errors():
    cams = np.zeros((2, 3, 3))
    cams[0, 1, 1] = 1
    cams[1, 0, 2] = 1
    assert cvpr16_boxes(cams).tolist() == [[1, 1, 1, 1], [2, 0, 2, 0]]
    with pytest.raises(ValueError, match="NaN"):
        cvpr16_box(np.full((2, 2), np.nan))
    with pytest.raises(ParameterError, match=r"^tau=1\.5 must be in \[0, 1\]"):
        cvpr16_box(np.ones((2, 2)), tau=1.5)


# ---------------------------------------------------------------- wsolevaluation


def test_normalize_and_uint8_as_reference():
    cam = np.array([[1.0, 3.0], [2.0, 5.0]], dtype=np.float32)
    # (x - 1) / 4 -> [0, .5, .25, 1]; * 255 truncated -> [0, 127, 63, 255]
    assert scoremap_to_uint8(cam).tolist() == [[0, 127], [63, 255]]
    assert normalize_scoremap(cam).dtype == np.float32
    assert not normalize_scoremap(np.full((2, 2), 7.0)).any()  # constant -> zeros
    assert not normalize_scoremap(np.array([[np.nan, 1.0]])).any()  # NaN -> zeros


def test_reference_golden_degenerate():
    # wsolevaluation evaluation_test.py: an all-zero map has no contour at any tau.
    boxes = wsol_boxes_per_threshold(np.zeros((3, 3)), np.arange(0, 1, 0.2))
    assert [b.tolist() for b in boxes] == [[[0, 0, 0, 0]]] * 5


def test_reference_golden_unimodal():
    scoremap = np.array(
        [[0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.4, 0.4, 0.4, 0.6], [0.0, 0.4, 1.0, 0.8, 0.6], [0.0, 0.4, 0.4, 0.4, 0.6]]
    )
    boxes = wsol_boxes_per_threshold(scoremap, np.arange(0, 1, 0.2))
    assert [b[0].tolist() for b in boxes] == [[1, 1, 4, 3], [1, 1, 4, 3], [2, 1, 4, 3], [2, 2, 4, 3], [2, 2, 3, 3]]


def test_reference_golden_multimodal():
    scoremap = np.array(
        [[0.4, 0.0, 0.2, 0.2, 0.2], [0.4, 0.4, 0.0, 0.4, 0.0], [0.0, 0.0, 0.0, 0.4, 0.0], [1.0, 0.6, 0.8, 0.2, 0.2]]
    )
    boxes = wsol_boxes_per_threshold(scoremap, np.arange(0, 1, 0.2))
    assert [b[0].tolist() for b in boxes] == [[0, 0, 4, 3], [0, 0, 2, 2], [0, 3, 3, 3], [2, 3, 3, 3], [0, 3, 1, 3]]


def test_wsol_threshold_is_strictly_greater_than_int_tau_max():
    cam = np.array([[0.0, 0.2, 0.5, 1.0]])  # uint8: 0, 51, 127, 255
    # tau 0.2: int(0.2 * 255) = 51 -> keep > 51: columns 2, 3 -> rect (2, 0, w=2, h=1) -> (2, 0, 4, 1)
    # clipped to (2, 0, 3, 0).
    assert wsol_boxes(cam, 0.2).tolist() == [[2, 0, 3, 0]]
    # tau 0.19: int(48.45) = 48 -> 51 > 48 kept too -> (1, 0, 3, 0)
    assert wsol_boxes(cam, 0.19).tolist() == [[1, 0, 3, 0]]


def test_wsol_box_is_x_plus_w_and_clipped_only_at_the_border():
    cam = np.zeros((8, 8))
    cam[2:4, 3:6] = 1.0  # pixels x 3..5, y 2..3 -> boundingRect (3, 2, 3, 2) -> (3, 2, 6, 4)
    assert wsol_boxes(cam, 0.5).tolist() == [[3, 2, 6, 4]]
    cam = np.zeros((8, 8))
    cam[5:8, 6:8] = 1.0  # touches the right/bottom border: (6, 5, 8, 8) clipped to (6, 5, 7, 7)
    assert wsol_boxes(cam, 0.5).tolist() == [[6, 5, 7, 7]]


def test_wsol_v1_picks_largest_contour_area_not_pixel_count():
    cam = np.zeros((10, 12))
    cam[1, 0:11] = 1.0  # 11-pixel line: contourArea 0
    cam[4:7, 2:5] = 1.0  # 3x3 block: contourArea 4
    assert wsol_boxes(cam, 0.5).tolist() == [[2, 4, 5, 7]]
    v2 = wsol_boxes(cam, 0.5, multi_contour=True).tolist()
    assert v2 == [[0, 1, 11, 2], [2, 4, 5, 7]]


def test_wsol_v2_includes_hole_contours():
    cam = np.zeros((7, 7))
    cam[1:6, 1:6] = 1.0
    cam[3, 3] = 0.0  # a one-pixel hole
    # outer: pixels 1..5 -> (1, 1, 6, 6); hole contour through the hole's 4-neighbours
    # x 2..4, y 2..4 -> rect (2, 2, 3, 3) -> (2, 2, 5, 5).
    assert wsol_boxes(cam, 0.5, multi_contour=True).tolist() == [[1, 1, 6, 6], [2, 2, 5, 5]]
    assert wsol_boxes(cam, 0.5).tolist() == [[1, 1, 6, 6]]


def test_wsol_holes_are_4_connected_background():
    cam = np.zeros((6, 6))
    cam[1:5, 1:5] = 1.0
    cam[2, 2] = cam[3, 3] = 0.0  # two diagonal background pixels: two separate 4-connected holes
    v2 = wsol_boxes(cam, 0.5, multi_contour=True)
    assert len(v2) == 3
    # hole (2, 2): 4-neighbours x, y in 1..3 -> (1, 1, 4, 4); hole (3, 3) -> (2, 2, 5, 5); outer (1, 1, 5, 5)
    assert v2.tolist() == [[1, 1, 4, 4], [1, 1, 5, 5], [2, 2, 5, 5]]


def test_wsol_foreground_is_8_connected():
    cam = np.zeros((5, 5))
    cam[1, 1] = cam[2, 2] = cam[3, 3] = 1.0  # one diagonal component, one contour
    v2 = wsol_boxes(cam, 0.5, multi_contour=True)
    assert v2.tolist() == [[1, 1, 4, 4]]


def test_wsol_matches_opencv_on_a_direct_call():
    rng = np.random.default_rng(3)
    cam = normalize_scoremap(rng.random((9, 11)))
    u = (cam * 255).astype(np.uint8)
    _, binary = cv2.threshold(u, int(0.5 * u.max()), 255, cv2.THRESH_BINARY)
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    expected = sorted(
        [x, y, min(x + w, 10), min(y + h, 8)] for x, y, w, h in (cv2.boundingRect(c) for c in contours)
    )
    assert wsol_boxes(cam, 0.5, multi_contour=True).tolist() == expected


def test_wsol_rejects_unnormalised_maps():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        wsol_boxes(np.array([[0.0, 2.0]]), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        wsol_boxes(np.array([[0.0, np.nan]]), 0.5)


def test_localize_dispatch():
    cams = np.zeros((2, 6, 6))
    cams[0, 1:3, 1:4] = 3.0
    cams[1, 4, 4] = 1.0
    assert localize(cams).tolist() == [[1, 1, 3, 2], [4, 4, 4, 4]]
    assert localize(cams[0], "cvpr16").tolist() == [1, 1, 3, 2]
    wsol = localize(cams, "wsol", tau=0.5)
    assert [b.tolist() for b in wsol] == [[[1, 1, 4, 3]], [[4, 4, 5, 5]]]
    with pytest.raises(ParameterError, match="^convention='other' is not a box convention"):
        localize(cams, "other")
