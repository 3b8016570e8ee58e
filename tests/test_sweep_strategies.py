"""The sweep kernel's two strategies: per-level run labelling (row bit masks read as runs) and the passes
over the value-sorted pixels. Both must give the per-threshold findContours reference's boxes on maps
whose rows straddle the 64-bit words of the masks, on hand-built holes, rings, nested components and
ties; ``"auto"`` must take the per-level path on smooth maps and real CAMs and the sorted one on noise."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

import camkit.localize.sweep as sweep_mod
from camkit.errors import ParameterError
from camkit.localize.sweep import sweep_boxes_flat, sweep_boxes_pair
from camkit.localize.wsol import threshold_levels, unit_map_to_uint8, wsol_boxes_per_threshold
from camkit.normalize import normalize_maps

pytestmark = pytest.mark.skipif(sweep_mod._components is None, reason="the compiled sweep kernel is not built")

TAUS = np.arange(0, 1, 0.01)
STRATEGIES = ("per_level", "sorted")


def assert_reference(cam: np.ndarray, taus=TAUS) -> None:
    """Both strategies' V1 and V2 boxes equal the reference at every tau."""
    for multi in (False, True):
        ref = wsol_boxes_per_threshold(cam, taus, multi_contour=multi)
        for strategy in STRATEGIES:
            got = sweep_boxes_flat(cam, taus, multi, backend="native", strategy=strategy).per_tau()
            for i, (g, r) in enumerate(zip(got, ref, strict=True)):
                assert g.tolist() == r.tolist(), f"{strategy}, multi_contour={multi}, tau {taus[i]}, map {cam.shape}"


def _cam_like(rng: np.random.Generator, h: int, w: int, s: int = 7) -> np.ndarray:
    small = rng.standard_normal((s, s)).astype(np.float32)
    return normalize_maps(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), "minmax")


def _kernel_choice(cam: np.ndarray, taus=TAUS) -> int:
    u = unit_map_to_uint8(cam)
    levels = np.unique(np.clip(threshold_levels(taus, u.max()), -1, 255)).astype(np.int32)
    assert sweep_mod._components is not None
    return sweep_mod._components.sweep_strategy(u, u.shape[0], u.shape[1], levels)


@pytest.mark.parametrize("w", [1, 2, 15, 16, 17, 63, 64, 65, 127, 128, 129])
def test_widths_around_mask_words(w):
    # Runs that end on a word's last bit, rows that fill whole words, the SIMD tail (w % 16) and the
    # scalar one, on smooth maps, noise and binary maps with holes.
    rng = np.random.default_rng(w)
    for h in (1, 2, 9, 40):
        maps = [_cam_like(rng, h, w, 4), normalize_maps(rng.random((h, w)), "minmax")]
        blobs = cv2.morphologyEx((rng.random((h, w)) < 0.6).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((2, 2), np.uint8))
        maps.append(blobs.astype(np.float64))
        for cam in maps:
            assert_reference(cam)


def test_full_rows_and_bands():
    # Rows whose minimum is above the level (whole rows set) next to rows below it: a band across
    # the map, a band with a hole, and a frame (its hole touches no border).
    for w in (64, 70):
        band = np.zeros((12, w))
        band[3:7] = 1.0
        holed = band.copy()
        holed[4:6, 10:20] = 0.2
        frame = np.full((12, w), 0.8)
        frame[1:-1, 1:-1] = 0.3
        frame[5, 5] = 1.0  # a component inside the frame's hole
        for cam in (band, holed, frame):
            assert_reference(cam)


def test_holes_and_nested_components_golden():
    # A ring (outer 9x9 at x, y = 1..9) around a 5x5 hole (2..8 minus the ring -> 3..7), and inside the
    # hole a 3x3 blob (4..6) at a higher value. At tau 0.5 (level 127): the ring and the blob.
    cam = np.zeros((11, 11))
    cam[1:10, 1:10] = 0.6
    cam[3:8, 3:8] = 0.0
    cam[4:7, 4:7] = 1.0
    for strategy in STRATEGIES:
        v1, v2 = sweep_boxes_pair(cam, [0.5, 0.7], backend="native", strategy=strategy)
        # V2 at 0.5: ring outer (1, 1, 10, 10), the blob (4, 4, 7, 7), the hole ring 3..7 minus the blob:
        # pixels x, y = 3..7 -> (2, 2, 9, 9)
        assert v2.per_tau()[0].tolist() == [[1, 1, 10, 10], [2, 2, 9, 9], [4, 4, 7, 7]]
        # at 0.7 (level 178) only the blob is left
        assert v2.per_tau()[1].tolist() == [[4, 4, 7, 7]]
        # V1 at 0.5: the ring's outer contour (area 64) beats its hole contour and the blob
        assert v1.per_tau()[0].tolist() == [[1, 1, 10, 10]]
        assert v1.per_tau()[1].tolist() == [[4, 4, 7, 7]]
    assert_reference(cam)


def test_v1_levels_settled_on_the_filled_set():
    # Bounds cannot settle these: a thin ring (own cell area small, box large) next to a solid blob of
    # a close area, and an 8-connected diamond ring with zero cell area. The per-level path settles
    # them by labelling the set with its holes filled; ties (two equal rings) go to the reference call.
    cam = np.zeros((20, 40))
    cam[2:12, 2:12] = 1.0
    cam[3:11, 3:11] = 0.0  # a 1-pixel ring: outer contour area 81, own cell area 2 (its four corner cells)
    cam[2:11, 20:29] = 0.9  # a solid 9x9 blob: contour area 64, above the ring's lower bound
    diamond = np.zeros((5, 5))
    diamond[1, 2] = diamond[2, 1] = diamond[2, 3] = diamond[3, 2] = 1.0
    twins = np.zeros((8, 20))
    for x0 in (1, 11):
        twins[1:7, x0 : x0 + 6] = 1.0
        twins[2:6, x0 + 1 : x0 + 5] = 0.0
    for m in (cam, diamond, twins):
        assert_reference(m)


def test_noisy_and_cam_like_224_maps():
    rng = np.random.default_rng(11)
    smooth = _cam_like(rng, 224, 224)
    noisy = normalize_maps(smooth + 0.05 * rng.standard_normal((224, 224)).astype(np.float32), "minmax")
    for cam in (smooth, noisy):
        for taus in (TAUS, np.arange(0, 1, 0.001)):
            results = [sweep_boxes_pair(cam, taus, backend="native", strategy=s) for s in STRATEGIES]
            for a, b in zip(results[0], results[1], strict=True):
                assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.level_start, b.level_start)
    assert_reference(noisy, np.arange(0, 1, 0.05))


def test_auto_takes_per_level_on_smooth_maps_and_sorted_on_noise():
    rng = np.random.default_rng(5)
    yy, xx = np.indices((224, 224))
    bumps = np.exp(-((xx - 80) ** 2 + (yy - 120) ** 2) / 2000.0) + 0.6 * np.exp(-((xx - 170) ** 2 + (yy - 60) ** 2) / 900.0)
    noise = normalize_maps(rng.random((224, 224)), "minmax")
    for taus in (TAUS, np.arange(0, 1, 0.001)):
        assert _kernel_choice(normalize_maps(bumps, "minmax"), taus) == 1
        assert _kernel_choice(noise, taus) == 2


@pytest.mark.slow
def test_auto_takes_per_level_on_real_cams(lite0, ilsvrc_sample):
    # The evaluator's maps: GT-class CAMs of EfficientNet-Lite0 on the ILSVRC sample, upsampled to 224.
    import torch

    from camkit.cam.sources import make_map_source
    from camkit.datasets import read_ilsvrc
    from camkit.datasets.torch_dataset import LocalizationImages, collate_localization
    from camkit.evaluate.loop import SquashTransform
    from camkit.resample import resize_map_cubic

    dataset = read_ilsvrc(ilsvrc_sample)
    images = LocalizationImages(dataset, SquashTransform(lite0.preprocess.with_input_size(224)))
    batch = collate_localization([images[i] for i in range(len(images))])
    gt = torch.as_tensor([sample.class_index for sample in dataset.samples])
    _, _, maps = make_map_source(lite0)(batch["images"], gt)
    for m in maps[:, 0]:
        cam = normalize_maps(resize_map_cubic(m, 224), "minmax")
        assert _kernel_choice(cam) == 1
        auto = sweep_boxes_pair(cam, TAUS, backend="native")
        for strategy in STRATEGIES:
            for a, b in zip(auto, sweep_boxes_pair(cam, TAUS, backend="native", strategy=strategy), strict=True):
                assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.level_start, b.level_start)
    assert_reference(cam, np.arange(0, 1, 0.05))


def test_threads_share_no_state():
    # camkit evaluate calls the kernel from several threads at once (the GIL is released).
    rng = np.random.default_rng(8)
    maps = [_cam_like(rng, 224, 224) for _ in range(4)] + [normalize_maps(rng.random((120, 90)), "minmax") for _ in range(4)]
    want = [sweep_boxes_pair(m, TAUS, backend="native") for m in maps]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            got = list(pool.map(lambda m: sweep_boxes_pair(m, TAUS, backend="native"), maps))
            for g, w in zip(got, want, strict=True):
                for a, b in zip(g, w, strict=True):
                    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.level_start, b.level_start)


def test_strategy_names_are_checked():
    with pytest.raises(ParameterError, match="strategy='fast' is not a sweep kernel strategy"):
        sweep_boxes_pair(np.zeros((3, 3)), TAUS, strategy="fast")
    with pytest.raises(ParameterError, match="strategy='fast'"):
        sweep_boxes_flat(np.zeros((3, 3)), TAUS, strategy="fast")
    assert sweep_mod._components is not None
    with pytest.raises(ValueError, match="strategy must be"):
        sweep_mod._components.sweep(np.zeros(9, np.uint8), 3, 3, np.array([0], np.int32), False, 8, 7)
