"""Pillow's resize of RGB images, bit for bit, several times faster.

:func:`resize_rgb` returns exactly ``np.asarray(image.resize(size, Image.Resampling[interpolation.upper()]))``.
For "bilinear" and "bicubic" on RGB uint8 images it runs the compiled kernel ``camkit/_pilresample.c``
(built by setup.py when a C compiler is present): Pillow's own fixed-point arithmetic (22-bit weights,
integer sums, the uint8 image between the two passes), vectorised with AVX2 where the CPU has it.
Everything else (other filters, other modes, a missing kernel) calls Pillow.

Pillow 13 changed which pass runs first for some sizes (vertically first when the height shrinks by more
than twice as many pixels as the width), and the two orders round differently. The kernel knows both
rules; the first call checks on a few small images which one the installed Pillow follows, and leaves
the fast path off when neither matches.

A PIL image's pixels are read where Pillow keeps them, through its Arrow export (the Arrow C data
interface), without a copy; an image Pillow cannot export in one piece (larger than its 16 MiB memory
blocks) is copied out with ``tobytes`` first.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from functools import cache
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

from camkit.errors import ParameterError

_kernel: ModuleType | None  # the compiled kernel, None when it is not built
try:  # setup.py builds it when a C compiler is present
    import camkit._pilresample as _kernel
except ImportError:  # pragma: no cover - exercised by installs without a compiler
    _kernel = None

__all__ = ["fast_path_available", "kernel_simd", "resize_rgb", "resize_rgb_planar"]

# the kernel's filter codes and pass orders (see _pilresample.c)
_FILTER_CODES = {Image.Resampling.BILINEAR: 0, Image.Resampling.BICUBIC: 1}
_ORDER_HORIZONTAL_FIRST = 0  # Pillow <= 12
_ORDER_PILLOW13 = 1

# (in size, out size) pairs, each (width, height). Pillow 13 filters the first three vertically first
# (the height shrinks by 31, 11 and 21 pixels, more than twice the width's 2, 5 and 10), where the two
# orders give different pixels; the last two horizontally first (the height shrinks by 2 and 20 pixels,
# the width by 31 and 10), as Pillow 12 does: they catch a Pillow that goes vertically first more often.
_CALIBRATION = (((16, 40), (14, 9)), ((40, 16), (35, 5)), ((20, 30), (10, 9)), ((40, 16), (9, 14)), ((20, 30), (10, 10)))


def resize_rgb(image: Image.Image | np.ndarray, size: tuple[int, int], interpolation: str) -> np.ndarray:
    """``image`` resized to ``size = (width, height)`` with Pillow's filter ``interpolation``.

    Equal, bit for bit, to ``np.asarray(image.resize(size, Image.Resampling[interpolation.upper()]))``
    (for a numpy array, of ``Image.fromarray(image)``): uint8 ``[height, width, 3]`` for RGB input.
    "bilinear" and "bicubic" on RGB (a PIL image of mode "RGB" or a uint8 ``[h, w, 3]`` array) take the
    compiled kernel when it is available (:func:`fast_path_available`); any other filter or input goes
    to Pillow. The result is a new writable array.

    Raises:
        ParameterError: ``size`` is not two positive integers; ``interpolation`` names no Pillow filter;
            ``image`` is neither a PIL image nor a numpy array.
    """
    width, height, resample, plan = _route(image, size, interpolation)
    if plan is None:
        return _pillow_resize(image, (width, height), resample)
    return _kernel_resize(image, (width, height), *plan, scalar=False)


def resize_rgb_planar(image: Image.Image | np.ndarray, size: tuple[int, int], interpolation: str, table: np.ndarray,
                      out: np.ndarray) -> bool:
    """:func:`resize_rgb` with each channel then read through its table, straight into planes: one kernel call.

    ``table``: float32 ``[3, 256]`` (C-contiguous), ``table[c][v]`` the value for level ``v`` of channel ``c``;
    ``out``: float32 ``[3, height, width]`` for ``size = (width, height)``, C-contiguous (planes), or laid out
    channels-last (``out.transpose(1, 2, 0)`` C-contiguous, the pixels interleaved: a row of a channels-last
    batch tensor's ``.numpy()``). On return True,
    ``out[c] == table[c][resize_rgb(image, size, interpolation)[..., c]]`` exactly, computed with the GIL
    released. Returns False, leaving ``out`` alone, where :func:`resize_rgb` would not take the compiled
    kernel (another filter or mode, no kernel) or the arrays are not as above: the caller then resizes
    with :func:`resize_rgb` and looks up itself.

    Raises:
        ParameterError: as :func:`resize_rgb`.
    """
    width, height, _, plan = _route(image, size, interpolation)
    if plan is None:
        return False
    interleaved = not out.flags.c_contiguous
    dst = out.transpose(1, 2, 0) if interleaved else out
    if (table.dtype != np.float32 or table.shape != (3, 256) or not table.flags.c_contiguous or out.dtype != np.float32
            or out.shape != (3, height, width) or not dst.flags.c_contiguous or not out.flags.writeable):
        return False
    kernel = _kernel
    assert kernel is not None  # _pass_order() found it
    _on_pixels(image, lambda src, w, h: kernel.resize_planar(src, w, h, table, dst, width, height, *plan, interleaved))
    return True


def _route(image: Image.Image | np.ndarray, size: tuple[int, int],
           interpolation: str) -> tuple[int, int, Image.Resampling, tuple[int, int] | None]:
    """``(width, height, Pillow filter, plan)``: ``plan`` is the kernel's ``(filter code, pass order)``, or None
    where the kernel does not take the image (another filter or mode, no kernel) and Pillow resizes it.
    Raises the ParameterErrors :func:`resize_rgb` documents."""
    width, height = _checked_size(size)
    resample = _resampling(interpolation)
    if not isinstance(image, Image.Image | np.ndarray):
        raise ParameterError("image", type(image).__name__, "is not a PIL image or a numpy array")
    code, order = _FILTER_CODES.get(resample), _pass_order()
    plan = (code, order) if code is not None and order is not None and _is_rgb(image) else None
    return width, height, resample, plan


def fast_path_available() -> bool:
    """Whether :func:`resize_rgb` runs the compiled kernel (built, and agreeing with the installed Pillow)."""
    return _pass_order() is not None


def kernel_simd() -> str | None:
    """The vector path of the compiled kernel on this CPU: "avx2" or "scalar"; None when it is not built."""
    return None if _kernel is None else str(_kernel.simd())


def _checked_size(size: tuple[int, int]) -> tuple[int, int]:
    values = tuple(size) if isinstance(size, tuple | list | np.ndarray) else ()
    if len(values) != 2 or not all(isinstance(v, numbers.Integral) and v >= 1 for v in values):
        raise ParameterError("size", size, "must be two positive integers (width, height)")
    return int(values[0]), int(values[1])


def _resampling(interpolation: str) -> Image.Resampling:
    try:
        return Image.Resampling[interpolation.upper()]
    except (KeyError, AttributeError):
        names = ", ".join(name.lower() for name in Image.Resampling.__members__)
        raise ParameterError("interpolation", interpolation, f"is not a Pillow resampling filter; use one of {names}") from None


def _is_rgb(image: Image.Image | np.ndarray) -> bool:
    if isinstance(image, Image.Image):
        return image.mode == "RGB"
    return image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and image.shape[0] > 0 and image.shape[1] > 0


def _pillow_resize(image: Image.Image | np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
    return np.asarray(pil.resize(size, resample)).copy()


def _kernel_resize(image: Image.Image | np.ndarray, size: tuple[int, int], code: int, order: int, scalar: bool) -> np.ndarray:
    """The compiled kernel on an RGB image (``scalar``: its portable path even where AVX2 is present)."""
    kernel = _kernel
    assert kernel is not None
    width, height = size
    out = np.empty((height, width, 3), dtype=np.uint8)
    _on_pixels(image, lambda src, w, h: kernel.resize(src, w, h, out, width, height, code, order, scalar))
    return out


def _on_pixels(image: Image.Image | np.ndarray, call: Callable[[Any, int, int], None]) -> None:
    """``call(src, in_w, in_h)`` on the image's pixels: a PIL image's own RGBX memory through its Arrow export (no
    copy), else (Pillow < 11.2, an image kept in several blocks, an array) a C-contiguous uint8 ``[h, w, 3]`` array."""
    if isinstance(image, Image.Image):
        try:
            call(image.__arrow_c_array__(), image.width, image.height)
            return
        except (AttributeError, ValueError):
            image = np.asarray(image)
    src = np.ascontiguousarray(image)
    call(src, src.shape[1], src.shape[0])


@cache
def _pass_order() -> int | None:
    """The kernel's pass order that reproduces the installed Pillow on :data:`_CALIBRATION`, or None."""
    if _kernel is None:
        return None
    rng = np.random.default_rng(0)
    cases = [(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), out) for (w, h), out in _CALIBRATION]
    for order in (_ORDER_PILLOW13, _ORDER_HORIZONTAL_FIRST):
        if all(
            np.array_equal(_kernel_resize(src, out, code, order, scalar=False), _pillow_resize(src, out, resample))
            for src, out in cases
            for resample, code in _FILTER_CODES.items()
        ):
            return order
    return None
