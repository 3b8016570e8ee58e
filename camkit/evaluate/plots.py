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


def preload() -> None:
    """Import what drawing needs and load the text font (a process that draws later pays nothing then)."""
    import cv2  # noqa: F401 - imported for its import time
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.patches import Patch  # noqa: F401
    from PIL import Image  # noqa: F401

    import camkit.viz  # noqa: F401

    fig = _figure(figsize=(0.5, 0.5), dpi=10)
    fig.text(0.5, 0.5, "0", fontsize=8)
    FigureCanvasAgg(fig).draw()


def _figure(**kwargs):
    # A bare Figure (Agg canvas), no pyplot: never touches the caller's backend or open figures.
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def plot_curves(summary: dict, path: str | Path) -> None:
    """BoxAcc(tau) per IoU threshold for MaxBoxAcc (V1) and MaxBoxAccV2, best taus marked."""
    curves = summary["curves"]
    taus = np.asarray(curves["taus"])
    fig = _figure(figsize=(11, 4.2), dpi=110)
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
    _save_png(_rendered_rgb(fig), path)


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
    fig = _figure(figsize=(5.6, 5.0), dpi=110)
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
    _save_png(_rendered_rgb(fig), path)


#: Gallery layout at the figure's 100 dpi: a column is 330 px wide, a panel's picture 300 px square under its
#: two-line title; the figure's title above the rows and the legend below them.
_COLUMN_PX, _ROW_PX, _PANEL_PX, _TITLE_PX, _HEAD_PX, _FOOT_PX = 330, 380, 300, 40, 34, 40


def plot_gallery(panels: list[dict], path: str | Path, title: str, columns: int = 3) -> None:
    """A grid of panels (``image`` uint8 [S,S,3], ``cam`` [S,S], ``gt_boxes``, ``pred_box``, ``title``).

    The pictures (photo and heatmap blended half and half, boxes drawn on them) are composed into one
    image and matplotlib draws only the text around it: an Axes per panel costs ~25 ms to create.
    """
    from matplotlib.patches import Patch

    cols = max(1, min(columns, len(panels)))
    rows = (len(panels) + cols - 1) // cols
    width, height = _COLUMN_PX * cols, _HEAD_PX + _ROW_PX * rows + _FOOT_PX * (1 if cols > 1 else 2)
    fig = _figure(figsize=(width / 100, height / 100), dpi=100)
    places = []
    for k, p in enumerate(panels):
        r, c = divmod(k, cols)
        x = c * _COLUMN_PX + (_COLUMN_PX - _PANEL_PX) // 2
        y = _HEAD_PX + r * _ROW_PX + _TITLE_PX
        places.append((x, y))
        fig.text((x + _PANEL_PX / 2) / width, 1 - (y - 4) / height, p["title"], ha="center", va="bottom", fontsize=8)
    fig.legend(handles=[Patch(ec=GT_COLOUR, fc="none", label="ground truth"),
                        Patch(ec=PRED_COLOUR, fc="none", ls="--", label="predicted (CVPR16, GT class)")],
               loc="lower center", ncol=2 if cols > 1 else 1, fontsize=8, frameon=False)  # one column is too narrow
    fig.suptitle(title, fontsize=10, y=1 - 8 / height, va="top")
    rgb = _rendered_rgb(fig)
    # The pictures go straight into the rendered pixels (no text reaches them): matplotlib would only copy
    # them there itself, through its image resampling (~35 ms a gallery).
    for p, (x, y) in zip(panels, places, strict=True):
        rgb[y : y + _PANEL_PX, x : x + _PANEL_PX] = _panel_picture(p)
    _save_png(rgb, path)


def _rendered_rgb(fig) -> np.ndarray:
    """The figure drawn by Agg as a writable uint8 ``[H, W, 3]`` (its background is opaque: alpha carries nothing)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    agg = FigureCanvasAgg(fig)
    agg.draw()
    return np.ascontiguousarray(np.asarray(agg.buffer_rgba())[..., :3])


def _save_png(rgb: np.ndarray, path: str | Path) -> None:
    """An RGB PNG at zlib level 3: a quarter of ``savefig``'s RGBA level-6 encoding time for a photo gallery,
    the same file size."""
    from PIL import Image

    Image.fromarray(rgb).save(path, format="PNG", compress_level=3)


def _panel_picture(p: dict) -> np.ndarray:
    """uint8 ``[P, P, 3]``: the photo blended with the JET heatmap of ``p["cam"]``, upscaled, boxes on top
    (GT solid green, predicted dashed red; inclusive input pixels, so a box spans ``x0 - 0.5 .. x1 + 0.5``)."""
    import cv2

    from camkit.viz import heatmap_rgb

    size = p["image"].shape[0]
    blend = (0.5 * p["image"].astype(np.float32) + 0.5 * heatmap_rgb(p["cam"]).astype(np.float32)).astype(np.uint8)
    out = np.ascontiguousarray(cv2.resize(blend, (_PANEL_PX, _PANEL_PX), interpolation=cv2.INTER_LINEAR))
    scale = _PANEL_PX / size
    for b in p["gt_boxes"]:
        _rectangle(out, b, scale, _rgb(GT_COLOUR), dashed=False)
    _rectangle(out, p["pred_box"], scale, _rgb(PRED_COLOUR), dashed=True)
    return out


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _rectangle(img: np.ndarray, box, scale: float, colour: tuple[int, int, int], dashed: bool) -> None:
    """Draw inclusive-pixel ``box`` (input coordinates) scaled by ``scale``, 2 px wide, anti-aliased."""
    import cv2

    ax, ay = (box[0] - 0.5) * scale, (box[1] - 0.5) * scale  # outer edges of the box's pixels
    bx, by = (box[2] + 0.5) * scale, (box[3] + 0.5) * scale
    corners = [(ax, ay), (bx, ay), (bx, by), (ax, by), (ax, ay)]
    for (px, py), (qx, qy) in zip(corners[:-1], corners[1:], strict=False):
        length = max(abs(qx - px), abs(qy - py), 1e-9)
        # a dash every 13 px, ~8 px long once the 2-px line's round caps are drawn: matplotlib's "--" look
        spans = [(t / length, min(t + 6, length) / length) for t in np.arange(0, length, 13)] if dashed else [(0.0, 1.0)]
        for a, b in spans:
            # 4 fractional bits: sub-pixel end points
            p0 = (round((px + a * (qx - px)) * 16), round((py + a * (qy - py)) * 16))
            p1 = (round((px + b * (qx - px)) * 16), round((py + b * (qy - py)) * 16))
            cv2.line(img, p0, p1, colour, 2, cv2.LINE_AA, 4)
