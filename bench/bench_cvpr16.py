"""Benchmark: the compiled CVPR16 box (``_components.cvpr16``) vs the numpy + cv2 path, ms per map.

Run: python bench/bench_cvpr16.py [--rounds 5] [--random 60] [--tau 0.2]

Maps, each boxed as ``camkit evaluate`` boxes them (float32 ``[224, 224]``, tau 0.2):

- ``real CAM``: the GT class's and top-5 classes' CAMs of the embedded EfficientNet-Lite0 on the
  12-photo ILSVRC sample (../shared/data/ilsvrc_val_sample; skipped when absent), 7x7 maps
  upsampled with ``camkit.resample.resize_map_cubic`` to 224 (72 maps);
- ``smooth random``: 7x7 Gaussian maps upsampled the same way (CAM-like: few components);
- ``noise``: i.i.d. Gaussian maps (thousands of small components: the labelling's worst case);
- ``noise + smooth``: a smooth map with noise of half its scale (ragged borders, many islands).

Every map's two boxes are checked equal; the times are medians of interleaved rounds (bench/_timing.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved, markdown_table  # noqa: E402

from camkit.localize import cvpr16 as cvpr16_module  # noqa: E402
from camkit.localize.cvpr16 import _cvpr16_box_native, _cvpr16_box_numpy  # noqa: E402
from camkit.resample import resize_map_cubic  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "shared/data/ilsvrc_val_sample"
SIZE = 224


def real_cams() -> list[np.ndarray]:
    """The GT and top-5 CAMs of EfficientNet-Lite0 on the ILSVRC sample, upsampled to 224 (empty without the sample)."""
    if not SAMPLE.is_dir():
        return []
    import torch

    from camkit.cam.sources import make_map_source
    from camkit.datasets import read_ilsvrc
    from camkit.datasets.torch_dataset import LocalizationImages, collate_localization
    from camkit.evaluate.loop import SquashTransform
    from camkit.models import load_model

    model = load_model("efficientnet_lite0")
    source = make_map_source(model)
    dataset = read_ilsvrc(SAMPLE)
    images = LocalizationImages(dataset, SquashTransform(model.preprocess.with_input_size(SIZE)))
    batch = collate_localization([images[i] for i in range(len(images))])
    gt = torch.as_tensor([s.class_index for s in dataset.samples])
    _, _, maps = source(batch["images"], gt)
    return [resize_map_cubic(m, SIZE) for m in maps.reshape(-1, *maps.shape[2:])]


def random_maps(n: int, kind: str, seed: int) -> list[np.ndarray]:
    rs = np.random.RandomState(seed)
    out = []
    for _ in range(n):
        smooth = resize_map_cubic(rs.randn(7, 7).astype(np.float32), SIZE)
        if kind == "smooth random":
            m = smooth
        elif kind == "noise":
            m = rs.randn(SIZE, SIZE).astype(np.float32)
        else:
            m = smooth + 0.5 * np.abs(smooth).mean() * rs.randn(SIZE, SIZE).astype(np.float32)
        out.append(np.ascontiguousarray(m, dtype=np.float32))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (median reported)")
    ap.add_argument("--random", type=int, default=60, help="maps per random kind")
    ap.add_argument("--tau", type=float, default=0.2)
    args = ap.parse_args()
    if cvpr16_module._components is None:
        sys.exit("the compiled kernel is not built: python setup.py build_ext --inplace")
    cv2.setNumThreads(1)  # as in the evaluate loop's helper threads
    sets = {"real CAM": real_cams()}
    if not sets["real CAM"]:
        print(f"(no ILSVRC sample at {SAMPLE}: real CAMs skipped)", file=sys.stderr)
    for i, kind in enumerate(("smooth random", "noise", "noise + smooth")):
        sets[kind] = random_maps(args.random, kind, seed=i)
    tau = args.tau
    rows = []
    for name, maps in sets.items():
        if not maps:
            continue
        for m in maps:
            a, b = _cvpr16_box_native(m, tau), _cvpr16_box_numpy(m, tau)
            if a.tolist() != b.tolist():
                sys.exit(f"{name}: the kernel's box {a.tolist()} differs from numpy+cv2's {b.tolist()}")

        def kernel(maps=maps):
            for m in maps:
                _cvpr16_box_native(m, tau)

        def reference(maps=maps):
            for m in maps:
                _cvpr16_box_numpy(m, tau)

        t = interleaved({"kernel": kernel, "numpy+cv2": reference}, rounds=args.rounds)
        ms_k, ms_r = 1e3 * t["kernel"] / len(maps), 1e3 * t["numpy+cv2"] / len(maps)
        rows.append([name, len(maps), f"{ms_k:.3f}", f"{ms_r:.3f}", f"{ms_r / ms_k:.1f}x"])
    print(f"CVPR16 box of float32 {SIZE}x{SIZE} maps, tau={tau}, ms per map (median of {args.rounds} rounds), boxes equal")
    print(markdown_table(["maps", "n", "kernel ms", "numpy+cv2 ms", "speed-up"], rows))


if __name__ == "__main__":
    main()
