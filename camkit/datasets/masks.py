"""Ground-truth masks for PxAP, read as wsolevaluation's ``get_mask`` reads OpenImages30k masks.

:func:`load_gt_mask` returns one uint8 ``[size, size]`` mask on the (squashed) network input:
``1`` foreground, ``0`` background, ``255`` ignore. Following the reference (``evaluation.py``,
``load_mask_image`` and ``get_mask``):

- every file (each instance mask, and the ignore mask) is decoded as 8-bit grayscale
  (``cv2.IMREAD_GRAYSCALE``) and resized straight to ``size x size`` with
  ``cv2.resize(..., interpolation=cv2.INTER_NEAREST)`` - from the mask file's own resolution, which in
  OpenImages need not be the photo's;
- a pixel is "on" when its value is ``> 0.5``, i.e. any non-zero value;
- foreground is the OR of the instance masks; ignore is "ignore mask on AND NOT foreground", so a
  foreground pixel is never ignored.

One deliberate extension: the reference joins an empty ignore path onto the mask root and fails;
camkit's reader gives ``ignore_path=None`` and this means "no ignore region".

Files are read with ``np.fromfile`` + ``cv2.imdecode`` (same decoder, same flags as ``cv2.imread``) so that
a missing or undecodable file raises one :class:`camkit.errors.ImageError` line naming it, instead
of OpenCV's silent ``None`` and its warning on stderr. No torch here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from camkit.errors import ImageError

__all__ = ["MaskLoader", "load_gt_mask", "read_mask_file"]

FOREGROUND, BACKGROUND, IGNORE = 1, 0, 255


def read_mask_file(path: str | Path, size: int) -> np.ndarray:
    """One mask file -> bool ``[size, size]``: grayscale, ``INTER_NEAREST`` to ``size``, ``> 0.5``."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        reason = "it does not exist" if not path.exists() else f"{type(e).__name__}: {e.strerror or e}"
        raise ImageError(f"mask {path} cannot be read ({reason}); fix the mask path or the file.") from None
    gray = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if gray is None or gray.size == 0:
        raise ImageError(f"mask {path} is not a readable image (empty, truncated or not an image); replace the file.")
    # float32 as the reference's np.float32(cv2.imread(...)): INTER_NEAREST copies values either way.
    resized = cv2.resize(gray.astype(np.float32), (size, size), interpolation=cv2.INTER_NEAREST)
    return resized > 0.5


def load_gt_mask(mask_paths: Sequence[str | Path], ignore_path: str | Path | None, size: int) -> np.ndarray:
    """The PxAP mask of one image: uint8 ``[size, size]``, 1 foreground, 0 background, 255 ignore.

    ``mask_paths``: one file per object instance (at least one); ``ignore_path``: the image's ignore
    mask, or None for none. Raises :class:`ImageError` (one line) for a missing or unreadable file.
    """
    if not mask_paths:
        raise ImageError("no mask file given for this image; PxAP needs at least one foreground mask.")
    foreground = np.zeros((size, size), dtype=bool)
    for p in mask_paths:
        foreground |= read_mask_file(p, size)
    out = foreground.astype(np.uint8)
    if ignore_path is not None:
        ignore = read_mask_file(ignore_path, size) & ~foreground
        out[ignore] = IGNORE
    return out


class MaskLoader:
    """``loader(sample) -> load_gt_mask(sample.mask_paths, sample.ignore_path, size)`` (picklable for workers)."""

    def __init__(self, size: int) -> None:
        self.size = int(size)

    def __call__(self, sample) -> np.ndarray:
        return load_gt_mask(sample.mask_paths, sample.ignore_path, self.size)
