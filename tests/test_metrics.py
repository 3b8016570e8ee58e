"""IoU, MaxBoxAcc (V1/V2), loc/cls accuracy and PxAP: golden cases and independent checks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from camkit.localize import normalize_scoremap, wsol_boxes
from camkit.metrics import (
    ClassificationAccuracy,
    LocalizationAccuracy,
    MaxBoxAccEvaluator,
    PxAPEvaluator,
    box_iou_inclusive,
    maxboxacc_v1,
    maxboxacc_v2,
)

TAUS = np.arange(0, 1, 0.01)

# ---------------------------------------------------------------- IoU (wsolevaluation golden cases)


def test_iou_degenerate_zero_boxes_are_one_pixel_and_identical():
    ious = box_iou_inclusive(np.zeros((3, 4), dtype=int), np.zeros((5, 4), dtype=int))
    assert ious.dtype == np.float64 and ious.shape == (3, 5)
    assert (ious == 1.0).all()


def test_iou_eye_boxes():
    boxes = np.array([[1, 1, 3, 3], [4, 4, 5, 5]])
    assert (box_iou_inclusive(boxes, boxes) == np.eye(2)).all()


def test_iou_realistic_values_8_over_27():
    # a = x 1..5, y 2..6: 5 * 5 = 25 px; b = x 3..4, y 1..5: 2 * 5 = 10 px
    # intersection x 3..4, y 2..5: 2 * 4 = 8; union 25 + 10 - 8 = 27
    iou = box_iou_inclusive(np.array([[1, 2, 5, 6]]), np.array([[3, 1, 4, 5]]))[0, 0]
    assert iou == pytest.approx(8 / 27, abs=1e-12)


def test_iou_disjoint_and_touching():
    # x 0..1 and x 2..3 share no pixel -> 0; x 0..2 and x 2..3 share column 2 (1 px of 3 + 2 - 1)
    assert box_iou_inclusive(np.array([[0, 0, 1, 0]]), np.array([[2, 0, 3, 0]]))[0, 0] == 0.0
    assert box_iou_inclusive(np.array([[0, 0, 2, 0]]), np.array([[2, 0, 3, 0]]))[0, 0] == pytest.approx(1 / 4)


def test_iou_rejects_inverted_boxes():
    with pytest.raises(ValueError, match="x1 >= x0"):
        box_iou_inclusive(np.array([[1, 1, 0, 0]]), np.array([[1, 1, 2, 2]]))


def test_iou_equals_torchvision_on_shifted_boxes():
    ops = pytest.importorskip("torchvision.ops")
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 50, (40, 4))
    b = rng.integers(0, 50, (30, 4))
    a[:, 2:] = a[:, :2] + rng.integers(0, 20, (40, 2))
    b[:, 2:] = b[:, :2] + rng.integers(0, 20, (30, 2))
    shift = np.array([0, 0, 1, 1])  # inclusive -> half-open corners
    ref = ops.box_iou(torch.from_numpy((a + shift).astype(np.float64)), torch.from_numpy((b + shift).astype(np.float64)))
    np.testing.assert_allclose(box_iou_inclusive(a, b), ref.numpy(), rtol=0, atol=1e-12)


# ---------------------------------------------------------------- MaxBoxAcc


def _maps_and_boxes(n: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    cams, gts = [], []
    for _ in range(n):
        h, w = (int(v) for v in rng.integers(24, 48, 2))
        s = int(rng.integers(2, 6))
        cam = cv2.resize(rng.random((s, s)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        cams.append(normalize_scoremap(cam.astype(np.float64)))
        k = int(rng.integers(1, 3))
        x0 = rng.integers(0, w - 4, k)
        y0 = rng.integers(0, h - 4, k)
        x1 = np.minimum(x0 + rng.integers(3, w, k), w - 1)
        y1 = np.minimum(y0 + rng.integers(3, h, k), h - 1)
        gts.append(np.stack([x0, y0, x1, y1], axis=1))
    return cams, gts


def _brute_force_hits(cams, gts, taus, deltas, multi_contour):
    """Plain reimplementation: per tau one reference findContours call, torchvision IoU."""
    ops = pytest.importorskip("torchvision.ops")
    torch = pytest.importorskip("torch")
    hits = np.zeros((len(deltas), len(taus)), dtype=np.int64)
    for cam, gt in zip(cams, gts, strict=True):
        gt_t = torch.tensor(gt + np.array([0, 0, 1, 1]), dtype=torch.float64)
        for t, tau in enumerate(taus):
            boxes = wsol_boxes(cam, tau, multi_contour)
            iou = ops.box_iou(torch.tensor(boxes + np.array([0, 0, 1, 1]), dtype=torch.float64), gt_t)
            best = float(iou.max())
            for d, delta in enumerate(deltas):
                if best >= delta:
                    hits[d, t] += 1
    return hits


@pytest.mark.parametrize("multi_contour", [False, True])
def test_maxboxacc_equals_brute_force(multi_contour):
    cams, gts = _maps_and_boxes(12, seed=1)
    deltas = (0.3, 0.5, 0.7)
    evaluator = MaxBoxAccEvaluator(TAUS, deltas, multi_contour=multi_contour)
    evaluator.accumulate(np.array(cams[:1]), gts[:1])
    for cam, gt in zip(cams[1:], gts[1:], strict=True):
        evaluator.accumulate(cam, [gt])
    hits = _brute_force_hits(cams, gts, TAUS, deltas, multi_contour)
    result = evaluator.compute()
    assert result["n_images"] == 12
    for d, delta in enumerate(deltas):
        curve = hits[d] * 100.0 / 12
        np.testing.assert_array_equal(result["boxacc"][delta], curve)
        assert result["maxboxacc"][delta] == curve.max()
        assert result["best_tau"][delta] == TAUS[np.argmax(curve)]
    assert result["mean_maxboxacc"] == pytest.approx(np.mean([hits[d].max() * 100.0 / 12 for d in range(3)]))


def test_maxboxacc_golden_percentages():
    # Image A: a block exactly on its GT box -> hit at every tau that keeps the block only.
    # Image B: same map, GT box elsewhere -> never a hit.
    cam = np.zeros((10, 10))
    cam[2:6, 3:7] = 1.0  # pixels x 3..6, y 2..5 -> reference box (3, 2, 7, 6)
    gt_hit = np.array([[3, 2, 7, 6]])
    gt_miss = np.array([[0, 8, 1, 9]])
    ev = maxboxacc_v1([0.5])
    ev.accumulate(np.stack([cam, cam, cam, cam]), [gt_hit, gt_hit, gt_hit, gt_miss])
    res = ev.compute()
    assert res["boxacc"][0.5].tolist() == [75.0]  # 3 hits of 4 images
    assert res["maxboxacc"] == {0.5: 75.0}


def test_maxboxacc_accumulate_order_and_replay():
    cams, gts = _maps_and_boxes(10, seed=2)
    a, b, c = maxboxacc_v2(TAUS), maxboxacc_v2(TAUS), maxboxacc_v2(TAUS)
    per_image = [a.accumulate(cam, [gt])[0] for cam, gt in zip(cams, gts, strict=True)]
    for i in np.random.default_rng(0).permutation(10):  # another order
        b.accumulate(cams[i], [gts[i]])
    c.accumulate_ious(np.stack(per_image))  # replayed from persisted per-image IoUs
    ra, rb, rc = a.compute(), b.compute(), c.compute()
    for d in (0.3, 0.5, 0.7):
        np.testing.assert_array_equal(ra["boxacc"][d], rb["boxacc"][d])
        np.testing.assert_array_equal(ra["boxacc"][d], rc["boxacc"][d])
    assert ra["mean_maxboxacc"] == rb["mean_maxboxacc"] == rc["mean_maxboxacc"]
    assert 0 < ra["mean_maxboxacc"] <= 100


def test_v1_and_v2_constructors():
    v1, v2 = maxboxacc_v1(TAUS), maxboxacc_v2(TAUS)
    assert (v1.iou_thresholds, v1.multi_contour) == ((0.5,), False)
    assert (v2.iou_thresholds, v2.multi_contour) == ((0.3, 0.5, 0.7), True)
    with pytest.raises(ValueError, match="accumulate"):
        v1.compute()


# ---------------------------------------------------------------- loc / cls accuracy


def test_localization_accuracy_golden():
    gt = np.array([3, 3, 3, 3])
    top5 = np.array([[3, 1, 2, 4, 5], [1, 3, 2, 4, 5], [3, 1, 2, 4, 5], [1, 2, 4, 5, 6]])
    ious = np.array(
        [
            [0.6, 0, 0, 0, 0],  # top-1 right, box good: top-1 loc and top-5 loc
            [0.9, 0.5, 0, 0, 0],  # GT at rank 2, its box IoU 0.5 >= 0.5: top-5 loc only
            [0.4, 0.9, 0, 0, 0],  # top-1 right but its box IoU 0.4: neither
            [0.9, 0.9, 0.9, 0.9, 0.9],  # GT class not predicted: neither
        ]
    )
    known = np.array([0.6, 0.5, 0.49, 0.7])  # GT-known hits: 3 of 4
    acc = LocalizationAccuracy()
    acc.accumulate(gt[:2], top5[:2], ious[:2], known[:2])
    acc.accumulate(gt[2:], top5[2:], ious[2:], known[2:])
    r = acc.compute()
    assert (r["top1_loc"], r["top5_loc"], r["gt_known_loc"]) == (25.0, 50.0, 75.0)
    assert (r["top1_loc_error"], r["top5_loc_error"], r["gt_known_loc_error"]) == (75.0, 50.0, 25.0)


def test_classification_accuracy_golden():
    cls = ClassificationAccuracy()
    cls.accumulate(np.array([0, 1, 2]), np.array([[0, 9, 8, 7, 6], [9, 8, 7, 6, 1], [9, 8, 7, 6, 5]]))
    r = cls.compute()
    assert r["top1"] == pytest.approx(100 / 3) and r["top5"] == pytest.approx(200 / 3)
    assert r["top1_error"] == pytest.approx(200 / 3)
    with pytest.raises(ValueError, match="5 predictions"):
        cls.accumulate(np.array([0]), np.array([[0, 1]]))


# ---------------------------------------------------------------- PxAP


def test_pxap_golden_by_hand():
    scores = np.array([[1.0, 0.5], [0.5, 0.0]])
    mask = np.array([[1, 0], [1, 0]], dtype=np.uint8)
    ev = PxAPEvaluator([0.0, 0.5])
    ev.accumulate(scores, mask)
    # bins [0, .5) [.5, 1) [1, 2) [2, 3]: fg 0.5, 1.0 -> [0, 1, 1, 0]; bg 0.0, 0.5 -> [1, 1, 0, 0]
    # from the top: tp [0, 1, 2, 2], fp [0, 0, 1, 2] -> precision [-, 1, 2/3, 1/2], recall [0, .5, 1, 1]
    # PxAP = 1 * .5 + 2/3 * .5 + 1/2 * 0 = 5/6
    r = ev.compute()
    assert r["pxap"] == pytest.approx(100 * 5 / 6)
    np.testing.assert_allclose(r["recall"], [0, 0.5, 1, 1])


def test_pxap_ignore_pixels_do_not_count():
    scores = np.array([[1.0, 0.5, 1.0], [0.5, 0.0, 1.0]])
    mask = np.array([[1, 0, 255], [1, 0, 255]], dtype=np.uint8)
    ev = PxAPEvaluator([0.0, 0.5])
    ev.accumulate(scores, mask)
    assert ev.compute()["pxap"] == pytest.approx(100 * 5 / 6)


def test_pxap_constant_map_is_the_foreground_fraction_and_perfect_map_is_100():
    # wsolevaluation's MaskEvaluatorTest: a constant map scores 100 * n_fg / (n_fg + n_bg).
    mask = np.zeros((4, 8), dtype=np.uint8)
    mask[1:3, 2:5] = 1  # 6 fg, 26 bg
    for value in (0.0, 0.5, 1.0):
        ev = PxAPEvaluator(TAUS)
        ev.accumulate(np.full(mask.shape, value), mask)
        assert ev.compute()["pxap"] == pytest.approx(100 * 6 / 32)
    ev = PxAPEvaluator(TAUS)
    ev.accumulate(mask.astype(float), mask)
    assert ev.compute()["pxap"] == 100.0


def test_pxap_equals_sklearn_when_scores_lie_on_the_grid():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(4)
    taus = np.arange(0, 1, 0.05)
    scores = rng.choice(taus, size=(3, 16, 16))  # every score is a bin edge
    masks = (rng.random((3, 16, 16)) < 0.3).astype(np.uint8)
    ev = PxAPEvaluator(taus)
    ev.accumulate(scores, masks)
    ap = metrics.average_precision_score(masks.ravel(), scores.ravel())
    assert ev.compute()["pxap"] == pytest.approx(100 * ap, abs=1e-9)
    # Off the grid, scores are rounded down to it, so the two differ, but only by the grid's step.
    scores_off = rng.random((3, 16, 16))
    ev = PxAPEvaluator(np.arange(0, 1, 0.001))
    ev.accumulate(scores_off, masks)
    ap_off = metrics.average_precision_score(masks.ravel(), scores_off.ravel())
    assert ev.compute()["pxap"] == pytest.approx(100 * ap_off, abs=0.5)


def test_pxap_accumulate_order_invariant_and_errors():
    rng = np.random.default_rng(6)
    scores = rng.random((4, 8, 8))
    masks = (rng.random((4, 8, 8)) < 0.5).astype(np.uint8)
    a, b = PxAPEvaluator(TAUS), PxAPEvaluator(TAUS)
    a.accumulate(scores, masks)
    for i in (3, 1, 0, 2):
        b.accumulate(scores[i], masks[i])
    assert a.compute()["pxap"] == b.compute()["pxap"]
    empty = PxAPEvaluator(TAUS)
    empty.accumulate(np.zeros((2, 2)), np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="foreground"):
        empty.compute()


def test_every_evaluator_resets_to_empty():
    from camkit.metrics import Evaluator

    taus = np.arange(0, 1, 0.25)
    cls_acc, loc = ClassificationAccuracy(), LocalizationAccuracy()
    box = MaxBoxAccEvaluator(taus, (0.5,))
    pxap = PxAPEvaluator(taus)
    top = np.array([[1, 2, 3, 4, 5]])
    for _ in range(2):  # the second round after reset() must count exactly like the first
        cls_acc.accumulate(np.array([1]), top)
        loc.accumulate(np.array([2]), top, np.full((1, 5), 0.6), np.array([0.4]))
        box.accumulate_ious(np.array([[1.0, 0.6, 0.4, 0.0]]))
        pxap.accumulate(np.array([[0.9, 0.1]]), np.array([[1, 0]], dtype=np.uint8))
        assert cls_acc.compute()["top1"] == 100.0 and loc.compute()["top5_loc"] == 100.0
        assert loc.compute()["gt_known_loc"] == 0.0 and box.n_images == 1
        assert box.compute()["boxacc"][0.5].tolist() == [100.0, 100.0, 0.0, 0.0]
        assert pxap.compute()["pxap"] == 100.0
        for ev in (cls_acc, loc, box, pxap):
            assert isinstance(ev, Evaluator)
            ev.reset()
    with pytest.raises(ValueError, match="no images"):
        box.compute()
