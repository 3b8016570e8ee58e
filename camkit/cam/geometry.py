"""Put feature-resolution maps back onto the original photo, undoing resize and crop.

A feature cell's continuous coordinate ``c_f`` relates to the network input by
``c_in = c_f * input_w / w`` (the align_corners=False convention of ``F.interpolate``) and to the
original by ``c_o = (c_in + crop_x) * scale_x`` (see :class:`camkit.preprocess.Geometry`). One
``cv2.warpAffine`` applies the composed map, so the original-size map is interpolated once from the
feature map (bilinear or bicubic, as ``F.interpolate`` would).

Outside the crop window the network saw nothing: those pixels get the map's minimum, which no
threshold on a normalised map selects (and which leaves min-max normalisation unchanged).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..preprocess import Geometry

_TILE = 16384
_CV_INTERP = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}


def window_pixels(geometry: Geometry) -> tuple[int, int, int, int]:
    """Inclusive pixel bounds ``(x0, y0, x1, y1)`` of the original pixels whose centres the input covers."""
    x0c, y0c, x1c, y1c = geometry.window
    x0 = max(0, int(np.ceil(x0c - 0.5)))
    y0 = max(0, int(np.ceil(y0c - 0.5)))
    x1 = min(geometry.width - 1, int(np.ceil(x1c - 0.5)) - 1)
    y1 = min(geometry.height - 1, int(np.ceil(y1c - 0.5)) - 1)
    return x0, y0, max(x0, x1), max(y0, y1)


def to_original(maps: np.ndarray, geometry: Geometry, mode: str = "bicubic") -> np.ndarray:
    """Maps ``[k, h, w]`` (feature or input resolution) -> ``[k, height, width]`` float32 on the original."""
    maps = np.asarray(maps, dtype=np.float32)
    k, h, w = maps.shape
    ax = w / (geometry.input_w * geometry.scale_x)
    ay = h / (geometry.input_h * geometry.scale_y)
    bx = (0.5 / geometry.scale_x - geometry.crop_x) * w / geometry.input_w - 0.5
    by = (0.5 / geometry.scale_y - geometry.crop_y) * h / geometry.input_h - 0.5
    x0, y0, x1, y1 = window_pixels(geometry)
    out = np.empty((k, geometry.height, geometry.width), dtype=np.float32)
    for i in range(k):
        out[i] = float(maps[i].min())
        # OpenCV's remap handles at most 32767 pixels a side: warp the window in tiles.
        for ty in range(y0, y1 + 1, _TILE):
            for tx in range(x0, x1 + 1, _TILE):
                tw, th = min(_TILE, x1 + 1 - tx), min(_TILE, y1 + 1 - ty)
                m = np.array([[ax, 0.0, bx + ax * tx], [0.0, ay, by + ay * ty]], dtype=np.float64)
                out[i, ty : ty + th, tx : tx + tw] = cv2.warpAffine(
                    maps[i], m, (tw, th), flags=_CV_INTERP[mode] | cv2.WARP_INVERSE_MAP,
                    borderMode=cv2.BORDER_REPLICATE,
                )
    return out
