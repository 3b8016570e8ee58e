"""Benchmark: wsolevaluation's per-threshold findContours loop vs camkit's one-pass sweep.

Run: python bench/bench_sweep.py [--maps 300] [--seed 0] [--numpy-path]

Maps: 224x224 CAM-like maps (7x7 and 14x14 Gaussian random maps upsampled bicubic, as CAMs of a
224 input are) plus maps derived from scikit-image photos (blurred gradient magnitude and blurred
colour channels). For V1 and V2, at 1000 (np.arange(0, 1, 0.001)) and 100 (np.arange(0, 1, 0.01))
thresholds, it times both methods on the same maps, interleaved map by map so that both see the
same memory state, checks that every tau's boxes are identical, and prints a Markdown table.
``--numpy-path`` times the pure-numpy fallback instead of the compiled kernel (an install without a C
compiler).

``--strategies`` instead times ``sweep_boxes_pair`` (V1 and V2 of one map, as ``camkit evaluate`` calls
it) with each kernel strategy (``auto``, ``per_level``, ``sorted``) on the GT-class CAMs of the embedded
EfficientNet-Lite0 on the 12-photo ILSVRC sample (../shared/data/ilsvrc_val_sample; skipped when
absent), upsampled to 224 with ``resize_map_cubic`` and min-max normalised, and on 224x224 noise and
CAM-like maps with a little noise, at 100 and 1000 thresholds; medians of interleaved rounds, one
helper thread's view (cv2 single-threaded), boxes checked equal across strategies.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved, markdown_table  # noqa: E402

import camkit.localize.sweep as sweep_mod  # noqa: E402
from camkit.localize import normalize_scoremap, sweep_boxes, wsol_boxes_per_threshold  # noqa: E402
from camkit.localize.sweep import sweep_boxes_pair  # noqa: E402
from camkit.normalize import normalize_maps  # noqa: E402


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


SAMPLE = Path(__file__).resolve().parents[2] / "shared/data/ilsvrc_val_sample"


def real_gt_cams() -> list[np.ndarray]:
    """GT-class CAMs of EfficientNet-Lite0 on the ILSVRC sample, as ``camkit evaluate`` boxes them (empty without it)."""
    if not SAMPLE.is_dir():
        return []
    import torch

    from camkit.cam.sources import make_map_source
    from camkit.datasets import read_ilsvrc
    from camkit.datasets.torch_dataset import LocalizationImages, collate_localization
    from camkit.evaluate.loop import SquashTransform
    from camkit.models import load_model
    from camkit.resample import resize_map_cubic

    model = load_model("efficientnet_lite0")
    dataset = read_ilsvrc(SAMPLE)
    images = LocalizationImages(dataset, SquashTransform(model.preprocess.with_input_size(224)))
    batch = collate_localization([images[i] for i in range(len(images))])
    gt = torch.as_tensor([s.class_index for s in dataset.samples])
    _, _, maps = make_map_source(model)(batch["images"], gt)
    return [normalize_maps(resize_map_cubic(m, 224), "minmax") for m in maps[:, 0]]


def strategy_table(rounds: int) -> None:
    if sweep_mod._components is None:
        sys.exit("the compiled kernel is not built: python setup.py build_ext --inplace")
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    smooth = cam_like_maps(12, 1)
    sets = {
        "real CAM (GT class)": real_gt_cams(),
        "noise": [normalize_maps(rng.random((224, 224)), "minmax") for _ in range(6)],
        "CAM-like + 2% noise": [normalize_maps(m + 0.02 * rng.standard_normal(m.shape), "minmax") for m in smooth],
    }
    if not sets["real CAM (GT class)"]:
        print(f"(no ILSVRC sample at {SAMPLE}: real CAMs skipped)", file=sys.stderr)
    strategies = sweep_mod.STRATEGIES
    rows = []
    for name, maps in sets.items():
        for n_taus in (100, 1000):
            taus = np.arange(0, 1, 1 / n_taus)
            first = [sweep_boxes_pair(m, taus, strategy="auto") for m in maps]
            for strategy in strategies[1:]:
                for m, want in zip(maps, first, strict=True):
                    got = sweep_boxes_pair(m, taus, strategy=strategy)
                    if not all(np.array_equal(a.boxes, b.boxes) for a, b in zip(got, want, strict=True)):
                        sys.exit(f"{name}: strategy {strategy} gives other boxes than auto")

            def timer(strategy, maps=maps, taus=taus):
                return lambda: [sweep_boxes_pair(m, taus, strategy=strategy) for m in maps]

            t = interleaved({s: timer(s) for s in strategies}, rounds=rounds)
            rows.append([name, len(maps), n_taus, *(f"{1e3 * t[s] / len(maps):.3f}" for s in strategies)])
    print("sweep_boxes_pair (V1 + V2) of 224x224 maps, ms per map (median of interleaved rounds), boxes equal")
    print(markdown_table(["maps", "n", "thresholds", *strategies], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=300, help="number of random CAM-like maps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--numpy-path", action="store_true", help="time the pure-numpy fallback, not the C kernel")
    parser.add_argument("--strategies", action="store_true", help="time the kernel's strategies on real CAMs and noise")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds for --strategies")
    args = parser.parse_args()
    if args.strategies:
        strategy_table(args.rounds)
        return
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
