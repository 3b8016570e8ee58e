# Type stub of the compiled kernel camkit/_pilresample.c (built by setup.py when a C compiler is present).
from typing import Any

def resize(src: Any, in_w: int, in_h: int, dst: Any, out_w: int, out_h: int, filter: int, order: int, force_scalar: bool = False, /) -> None:
    """Pillow's resize of an RGB image into ``dst`` (a writable uint8 buffer of ``out_h * out_w * 3`` bytes).
    ``src``: a C-contiguous buffer of ``in_h * in_w * 3`` bytes, or the ``(schema, array)`` capsules of a Pillow
    RGB image's ``__arrow_c_array__()``. ``filter``: 0 bilinear, 1 bicubic. ``order``: 0 horizontal pass first
    (Pillow <= 12), 1 Pillow 13's choice of the first pass. ``force_scalar``: the portable path even with AVX2."""

def resize_planar(src: Any, in_w: int, in_h: int, table: Any, dst: Any, out_w: int, out_h: int, filter: int, order: int,
                  interleaved: bool = False, /) -> None:
    """:func:`resize` of the same ``src`` and sizes, then channel ``c`` of each pixel through ``table[c]`` (a float32
    ``[3, 256]`` buffer) into plane ``c`` of ``dst`` (a writable float32 ``[3, out_h, out_w]`` buffer), or with
    ``interleaved`` into ``dst`` as float32 ``[out_h, out_w, 3]``."""

def simd() -> str:
    """The vector path :func:`resize` takes on this CPU: ``"avx2"`` or ``"scalar"``."""
