"""Render docs/methods_overlays.png: every CAM method on one real photo, embedded EfficientNet-Lite0.

    python bench/figure_methods.py [--image PATH] [--out docs/methods_overlays.png]

The photo defaults to scikit-image's ``chelsea`` (a tabby cat, shipped with scikit-image); the map of
the top-1 class is shown for each method (relu_max normalisation, bicubic to the photo) with its CVPR16
box (tau 0.2). Score-CAM runs 1280 masked forwards (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default=None, help="photo path (default: scikit-image chelsea)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "methods_overlays.png"))
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from PIL import Image

    from camkit.cam.geometry import to_original, window_pixels
    from camkit.cam.methods import METHODS, compute_method_maps
    from camkit.localize import cvpr16_box
    from camkit.models import load_model
    from camkit.viz import overlay

    if args.image:
        photo = Image.open(args.image).convert("RGB")
        title = Path(args.image).name
    else:
        import skimage.data

        photo = Image.fromarray(skimage.data.chelsea())
        title = "scikit-image chelsea"
    model = load_model("efficientnet_lite0")
    arr, geo = model.preprocess.to_array(photo, "crop")
    x = torch.from_numpy(arr)[None]
    image = np.asarray(photo)
    x0, y0, x1, y1 = window_pixels(geo)
    panels = []
    for name, info in METHODS.items():
        t = time.perf_counter()
        r = compute_method_maps(model, x, name, classes=1, batch_size=64)
        dt = time.perf_counter() - t
        cam = to_original(r.maps[0].numpy(), geo, "bicubic")[0]
        box = np.asarray(cvpr16_box(cam[y0 : y1 + 1, x0 : x1 + 1], 0.2)) + np.array([x0, y0, x0, y0])
        label = model.categories[int(r.class_idx[0, 0])]
        panels.append((f"{info.title}  ({dt:.2f} s)\n{label} {float(r.scores[0, 0]):.2f}", overlay(image, cam, box, None, 0.5, (x0, y0, x1, y1))))
        print(f"{name}: {dt:.2f} s, box {box.tolist()}", flush=True)
    fig, axes = plt.subplots(3, 3, figsize=(12, 10.5))
    axes = axes.ravel()
    axes[0].imshow(image)
    axes[0].set_title(f"{title}\n(EfficientNet-Lite0, embedded weights)", fontsize=10)
    for ax, (cap, img) in zip(axes[1:], panels):
        ax.imshow(img)
        ax.set_title(cap, fontsize=10)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
