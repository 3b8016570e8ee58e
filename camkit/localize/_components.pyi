# Type stub of the compiled kernel camkit/localize/_components.c (built by setup.py when a C compiler is present).
import numpy as np

def sweep(
    u: np.ndarray, h: int, w: int, levels: np.ndarray, multi_contour: bool, exact_pass_levels: int, strategy: int = 0, /
) -> tuple[bytes, bytes, bytes]:
    """wsolevaluation boxes of the uint8 map ``u [h, w]`` at every int32 level of ``levels``:
    ``(boxes, level_start, undecided)``, each the bytes of an int32 array. ``strategy``: 0 auto, 1 per-level
    run labelling, 2 passes over the value-sorted pixels (same boxes)."""

def cvpr16(m: np.ndarray, h: int, w: int, is_double: bool, tau: float, /) -> tuple[int, int, int, int, int]:
    """CVPR16 box of the float32 (``is_double`` False) or float64 map ``m [h, w]`` at ``tau``:
    ``(status, x0, y0, x1, y1)``; status 1: the map holds NaN, 2: its maximum is <= 0, 3: its maximum
    is +inf. Raises ValueError when the buffer does not hold ``h * w`` values or ``tau`` is not in [0, 1]."""

def sweep_pair(
    u: np.ndarray, h: int, w: int, levels: np.ndarray, exact_pass_levels: int, strategy: int = 0, /
) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """V1 and V2 boxes of ``u [h, w]`` at every level from one call: ``(boxes_v1, level_start_v1,
    undecided_v1, boxes_v2, level_start_v2)``, each the bytes of an int32 array; ``strategy`` as for :func:`sweep`."""

def sweep_strategy(u: np.ndarray, h: int, w: int, levels: np.ndarray, /) -> int:
    """The strategy (1 per level, 2 sorted pixels) :func:`sweep` takes for strategy 0 on these arguments."""
