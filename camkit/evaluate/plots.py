"""Figures: BoxAcc against the CAM threshold, PxAP's precision-recall curve, and galleries of localized
photos (matplotlib Agg canvas).

Colours in galleries: ground-truth boxes green, the predicted (CVPR16, GT class) box red, drawn over
the GT class's map (JET, CVPR16-normalised) blended with the squashed input photo.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

GT_COLOUR = "#00c000"
PRED_COLOUR = "#ff2020"


def _figure(**kwargs):
    # A bare Figure (Agg canvas), no pyplot: never touches the caller's backend or open figures.
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def plot_curves(summary: dict, path: str | Path) -> None:
    """BoxAcc(tau) per IoU threshold for MaxBoxAcc (V1) and MaxBoxAccV2, best taus marked."""
    curves = summary["curves"]
    taus = np.asarray(curves["taus"])
    fig = _figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2, sharey=True)
    titles = {"v1": "MaxBoxAcc (V1: largest contour)", "v2": "MaxBoxAccV2 (all contours)"}
    for ax, v in zip(axes, ("v1", "v2"), strict=True):
        for key, acc in curves[v].items():
            if acc is None or acc[0] is None:
                continue
            acc = np.asarray(acc, dtype=float)
            (line,) = ax.plot(taus, acc, label=f"IoU {int(key) / 100:.1f}: max {acc.max():.1f} @ tau {summary['best_tau'][v][key]:.2f}")
            j = int(np.argmax(acc))
            ax.plot([taus[j]], [acc[j]], "o", color=line.get_color())
        ax.set_title(titles[v])
        ax.set_xlabel("CAM threshold tau")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 101)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize=8)
    axes[0].set_ylabel("BoxAcc (%)")
    n = summary["n_images"]
    model = summary.get("model", {}).get("name", "")
    fig.suptitle(f"BoxAcc vs tau - {model}, {n} images, input {summary['protocol']['input_size']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_pxap_curve(summary: dict, path: str | Path) -> None:
    """PxAP's pixel precision-recall curve (one point per threshold predicting some pixel), area shaded.

    The area under the step curve (precision at each threshold times the recall gained there) is the
    PxAP; the dashed line is the foreground fraction, the precision of predicting every pixel (a
    constant map scores exactly this).
    """
    c = summary["pxap_curve"]
    precision = np.asarray(c["precision"], dtype=float)
    recall = np.asarray(c["recall"], dtype=float)
    thresholds = np.asarray(c["thresholds"], dtype=float)
    fig = _figure(figsize=(5.6, 5.0))
    ax = fig.subplots()
    # PxAP sums precision[i] * (recall[i] - recall[i-1]), recall starting at 0: a step whose height
    # on each recall interval is the precision at its right end.
    r_step = np.concatenate([[0.0], recall])
    p_step = np.concatenate([precision[:1], precision])
    ax.fill_between(r_step, p_step, step="pre", alpha=0.2, color="#1f77b4")
    ax.step(r_step, p_step, where="pre", color="#1f77b4", lw=1.5)
    ax.plot(recall, precision, ".", ms=3, color="#1f77b4")
    for tau in (0.2, 0.5, 0.8):  # a few thresholds for orientation
        j = int(np.argmin(np.abs(thresholds - tau)))
        if abs(thresholds[j] - tau) < 1e-9:
            ax.annotate(f"tau {tau:g}", (recall[j], precision[j]), textcoords="offset points", xytext=(6, 6), fontsize=8)
            ax.plot([recall[j]], [precision[j]], "o", color="#d62728", ms=4)
    base = precision[-1]  # the lowest threshold predicts every pixel: precision = foreground fraction
    ax.axhline(base, ls="--", color="grey", lw=1, label=f"foreground fraction {base:.3f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("pixel recall")
    ax.set_ylabel("pixel precision")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    model = summary.get("model", {}).get("name", "")
    fig.suptitle(f"PxAP {summary['pxap']:.2f} - {model}, {summary['n_pxap_images']} images, "
                 f"input {summary['protocol']['input_size']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_gallery(panels: list[dict], path: str | Path, title: str, columns: int = 3) -> None:
    """A grid of panels (``image`` uint8 [S,S,3], ``cam`` [S,S], ``gt_boxes``, ``pred_box``, ``title``)."""
    from matplotlib.patches import Patch, Rectangle

    from camkit.viz import heatmap_rgb

    cols = max(1, min(columns, len(panels)))
    rows = (len(panels) + cols - 1) // cols
    fig = _figure(figsize=(3.3 * cols, 3.9 * rows + 0.5))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, p in zip(axes.ravel(), panels, strict=False):  # the last row may have empty cells
        img = p["image"].astype(np.float32)
        heat = heatmap_rgb(p["cam"]).astype(np.float32)
        ax.imshow((0.5 * img + 0.5 * heat).astype(np.uint8))
        for b in p["gt_boxes"]:
            x0, y0, x1, y1 = b
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, ec=GT_COLOUR, lw=2))
        x0, y0, x1, y1 = p["pred_box"]
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, ec=PRED_COLOUR, lw=2, ls="--"))
        ax.set_title(p["title"], fontsize=8)
    fig.legend(handles=[Patch(ec=GT_COLOUR, fc="none", label="ground truth"),
                        Patch(ec=PRED_COLOUR, fc="none", ls="--", label="predicted (CVPR16, GT class)")],
               loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=100)
