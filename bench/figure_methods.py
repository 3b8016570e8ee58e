"""Figures of the methods section: every CAM method on one photo, and the sanity-check summary.

    python bench/figure_methods.py [--image PATH] [--out docs/methods_overlays.png] [--batch-size 64]
    python bench/figure_methods.py --sanity run1/sanity.json [run2/sanity.json ...] [--out docs/sanity_methods.png]

Overlays: the photo defaults to scikit-image's ``chelsea`` (a tabby cat, shipped with scikit-image); the
map of the top-1 class of the embedded EfficientNet-Lite0 is shown for every method that takes a CNN
(LeGrad explains vision transformers only), relu_max normalisation, bicubic to the photo, with its
CVPR16 box (tau 0.2) and the method's time on this machine. Score-CAM and Ablation-CAM explain ``bn2``
(1280 channels; Score-CAM forwards one masked input per non-constant channel); SS-CAM and IS-CAM forward
ten noisy or scaled copies of every channel's mask, which at ``bn2`` is 12,800 forwards (too slow for a
figure on 2 CPU cores), so they explain ``blocks.2`` (40 channels, 28 x 28) and the caption says so. The
PNG is palette-quantised to stay small.

Sanity: ``camkit sanity --json``-style results (``sanity.json`` files, merged; a method in several files
is taken from the first) drawn as two heat maps, methods x randomized blocks (cascading, logits down to
the input), of the mean Spearman rank correlation of absolute maps and the SSIM to the trained model's
maps; the same numbers are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
VIT_ONLY = ("legrad",)
LAYER = {"sscam": "blocks.2", "iscam": "blocks.2"}


def save_small(fig, out: str, dpi: int) -> None:
    """Save ``fig`` as a PNG quantised to 256 colours (overlays compress badly as RGB)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    buf.seek(0)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Image.open(buf).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    print(f"wrote {out} ({Path(out).stat().st_size / 1024:.0f} KB)")


def overlays(image_path: str | None, out: str, batch_size: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from PIL import Image

    from camkit.cam.geometry import to_original, window_pixels
    from camkit.cam.methods import METHODS, compute_method_maps
    from camkit.cli.common import keep_allocator_memory
    from camkit.localize import cvpr16_box
    from camkit.models import load_model
    from camkit.viz import overlay

    keep_allocator_memory()
    if image_path:
        photo = Image.open(image_path).convert("RGB")
        title = Path(image_path).name
    else:
        import skimage.data

        photo = Image.fromarray(skimage.data.chelsea())
        title = "scikit-image chelsea"
    model = load_model("efficientnet_lite0")
    arr, geo = model.preprocess.to_array(photo, "crop")
    x = torch.from_numpy(arr)[None]
    image = np.asarray(photo)
    x0, y0, x1, y1 = window_pixels(geo)
    compute_method_maps(model, x, "gradcam", classes=1)  # warm-up: the first call's one-off costs are no method's
    panels = []
    for name, info in METHODS.items():
        if name in VIT_ONLY:
            continue
        t = time.perf_counter()
        r = compute_method_maps(model, x, name, classes=1, layer=LAYER.get(name), batch_size=batch_size)
        dt = time.perf_counter() - t
        cam = to_original(r.maps[0].detach().float().numpy(), geo, "bicubic")[0]
        box = np.asarray(cvpr16_box(cam[y0 : y1 + 1, x0 : x1 + 1], 0.2)) + np.array([x0, y0, x0, y0])
        label = model.categories[int(r.class_idx[0, 0])]
        notes = [n for n in (LAYER.get(name), None if info.class_specific else "class-agnostic") if n]
        caption = f"{name}  ({dt:.2f} s)\n{label} {float(r.scores[0, 0]):.2f}" + (f" ({', '.join(notes)})" if notes else "")
        panels.append((caption, overlay(image, cam, box, None, 0.5, (x0, y0, x1, y1))))
        print(f"{name}: {dt:.2f} s, box {box.tolist()}", flush=True)
    cols = 7
    rows = -(-(len(panels) + 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.45 * rows))
    axes = axes.ravel()
    axes[0].imshow(image)
    axes[0].set_title(f"{title}\nEfficientNet-Lite0 (embedded)\ntop-1 class, CVPR16 box tau 0.2", fontsize=8)
    for ax, (cap, img) in zip(axes[1:], panels, strict=False):
        ax.imshow(img)
        ax.set_title(cap, fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    save_small(fig, out, dpi=72)


def sanity(paths: list[str], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [json.loads(Path(p).read_text()) for p in paths]
    steps = results[0]["steps"]
    scores: dict[str, dict] = {}
    n_images: dict[str, int] = {}
    for r in results:
        if r["steps"] != steps:
            sys.exit(f"{paths} do not share their randomization steps")
        for m, s in r["scores"].items():
            if m not in scores:
                scores[m] = s
                n_images[m] = len(r["per_image"][m]["spearman_abs"][0])
    methods = list(scores)
    measures = (("spearman_abs", "Spearman rank correlation (absolute maps)"), ("ssim", "SSIM (min-max maps)"))
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.28 * len(methods) + 2.0), sharey=True, layout="constrained")
    for ax, (key, label) in zip(axes, measures, strict=True):
        grid = np.array([scores[m][key] for m in methods])
        im = ax.imshow(grid, vmin=-0.2, vmax=1.0, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(steps)), steps, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(methods)), [f"{m} ({n_images[m]})" for m in methods], fontsize=8)
        ax.set_title(label, fontsize=10)
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if grid[i, j] > 0.55 else "white")
    fig.colorbar(im, ax=axes, fraction=0.02, pad=0.01)
    fig.suptitle(f"Cascading model-parameter randomization (Adebayo et al. 2018), {results[0]['model']}, (images): similarity "
                 "to the trained model's maps as blocks are randomized from the logits (left) down to the input (right)",
                 fontsize=9)
    save_small(fig, out, dpi=80)
    picks = [i for i, s in enumerate(steps) if i in (1, 2, 3, len(steps) // 2 + 1, len(steps) - 1)]
    header = ["method", "images"] + [f"{'all randomized (' + steps[i] + ')' if i == len(steps) - 1 else '+ ' + steps[i]}" for i in picks]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for m in methods:
        cells = [f"{scores[m]['spearman_abs'][i]:.2f} / {scores[m]['ssim'][i]:.2f}" for i in picks]
        print("| " + " | ".join([m, str(n_images[m]), *cells]) + " |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default=None, help="photo path (default: scikit-image chelsea)")
    ap.add_argument("--out", default=None, help="PNG path (default: docs/methods_overlays.png or docs/sanity_methods.png)")
    ap.add_argument("--batch-size", type=int, default=64, help="masked inputs per forward (perturbation methods)")
    ap.add_argument("--sanity", nargs="+", default=None, metavar="SANITY_JSON", help="draw the sanity summary instead")
    args = ap.parse_args()
    if args.sanity:
        sanity(args.sanity, args.out or str(ROOT / "docs" / "sanity_methods.png"))
    else:
        overlays(args.image, args.out or str(ROOT / "docs" / "methods_overlays.png"), args.batch_size)


if __name__ == "__main__":
    main()
