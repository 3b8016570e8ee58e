"""Benchmark: wsolevaluation's per-threshold findContours loop vs camkit's one-pass sweep.

Run: python bench/bench_sweep.py [--maps 300] [--seed 0] [--numpy-path]

Maps: 224x224 CAM-like maps (7x7 and 14x14 Gaussian random maps upsampled bicubic, as CAMs of a
224 input are) plus maps derived from scikit-image photos (blurred gradient magnitude and blurred
colour channels). For V1 and V2, at 1000 (np.arange(0, 1, 0.001)) and 100 (np.arange(0, 1, 0.01))
thresholds, it times both methods on the same maps, interleaved map by map so that both see the
same memory state, checks that every tau's boxes are identical, and prints a Markdown table.
``--numpy-path`` times the pure-numpy fallback instead of the compiled kernel (an install without a C
compiler).
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

import camkit.localize.sweep as sweep_mod
from camkit.localize import normalize_scoremap, sweep_boxes, wsol_boxes_per_threshold


def cam_like_maps(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    maps = []
    for i in range(n):
        s = 7 if i % 2 == 0 else 14
        m = cv2.resize(rng.standard_normal((s, s)).astype(np.float32), (224, 224), interpolation=cv2.INTER_CUBIC)
        maps.append(normalize_scoremap(m.astype(np.float64)))
    return maps


def photo_maps() -> list[np.ndarray]:
    from skimage import data

    maps = []
    for name in ("chelsea", "coffee", "astronaut"):
        img = getattr(data, name)().astype(np.float32)
        gray = img.mean(axis=2)
        grad = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
        for m in (cv2.GaussianBlur(grad, (0, 0), 8), cv2.GaussianBlur(img[:, :, 0], (0, 0), 4)):
            m = cv2.resize(m, (224, 224), interpolation=cv2.INTER_CUBIC)
            maps.append(normalize_scoremap(m.astype(np.float64)))
    return maps


def run(maps: list[np.ndarray], taus: np.ndarray, multi_contour: bool, backend: str = "auto") -> tuple[float, float, bool]:
    t_ref = t_sweep = 0.0
    identical = True
    for i, cam in enumerate(maps):
        # alternate which method goes first, so neither always runs on a warm cache
        order = (0, 1) if i % 2 == 0 else (1, 0)
        out = [None, None]
        for which in order:
            start = time.perf_counter()
            if which == 0:
                out[0] = wsol_boxes_per_threshold(cam, taus, multi_contour)
                t_ref += time.perf_counter() - start
            else:
                out[1] = sweep_boxes(cam, taus, multi_contour, backend=backend)
                t_sweep += time.perf_counter() - start
        identical &= all(np.array_equal(a, b) for a, b in zip(out[0], out[1], strict=True))
    return t_ref * 1e3 / len(maps), t_sweep * 1e3 / len(maps), identical


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=300, help="number of random CAM-like maps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--numpy-path", action="store_true", help="time the pure-numpy fallback, not the C kernel")
    args = parser.parse_args()
    backend = sweep_mod.resolve_backend("numpy" if args.numpy_path else "auto")
    path = "pure-numpy path" if backend == "numpy" else "compiled kernel"
    maps = cam_like_maps(args.maps, args.seed) + photo_maps()
    for cam in maps[:5]:  # warm-up
        sweep_boxes(cam, np.arange(0, 1, 0.01), False, backend=backend)
        wsol_boxes_per_threshold(cam, np.arange(0, 1, 0.01), False)
    print(f"{len(maps)} maps of 224x224 ({args.maps} upsampled random + {len(maps) - args.maps} photo-derived), "
          f"sweep_boxes on its {path}\n")
    print("| variant | thresholds | per-threshold findContours (ms/map) | sweep_boxes (ms/map) | speed-up | identical boxes |")
    print("|---|---:|---:|---:|---:|---|")
    for n_taus, step in ((1000, 0.001), (100, 0.01)):
        taus = np.arange(0, 1, step)
        for multi_contour, name in ((False, "V1 (largest contour)"), (True, "V2 (all contours)")):
            ref, fast, same = run(maps, taus, multi_contour, backend)
            print(f"| {name} | {n_taus} | {ref:.2f} | {fast:.2f} | {ref / fast:.1f}x | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
