"""``sweep_boxes_pair`` (V1 and V2 from one kernel call) equals the two ``sweep_boxes_flat`` calls field for
field, on upsampled CAM-like maps, noise, few-level maps with ties, tau grids of 100 and 1000, either kernel
strategy and either setting of the V1 exact pass; and both equal the per-threshold findContours reference."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from camkit.localize import sweep as sweep_module
from camkit.localize.sweep import sweep_boxes_flat, sweep_boxes_pair
from camkit.localize.wsol import wsol_boxes_per_threshold
from camkit.normalize import normalize_maps

FIELDS = ("boxes", "level_start", "tau_level", "levels")


def _maps(n: int, seed: int = 0) -> list[np.ndarray]:
    rs = np.random.RandomState(seed)
    out = []
    for t in range(n):
        h, w = rs.randint(1, 60), rs.randint(1, 60)
        if t % 4 == 0:
            m = rs.rand(h, w)
        elif t % 4 == 1:  # few levels: equal blobs, V1 ties left to the reference call
            m = rs.randint(0, 4, (h, w)).astype(np.float32)
        else:  # smooth, like a CAM upsampled with INTER_CUBIC
            small = rs.randn(rs.randint(1, 8), rs.randint(1, 8)).astype(np.float32)
            m = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        out.append(normalize_maps(m, "minmax"))
    for _ in range(4):  # the evaluator's case: 7x7 -> 224x224
        out.append(normalize_maps(cv2.resize(rs.randn(7, 7).astype(np.float32), (224, 224), interpolation=cv2.INTER_CUBIC), "minmax"))
    return out


def _equal(a, b) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in FIELDS)


@pytest.mark.parametrize("backend", ["auto", "numpy"])
def test_pair_equals_the_two_calls(backend):
    if backend == "auto" and sweep_module._components is None:
        pytest.skip("the compiled kernel is not built")
    maps = _maps(60 if backend == "auto" else 24)
    for u in maps:
        for taus in (np.arange(0, 1, 0.01), np.arange(0, 1, 0.001), np.array([0.5, 0.0, 0.99])):
            kernel_options = [("per_level", 8), ("sorted", 8), ("sorted", 0), ("sorted", 10**6)]
            for strategy, exact in kernel_options if backend == "auto" else [("auto", 8)]:
                opts = {"backend": backend, "exact_pass_levels": exact, "strategy": strategy}
                v1, v2 = sweep_boxes_pair(u, taus, **opts)
                assert _equal(v1, sweep_boxes_flat(u, taus, False, **opts))
                assert _equal(v2, sweep_boxes_flat(u, taus, True, **opts))


def test_pair_equals_the_per_threshold_reference():
    taus = np.arange(0, 1, 0.05)
    for u in _maps(30, seed=5):
        v1, v2 = sweep_boxes_pair(u, taus)
        for result, multi in ((v1, False), (v2, True)):
            ref = wsol_boxes_per_threshold(u, taus, multi_contour=multi)
            got = result.per_tau()
            assert len(got) == len(ref)
            for g, r in zip(got, ref, strict=True):
                assert g.tolist() == sorted(r.tolist())
