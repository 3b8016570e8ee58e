"""Overlays: heatmap over the photo, box, label and score; top-k classes side by side.

Pure OpenCV/numpy (fast to import). Colours: OpenCV's JET colormap on the CVPR16-normalised map
(``relu_max``: 0 = blue, max = red), blended with the photo. Images are RGB uint8 ``[H, W, 3]``.
"""

from __future__ import annotations

import cv2
import numpy as np

from .normalize import Normalization, normalize_maps

BOX_COLOUR = (0, 255, 0)


def heatmap_rgb(cam: np.ndarray, normalization: Normalization = "relu_max") -> np.ndarray:
    """A map ``[H, W]`` -> RGB uint8 JET heatmap ``[H, W, 3]`` after ``normalization``."""
    m = normalize_maps(np.asarray(cam, dtype=np.float32), normalization)
    u8 = np.clip(np.rint(m * 255.0), 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def draw_box(image: np.ndarray, box, colour=BOX_COLOUR, thickness: int | None = None) -> np.ndarray:
    """Draw an inclusive-pixel box ``x0, y0, x1, y1`` on a copy of ``image``."""
    out = np.ascontiguousarray(image).copy()
    t = thickness or max(1, round(min(image.shape[:2]) / 150))
    x0, y0, x1, y1 = (int(v) for v in box)
    cv2.rectangle(out, (x0, y0), (x1, y1), colour, t, lineType=cv2.LINE_AA)
    return out


def put_caption(image: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` on a dark band at the top of a copy of ``image``."""
    out = np.ascontiguousarray(image).copy()
    h, w = out.shape[:2]
    scale = max(0.4, min(w, h) / 500)
    thick = max(1, round(scale * 1.5))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    while tw > w - 6 and scale > 0.3:
        scale *= 0.85
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    band = th + base + 8
    out[:band] = (out[:band].astype(np.float32) * 0.35).astype(np.uint8)
    cv2.putText(out, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out


def overlay(
    image: np.ndarray,
    cam: np.ndarray,
    box=None,
    caption: str | None = None,
    alpha: float = 0.5,
    seen: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """Blend the heatmap of ``cam`` (same size as ``image``) over ``image``; draw ``box`` and ``caption``.

    ``seen``: inclusive pixel window the network saw; outside it the photo is shown dimmed, without heat.
    """
    img = np.asarray(image, dtype=np.uint8)
    heat = heatmap_rgb(cam)
    out = (img.astype(np.float32) * (1 - alpha) + heat.astype(np.float32) * alpha).astype(np.uint8)
    if seen is not None:
        x0, y0, x1, y1 = seen
        dim = (img.astype(np.float32) * 0.4).astype(np.uint8)
        mask = np.zeros(img.shape[:2], dtype=bool)
        mask[y0 : y1 + 1, x0 : x1 + 1] = True
        out = np.where(mask[..., None], out, dim)
    if box is not None:
        out = draw_box(out, box)
    if caption:
        out = put_caption(out, caption)
    return out


def side_by_side(panels: list[np.ndarray], gap: int = 6, max_height: int = 480) -> np.ndarray:
    """Panels of equal size next to each other (scaled to at most ``max_height``), white gaps."""
    h, w = panels[0].shape[:2]
    if h > max_height:
        s = max_height / h
        panels = [cv2.resize(p, (max(1, round(w * s)), max_height), interpolation=cv2.INTER_AREA) for p in panels]
        h = max_height
    sep = np.full((h, gap, 3), 255, dtype=np.uint8)
    row = []
    for i, p in enumerate(panels):
        if i:
            row.append(sep)
        row.append(p)
    return np.concatenate(row, axis=1)


def save_png(path, image: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG."""
    ok = cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not write {path}")
