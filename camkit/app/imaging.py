"""Images for the pages: PNG/JPEG bytes, JET heat layers with the window the network saw, data URIs.

Colours follow :mod:`camkit.viz`: OpenCV's JET colormap, 0 = blue, 1 = red, on the map after the
convention's normalisation (``relu_max`` for CVPR16, ``minmax`` for wsolevaluation).
"""

from __future__ import annotations

import base64

import cv2
import numpy as np
from PIL import Image

from camkit.normalize import Normalization, normalize_maps

__all__ = ["png_bytes", "jpeg_bytes", "data_uri", "heat_layer", "colourbar_png", "thumbnail"]


def png_bytes(image: np.ndarray) -> bytes:
    """RGB ``[H, W, 3]`` or RGBA ``[H, W, 4]`` uint8 -> PNG bytes (fast compression: pages want speed)."""
    arr = np.ascontiguousarray(image)
    code = cv2.COLOR_RGBA2BGRA if arr.ndim == 3 and arr.shape[2] == 4 else cv2.COLOR_RGB2BGR
    ok, buf = cv2.imencode(".png", cv2.cvtColor(arr, code), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 array
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def jpeg_bytes(image: np.ndarray, quality: int = 85) -> bytes:
    """RGB uint8 ``[H, W, 3]`` -> JPEG bytes."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def data_uri(data: bytes, mime: str) -> str:
    """``data:<mime>;base64,...`` for embedding in a self-contained HTML file."""
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def heat_layer(cam: np.ndarray, normalization: Normalization, window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """RGBA uint8 ``[H, W, 4]``: the JET heatmap of ``cam`` normalised over ``window`` (inclusive pixels).

    Inside the window alpha is 255 (the page sets the layer's opacity); outside it the layer is a
    translucent grey (alpha 160) so the part of the photo the network did not see looks dimmed.
    """
    cam = np.asarray(cam, dtype=np.float32)
    h, w = cam.shape
    x0, y0, x1, y1 = window if window is not None else (0, 0, w - 1, h - 1)
    out = np.zeros((h, w, 4), dtype=np.uint8)
    out[..., :3] = 40
    out[..., 3] = 160
    part = normalize_maps(cam[y0 : y1 + 1, x0 : x1 + 1], normalization)
    u8 = np.clip(np.rint(part * 255.0), 0, 255).astype(np.uint8)
    out[y0 : y1 + 1, x0 : x1 + 1, :3] = cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    out[y0 : y1 + 1, x0 : x1 + 1, 3] = 255
    return out


def colourbar_png(width: int = 256, height: int = 12) -> bytes:
    """A horizontal JET ramp (left = 0 = blue, right = 1 = red) as PNG bytes."""
    ramp = np.tile(np.linspace(0, 255, width).round().astype(np.uint8), (height, 1))
    return png_bytes(cv2.cvtColor(cv2.applyColorMap(ramp, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB))


def thumbnail(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Downscale RGB ``image`` so its longer side is at most ``max_side``; returns (image, scale factor)."""
    h, w = image.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s >= 1.0:
        return image, 1.0
    small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return small, s


def pil_to_array(img: Image.Image) -> np.ndarray:
    """RGB PIL image -> uint8 ``[H, W, 3]``."""
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def encode_for_page(image: np.ndarray) -> tuple[bytes, str]:
    """Photo bytes and MIME type for the page: JPEG (quality 92) when large, PNG otherwise."""
    if image.shape[0] * image.shape[1] > 640 * 480:
        return jpeg_bytes(image, 92), "image/jpeg"
    return png_bytes(image), "image/png"


