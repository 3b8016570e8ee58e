"""All thresholds at once: wsolevaluation's boxes for a whole tau grid from one component tree.

:func:`sweep_boxes` returns exactly what :func:`camkit.localize.wsol.wsol_boxes_per_threshold`
returns (one ``findContours`` call per tau), box for box, for V1 and V2, but in one pass:

1. The map is scaled to uint8 ``u`` as the reference does; the taus map to integer levels
   ``k = int(tau * u.max())``, and taus sharing a level share the result (<= 256 distinct levels).
2. The reference's contours at level ``k`` are, per OpenCV's Suzuki-Abe border following:
   one outer contour per 8-connected component of ``{u > k}`` and one hole contour per
   4-connected component of ``{u <= k}`` that does not touch the image border (OpenCV pads the
   image with background, so foreground touching the border is traced normally).
   Their boxes follow from pixel bounding boxes: an outer contour runs through the component's
   extreme pixels, box ``(x0, y0, x1 + 1, y1 + 1)``; a hole contour runs through the foreground
   pixels 4-adjacent to the hole, box ``(hx0 - 1, hy0 - 1, hx1 + 2, hy1 + 2)``; x1/y1 clipped to
   ``W - 1`` / ``H - 1`` as the reference clips ``x + w``.
3. Components of all upper level sets come from one forest: every pixel climbs to its highest
   neighbour (key = uint8 level, then the float map, then the pixel index, so paths never descend
   in ``u``) and the tops are basins; two basins are connected in ``{u > k}`` iff a path of basin
   adjacencies all weighing ``> k`` joins them (weight = the best ``min(u_p, u_q)`` over adjacent
   pixel pairs across the two basins). Kruskal over the small basin graph gives the dendrogram;
   per-basin, per-level boxes come from scatter-min/max plus suffix reductions over levels.
   Holes use the same machinery on ``255 - u`` with 4-connectivity.
4. Which levels have holes at all comes from the Euler number (Gray's 2x2 bit-quad counts, one
   histogram pass over all levels): holes = components - Euler number. V2 takes hole boxes from
   the hole forest when many levels have holes, else from the reference call at those levels.
5. V1 needs the contour of largest ``cv2.contourArea``. For a component without holes that area
   is exact from 2x2 cells: ``N4 + N3 / 2`` (cells with 4 / 3 corners in the component), summed
   up the tree. At a level without holes the unique largest such area wins. At a level with
   holes, every other component's contours (outer and hole) lie inside the box of its pixel
   centres, area <= ``(x1 - x0)(y1 - y0)``, and the best component's own hole contours are
   smaller than its outer one when its ``N4 + N3/2 > 0``; when these bounds settle the winner it
   is taken from the tree. Otherwise (ties, e.g. two equal blobs or a thin ring whose hole
   contour has the outer contour's area, or bounds too loose) that level falls back to the
   reference ``findContours`` call, so ties resolve in OpenCV's contour order as the reference.

Two implementations compute this. The compiled kernel ``camkit/localize/_components.c`` (built by
setup.py when a C compiler is present) labels 8-connected components of ``{u > k}`` (outer boxes)
and bounded 4-connected components of ``{u <= k}`` (hole boxes) for V2. For V1 it bounds each
component's outer contourArea between its own cell area (exact when its Euler number says it has no
hole) and the area of its box of pixel centres, which settles most levels; a level left open is
settled on the set with its bounded holes filled (a component's outer contour encloses its holes, so
its area is the cell area of the filled component, and no hole contour or anything inside one has
more), all but exact ties, which go to the reference call as below. It has two strategies
(:data:`STRATEGIES`, same boxes): ``"per_level"`` labels each wanted level afresh from the runs of
row bit masks (holes only at levels whose Euler number has any; cost ~ levels x runs, cheap on
smooth maps such as CAMs), ``"sorted"`` runs union-find passes over the pixels sorted by value (cost
~ pixels, cheap on noise, where each level has thousands of runs); ``"auto"`` picks one from an
estimate of the runs. Without the kernel, the pure-numpy path of steps 3-5 runs; all are tested
against the reference.

Output rows are sorted lexicographically per tau (the reference's row order is OpenCV's contour
order; :mod:`camkit.localize.wsol` sorts the same way). Speed (``bench/bench_sweep.py``, figures in the
README): the reference loop's cost grows with the number of thresholds while the sweep's grows far
more slowly; with the kernel, V1 and V2 of a 224x224 CAM at 100 thresholds (:func:`sweep_boxes_pair`)
cost about half a millisecond, at 1000 thresholds (255 levels) about twice that. The numpy
path is several times slower, and on maps with thousands of local maxima (pure noise) slower still,
since its basin graph and Python-level Kruskal loop grow with them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType

import cv2
import numpy as np

from camkit.errors import ParameterError
from camkit.localize.wsol import _contour_boxes, threshold_levels, unit_map_to_uint8

__all__ = ["BACKENDS", "STRATEGIES", "SweepResult", "resolve_backend", "sweep_boxes", "sweep_boxes_flat", "sweep_boxes_pair"]

#: ``backend`` values: ``"native"`` the compiled kernel, ``"numpy"`` the pure-numpy path, ``"auto"`` the
#: kernel when it is built (and the map is under 32768 pixels a side), else numpy.
BACKENDS = ("auto", "native", "numpy")

_BIG = np.int64(1 << 40)
# Half of the neighbour pairs: each undirected adjacency once.
_PAIRS = {8: ((0, 1), (1, 0), (1, 1), (1, -1)), 4: ((0, 1), (1, 0))}


@dataclass(frozen=True)
class SweepResult:
    """Flat sweep output.

    ``boxes`` int64 ``[n, 4]`` (x0, y0, x1, y1; rows sorted within each level), ``level_start``
    int64 ``[L + 1]`` (boxes of distinct level ``j`` are ``boxes[level_start[j]:level_start[j+1]]``),
    ``tau_level`` int64 ``[T]`` (index of each tau's distinct level), ``levels`` int64 ``[L]``.
    """

    boxes: np.ndarray
    level_start: np.ndarray
    tau_level: np.ndarray
    levels: np.ndarray

    def per_tau(self) -> list[np.ndarray]:
        b = self.boxes
        bounds = self.level_start.tolist()
        per_level = [b[i:j] for i, j in itertools.pairwise(bounds)]
        return [per_level[j] for j in self.tau_level.tolist()]


@dataclass
class _Forest:
    """Components of ``{v > K_j}`` for sorted levels ``K``: node tables over level columns."""

    box: np.ndarray  # [4, nodes, L] int64: x0, y0, -x1, -y1 (all reduced by min); _BIG if empty
    net2: np.ndarray | None  # [nodes, L] doubled N4 + N3/2, or None
    lo: np.ndarray  # [nodes] the node is a maximal group for lo <= k < hi
    hi: np.ndarray


_GRIDS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cached read-only intp arrays for an ``h x w`` map in raster order: flat index, x, y."""
    g = _GRIDS.get((h, w))
    if g is None:
        idx = np.arange(h * w, dtype=np.intp)
        xs = idx % w
        ys = idx // w
        for a in (idx, xs, ys):
            a.flags.writeable = False
        if len(_GRIDS) > 8:
            _GRIDS.clear()
        g = _GRIDS[(h, w)] = (idx, xs, ys)
    return g


_KERNELS = {8: np.ones((3, 3), np.uint8), 4: np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)}


def _basins(order_key: np.ndarray, conn: int) -> tuple[np.ndarray, int]:
    """Steepest-ascent basins: flat intp label ``[H * W]`` (0..m-1) and the number of basins m."""
    h, w = order_key.shape
    n = h * w
    idx, _, _ = _grid(h, w)
    idx_bits = max(1, (n - 1).bit_length())
    # Unique exact float64 keys (cv2.dilate finds the neighbourhood maximum, the low bits say where).
    key = order_key * float(1 << idx_bits)
    key += idx.reshape(h, w)
    best = cv2.dilate(key, _KERNELS[conn]).ravel()
    # the winning key is exact in float64, so its low idx_bits are the winner's flat index
    root = best.astype(np.intp)
    root &= (1 << idx_bits) - 1
    is_top = root == idx
    # Climbing paths rarely exceed h + w steps; check for convergence only after that many jumps.
    for _ in range(max(0, (h + w).bit_length() - 1)):
        root = root.take(root)
    while True:
        nxt = root.take(root)
        if np.array_equal(nxt, root):
            break
        root = nxt
    basin_id = np.cumsum(is_top, dtype=np.intp)
    basin_id -= 1
    return basin_id.take(root), int(basin_id[-1]) + 1


def _forest(v: np.ndarray, order_key: np.ndarray, conn: int, levels: np.ndarray, want_area: bool) -> _Forest:
    """Component forest of ``{v > k}`` (``conn``-connected) at each sorted level.

    ``order_key`` is a float64 ``[H, W]`` array of exact integers whose order refines ``v``'s
    (``order_key[p] < order_key[q]`` implies ``v[p] <= v[q]``), below ``2**53 / (H * W)``.
    """
    h, w = v.shape
    n = h * w
    idx, xs, ys = _grid(h, w)
    lab, m = _basins(order_key, conn)
    vflat = v.ravel()

    # Basin graph: for each pair of adjacent basins, the highest level at which they touch.
    # Pairs are taken on the flat raster (p, p + d); pairs that wrap around a row are dropped.
    combs = []
    for dy, dx in _PAIRS[conn]:
        d = dy * w + dx
        if d >= n or (dx and w == 1):
            continue
        p = np.flatnonzero(lab[: n - d] != lab[d:])
        if dx == 1:
            p = p[xs.take(p) != w - 1]
        elif dx == -1:
            p = p[xs.take(p) != 0]
        if len(p):
            q = p + d
            la = lab.take(p)
            lb = lab.take(q)
            wt = np.minimum(vflat.take(p), vflat.take(q)).astype(np.intp)
            combs.append((np.minimum(la, lb) * m + np.maximum(la, lb)) * 256 + wt)
    ea: list[int] = []
    eb: list[int] = []
    ew: list[int] = []
    if combs:
        # keep the highest weight per basin pair: sort (pair, weight) codes, last of each pair
        comb = np.sort(np.concatenate(combs))
        code = comb >> 8
        keep = np.ones(len(comb), dtype=bool)
        keep[:-1] = code[1:] != code[:-1]
        comb = comb[keep]
        order = np.argsort(-(comb & 255), kind="stable")
        comb = comb[order]
        ea = ((comb >> 8) // m).tolist()
        eb = ((comb >> 8) % m).tolist()
        ew = (comb & 255).tolist()

    # Kruskal (highest level first); a new node per merge, union-find over node ids.
    uf = list(range(m))
    children: list[tuple[int, int]] = []
    merge_level: list[int] = []
    for a, b, wt in zip(ea, eb, ew, strict=True):
        ra = a
        while uf[ra] != ra:
            ra = uf[ra]
        rb = b
        while uf[rb] != rb:
            rb = uf[rb]
        while uf[a] != ra:
            uf[a], a = ra, uf[a]
        while uf[b] != rb:
            uf[b], b = rb, uf[b]
        if ra != rb:
            node = len(uf)
            uf.append(node)
            uf[ra] = node
            uf[rb] = node
            children.append((ra, rb))
            merge_level.append(wt)

    n_nodes = m + len(children)
    lo = np.full(n_nodes, -2, dtype=np.int64)
    hi = np.full(n_nodes, 1 << 20, dtype=np.int64)
    if children:
        ch = np.asarray(children, dtype=np.int64)
        ml = np.asarray(merge_level, dtype=np.int64)
        hi[m:] = ml
        lo[ch[:, 0]] = ml
        lo[ch[:, 1]] = ml

    # Per basin and level column: bounding box of its pixels above the level. Column x holds a
    # pixel of basin i above k iff colmax[i, x] > k, so x0 = #{x : prefix-max(colmax)[i, x] <= k}
    # and x1 = W - 1 - #{x : suffix-max(colmax)[i, x] <= k}; rows likewise.
    n_levels = len(levels)
    at = np.clip(levels, -1, 255) + 1
    box = np.empty((4, n_nodes, n_levels), dtype=np.int64)
    base = np.arange(m, dtype=np.intp)[:, None] * 258 + 1
    # values + 1 so that 0 marks "no pixel of the basin in this column" in a uint16 table
    v1 = vflat.astype(np.uint16)
    v1 += 1
    for axis, coords, size in ((0, xs, w), (1, ys, h)):
        prof = np.zeros(m * size, dtype=np.uint16)
        grp = lab * size
        grp += coords
        np.maximum.at(prof, grp, v1)
        prof = prof.reshape(m, size).astype(np.intp)
        prof -= 1
        lead = np.maximum.accumulate(prof, axis=1)
        trail = np.maximum.accumulate(prof[:, ::-1], axis=1)
        lead += base
        trail += base
        n_lead = np.bincount(lead.ravel(), minlength=m * 258).reshape(m, 258).cumsum(axis=1)[:, at]
        n_trail = np.bincount(trail.ravel(), minlength=m * 258).reshape(m, 258).cumsum(axis=1)[:, at]
        empty = n_lead == size
        box[axis, :m] = np.where(empty, _BIG, n_lead)
        box[axis + 2, :m] = np.where(empty, _BIG, n_trail - (size - 1))
    net2 = None
    if want_area:
        # 2x2 cells: corners sorted a <= b <= ...; a cell adds 2 to the doubled N4 + N3/2 for k < a
        # and 1 for a <= k < b, to the component of any corner >= b (c00 unless c00 is the minimum).
        lab2 = lab.reshape(h, w)
        c00, c01, c10, c11 = v[:-1, :-1], v[:-1, 1:], v[1:, :-1], v[1:, 1:]
        l1, h1 = np.minimum(c00, c01), np.maximum(c00, c01)
        l2, h2 = np.minimum(c10, c11), np.maximum(c10, c11)
        first = np.minimum(l1, l2)
        second = np.minimum(np.maximum(l1, l2), np.minimum(h1, h2))
        cell_lab = np.where(c00 >= second, lab2[:-1, :-1], lab2[1:, 1:]).ravel()
        cell_lab *= 256
        counts = np.bincount(cell_lab + first.ravel(), minlength=m * 256)
        counts += np.bincount(cell_lab + second.ravel(), minlength=m * 256)
        t = counts.reshape(m, 256)[:, ::-1].cumsum(axis=1)[:, ::-1]
        net2 = np.empty((n_nodes, n_levels), dtype=np.int64)
        net2[:m] = np.concatenate([t, np.zeros((m, 1), dtype=np.int64)], axis=1)[:, at]

    for j, (a, b) in enumerate(children):
        node = m + j
        np.minimum(box[:, a], box[:, b], out=box[:, node])
        if net2 is not None:
            np.add(net2[a], net2[b], out=net2[node])
    return _Forest(box=box, net2=net2, lo=lo, hi=hi)


def _alive(forest: _Forest, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(node, column) pairs where the node is a non-empty component at that level."""
    c_lo = np.searchsorted(levels, forest.lo, side="left")
    c_hi = np.searchsorted(levels, forest.hi, side="left")
    count = np.maximum(c_hi - c_lo, 0)
    total = int(count.sum())
    node = np.repeat(np.arange(len(count)), count)
    start = np.cumsum(count) - count
    col = c_lo[node] + (np.arange(total) - start[node])
    keep = forest.box[0, node, col] < _BIG
    return node[keep], col[keep]


def _euler_holes(u: np.ndarray, levels: np.ndarray, n_comp: np.ndarray) -> np.ndarray:
    """Number of hole contours at each level: components minus the 8-connected Euler number.

    Gray's bit-quad formula over 2x2 cells of the zero-padded map: E8 = (Q1 - Q3 - 2 QD) / 4, where
    a cell with sorted corners s0 <= s1 <= s2 <= s3 has 3 foreground corners for s0 <= k < s1, two
    for s1 <= k < s2 (diagonal when the two highest corners are), one for s2 <= k < s3.
    """
    h, w = u.shape
    p = np.full((h + 2, w + 2), -1, dtype=np.int16)
    p[1:-1, 1:-1] = u
    c00, c01, c10, c11 = p[:-1, :-1], p[:-1, 1:], p[1:, :-1], p[1:, 1:]
    l1, h1 = np.minimum(c00, c01), np.maximum(c00, c01)
    l2, h2 = np.minimum(c10, c11), np.maximum(c10, c11)
    s0, s3 = np.minimum(l1, l2), np.maximum(h1, h2)
    mid_a, mid_b = np.maximum(l1, l2), np.minimum(h1, h2)
    s1, s2 = np.minimum(mid_a, mid_b), np.maximum(mid_a, mid_b)
    diag = (s1 < s2) & ((c00 > s1) == (c11 > s1))

    def count_in(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        # number of cells with lo <= k < hi, for k = -1..255 at index k + 1
        d = np.bincount(lo.ravel() + 1, minlength=258)[:258] - np.bincount(hi.ravel() + 1, minlength=258)[:258]
        return np.cumsum(d)

    q1 = count_in(s2, s3)
    q3 = count_in(s0, s1)
    qd = count_in(s1[diag], s2[diag])
    euler4 = q1 - q3 - 2 * qd
    at = np.clip(levels, -1, 255) + 1
    return n_comp - euler4[at] // 4


def _top_two(col: np.ndarray, value: np.ndarray, n_levels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per level column: index of the largest value (first by position on ties is irrelevant: ties
    are detected through the second value), its column, and the second largest value (-inf if none)."""
    order = np.lexsort((-value, col))
    s_col = col[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = s_col[1:] != s_col[:-1]
    second = np.full(n_levels, -np.inf)
    runner_up = np.flatnonzero(~first)
    runner_up = runner_up[first[runner_up - 1]]
    second[s_col[runner_up]] = value[order[runner_up]]
    return order[first], s_col[first], second


def _max_excluding(col: np.ndarray, value: np.ndarray, exclude: np.ndarray, n_levels: int) -> np.ndarray:
    """Per level column, the largest value over entries other than ``exclude`` (-inf if none)."""
    keep = np.ones(len(col), dtype=bool)
    keep[exclude] = False
    out = np.full(n_levels, -np.inf)
    np.maximum.at(out, col[keep], value[keep].astype(np.float64))
    return out


# Above this many levels with holes, the hole forest is cheaper than one findContours per level.
_HOLE_LEVELS_PER_CALL = 64


def _level_boxes(u: np.ndarray, cam: np.ndarray, levels: np.ndarray, multi_contour: bool, hole_levels_per_call: int):
    """Boxes for sorted distinct levels: (boxes [n,4], column of each box [n])."""
    h, w = u.shape
    n_levels = len(levels)
    # Order keys refining u: floor(cam * 255 * 2**s) >> s == u exactly (the same product the
    # reference truncates), and ties inside a level follow the float map.
    frac_bits = 53 - 8 - max(1, (h * w - 1).bit_length())
    if frac_bits < 0:
        raise ValueError(f"map of {h}x{w} pixels is too large for the sweep; use wsol_boxes_per_threshold")
    q = np.floor(np.asarray(cam * 255, dtype=np.float64) * float(1 << frac_bits))
    outer = _forest(u, q, 8, levels, want_area=not multi_contour)
    o_node, o_col = _alive(outer, levels)
    ox0, oy0 = outer.box[0, o_node, o_col], outer.box[1, o_node, o_col]
    ox1, oy1 = -outer.box[2, o_node, o_col], -outer.box[3, o_node, o_col]
    n_comp = np.bincount(o_col, minlength=n_levels)
    n_holes = _euler_holes(u, levels, n_comp)
    hole_cols = np.flatnonzero(n_holes > 0)

    if not multi_contour:
        # V1. Without holes at a level, a component's outer contourArea is exactly net2 / 2, so the
        # unique largest net2 wins. With holes, any other component's contours (outer or hole) lie
        # inside its box of pixel centres, area <= (x1 - x0)(y1 - y0), and the best component's own
        # hole contours are smaller than its outer one when its net2 > 0. Otherwise (ties, or a
        # level these bounds cannot settle) the level is taken from the reference call.
        assert outer.net2 is not None  # the forest was built with want_area for V1
        net2 = outer.net2[o_node, o_col]
        bound2 = 2 * (ox1 - ox0) * (oy1 - oy0)
        best_at, best_col, second_net = _top_two(o_col, net2, n_levels)
        others = _max_excluding(o_col, bound2, best_at, n_levels)
        best_net = net2[best_at]
        holes = n_holes[best_col] > 0
        decisive = np.where(
            holes,
            (best_net > 0) & (best_net > others[best_col]),
            best_net > second_net[best_col],
        )
        sel = best_at[decisive]
        boxes = np.stack(
            [ox0[sel], oy0[sel], np.minimum(ox1[sel] + 1, w - 1), np.minimum(oy1[sel] + 1, h - 1)], axis=1
        )
        col = best_col[decisive]
        fallback = best_col[~decisive]
    elif len(hole_cols) > hole_levels_per_call:
        # V2 with holes at many levels. Holes: bounded 4-connected components of {u <= k},
        # i.e. of {255 - u > 254 - k}; their contour runs through the foreground around them.
        inv_levels = (254 - levels)[::-1]
        inner = _forest(255 - u, float((256 << frac_bits) - 1) - q, 4, inv_levels, want_area=False)
        i_node, i_col = _alive(inner, inv_levels)
        hx0, hy0 = inner.box[0, i_node, i_col], inner.box[1, i_node, i_col]
        hx1, hy1 = -inner.box[2, i_node, i_col], -inner.box[3, i_node, i_col]
        bounded = (hx0 > 0) & (hy0 > 0) & (hx1 < w - 1) & (hy1 < h - 1)
        hx0, hy0, hx1, hy1 = hx0[bounded], hy0[bounded], hx1[bounded], hy1[bounded]
        h_col = (n_levels - 1) - i_col[bounded]
        boxes = np.concatenate(
            [
                np.stack([ox0, oy0, np.minimum(ox1 + 1, w - 1), np.minimum(oy1 + 1, h - 1)], axis=1),
                np.stack([hx0 - 1, hy0 - 1, np.minimum(hx1 + 2, w - 1), np.minimum(hy1 + 2, h - 1)], axis=1),
            ]
        )
        col = np.concatenate([o_col, h_col])
        fallback = np.zeros(0, dtype=np.int64)
    else:
        # V2 with holes at few levels: those levels from the reference call, the rest from the tree.
        plain = n_holes[o_col] == 0
        boxes = np.stack(
            [ox0[plain], oy0[plain], np.minimum(ox1[plain] + 1, w - 1), np.minimum(oy1[plain] + 1, h - 1)], axis=1
        )
        col = o_col[plain]
        fallback = hole_cols
    if len(fallback):
        extra = [_contour_boxes(u, int(levels[j]), multi_contour) for j in fallback.tolist()]
        boxes = np.concatenate([boxes, *extra])
        col = np.concatenate([col, np.repeat(fallback, [len(e) for e in extra])])
    empty = np.flatnonzero(n_comp == 0)
    if len(empty):
        boxes = np.concatenate([boxes, np.zeros((len(empty), 4), dtype=np.int64)])
        col = np.concatenate([col, empty])
    return boxes, col


_components: ModuleType | None  # the compiled kernel, None when it is not built
try:  # setup.py builds it when a C compiler is present
    import camkit.localize._components as _components
except ImportError:  # pragma: no cover - exercised by installs without a compiler
    _components = None


# V1 levels the kernel's bounds leave open cost one findContours call each (~0.1 ms here); above
# this many, the kernel runs its exact pass over the basin-filled map instead (~0.9 ms).
_EXACT_PASS_LEVELS = 8

#: ``strategy`` values of the kernel: ``"auto"`` picks by an estimate of the work, ``"per_level"`` labels
#: each level's row runs afresh (cheap on smooth maps), ``"sorted"`` runs union-find passes over the
#: value-sorted pixels (cheap on noise). Same boxes either way.
STRATEGIES = ("auto", "per_level", "sorted")


def _strategy_code(strategy: str) -> int:
    if strategy not in STRATEGIES:
        raise ParameterError("strategy", strategy, f"is not a sweep kernel strategy; use one of {', '.join(STRATEGIES)}")
    return STRATEGIES.index(strategy)


def _native_sweep(u: np.ndarray, levels: np.ndarray, multi_contour: bool, exact_pass_levels: int,
                  strategy: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Boxes and per-level offsets from the compiled kernel (see ``_components.c``): V2 from the
    outer and hole passes, V1 from the pass over the basin-filled map; V1 ties (OpenCV's contour
    order decides them) from the reference call at that level."""
    assert _components is not None, "the native backend is chosen only when the kernel is built"
    h, w = u.shape
    raw_boxes, raw_start, raw_open = _components.sweep(
        np.ascontiguousarray(u), h, w, np.ascontiguousarray(levels, dtype=np.int32), multi_contour,
        exact_pass_levels, _strategy_code(strategy),
    )
    return _settle_v1(u, levels, raw_boxes, raw_start, raw_open)


def _settle_v1(u: np.ndarray, levels: np.ndarray, raw_boxes: bytes, raw_start: bytes, raw_open: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's int32 bytes as int64 boxes and offsets, with the V1 ties it left open (OpenCV's contour
    order decides them; empty for V2) taken from the reference call at their level."""
    boxes = np.frombuffer(raw_boxes, dtype=np.int32).reshape(-1, 4).astype(np.int64)
    start = np.frombuffer(raw_start, dtype=np.int32).astype(np.int64)
    for j in np.frombuffer(raw_open, dtype=np.int32).tolist():
        # V1 has exactly one row per level
        boxes[start[j]] = _contour_boxes(u, int(levels[j]), False)[0]
    return boxes, start


def _row_order(boxes: np.ndarray, col: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Permutation sorting rows by level column, then lexicographically by box."""
    if np.all(col[1:] > col[:-1]):  # one box per level, already in level order (V1 often)
        return np.arange(len(col))
    # Coordinates lie in [0, max(H, W)) and columns in [0, 257): one int64 key when they fit.
    bits = max(1, max(shape).bit_length())
    if 9 + 4 * bits <= 62:
        key = col.astype(np.int64)
        for c in range(4):
            key <<= bits
            key |= boxes[:, c]
        return np.argsort(key, kind="stable")
    return np.lexsort((boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0], col))


def resolve_backend(backend: str = "auto", shape: tuple[int, ...] | None = None) -> str:
    """The implementation ``backend`` (one of :data:`BACKENDS`) stands for: ``"native"`` or ``"numpy"``.

    ``shape`` (the map's): ``"auto"`` picks numpy for maps the kernel does not take (a side >= 32768).
    Raises :class:`~camkit.errors.ParameterError` for an unknown name, or ``"native"`` when the
    kernel is not built (camkit installed without a C compiler).
    """
    if backend not in BACKENDS:
        raise ParameterError("backend", backend, f"is not a sweep backend; use one of {', '.join(BACKENDS)}")
    if backend == "native" and _components is None:
        raise ParameterError("backend", backend, "is not available: the compiled sweep kernel is not built; use 'numpy' or 'auto'")
    if backend == "auto":
        fits = shape is None or max(shape) < 1 << 15
        return "native" if _components is not None and fits else "numpy"
    return backend


def sweep_boxes_flat(
    cam_normalized: np.ndarray,
    taus: Iterable[float] | np.ndarray,
    multi_contour: bool = False,
    *,
    backend: str = "auto",
    exact_pass_levels: int = _EXACT_PASS_LEVELS,
    hole_levels_per_call: int = _HOLE_LEVELS_PER_CALL,
    strategy: str = "auto",
) -> SweepResult:
    """Like :func:`sweep_boxes` but flat: one box array plus per-level offsets (no per-tau lists).

    ``exact_pass_levels``, ``strategy`` (native) and ``hole_levels_per_call`` (numpy) only trade speed:
    ``strategy`` is one of :data:`STRATEGIES`; with ``"sorted"``, above ``exact_pass_levels`` open V1
    levels the kernel runs its exact pass over the basin-filled map; above ``hole_levels_per_call``
    levels with holes the numpy path takes V2's hole boxes from the hole forest instead of
    reference calls. The boxes are the same either way.
    """
    _strategy_code(strategy)
    u = unit_map_to_uint8(cam_normalized)
    k = threshold_levels(taus, u.max())
    # Levels below 0 keep every pixel and levels from 255 up keep none: the same as -1 and 255.
    levels, tau_level = np.unique(np.clip(k, -1, 255), return_inverse=True)
    if resolve_backend(backend, u.shape) == "native":
        if max(u.shape) >= 1 << 15:
            raise ParameterError("backend", backend, f"cannot sweep a {u.shape[0]}x{u.shape[1]} map (sides < 32768); use 'numpy'")
        boxes, start = _native_sweep(u, levels, multi_contour, exact_pass_levels, strategy)
    else:
        boxes, col = _level_boxes(u, np.asarray(cam_normalized), levels, multi_contour, hole_levels_per_call)
        order = _row_order(boxes, col, u.shape)
        boxes = np.ascontiguousarray(boxes[order], dtype=np.int64)
        start = np.zeros(len(levels) + 1, dtype=np.int64)
        np.cumsum(np.bincount(col, minlength=len(levels)), out=start[1:])
    return SweepResult(boxes=boxes, level_start=start, tau_level=tau_level.reshape(-1), levels=levels)


def sweep_boxes_pair(
    cam_normalized: np.ndarray,
    taus: Iterable[float] | np.ndarray,
    *,
    backend: str = "auto",
    exact_pass_levels: int = _EXACT_PASS_LEVELS,
    strategy: str = "auto",
) -> tuple[SweepResult, SweepResult]:
    """V1's and V2's :func:`sweep_boxes_flat` of one map, ``(v1, v2)``, equal to the two calls.

    With the kernel both come from one call: one value sort and one pass over ``{u > k}`` serve V1's
    area bounds and V2's outer boxes; without it, the two calls. ``exact_pass_levels`` and ``strategy``
    as for :func:`sweep_boxes_flat`.
    """
    code = _strategy_code(strategy)
    u = unit_map_to_uint8(cam_normalized)
    if resolve_backend(backend, u.shape) != "native" or max(u.shape) >= 1 << 15:
        v1, v2 = (sweep_boxes_flat(cam_normalized, taus, multi, backend=backend, exact_pass_levels=exact_pass_levels,
                                   strategy=strategy)
                  for multi in (False, True))
        return v1, v2
    assert _components is not None  # resolve_backend said "native"
    k = threshold_levels(taus, u.max())
    levels, tau_level = np.unique(np.clip(k, -1, 255), return_inverse=True)
    h, w = u.shape
    raw = _components.sweep_pair(np.ascontiguousarray(u), h, w, np.ascontiguousarray(levels, dtype=np.int32), exact_pass_levels,
                                 code)
    v1_boxes, v1_start = _settle_v1(u, levels, raw[0], raw[1], raw[2])
    v2_boxes = np.frombuffer(raw[3], dtype=np.int32).reshape(-1, 4).astype(np.int64)
    v2_start = np.frombuffer(raw[4], dtype=np.int32).astype(np.int64)
    tau_level = tau_level.reshape(-1)
    return (SweepResult(boxes=v1_boxes, level_start=v1_start, tau_level=tau_level, levels=levels),
            SweepResult(boxes=v2_boxes, level_start=v2_start, tau_level=tau_level, levels=levels))


def native_map_ious(
    cam: np.ndarray, taus: np.ndarray, gt_boxes: np.ndarray, want_unit: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """The evaluator's per-tau best IoUs of one raw map in one kernel call, or None where it does not apply.

    ``cam``: float32 ``[H, W]`` (a raw map, not yet normalised); ``taus``: float64 ``[T]``; ``gt_boxes``:
    integer ``[n >= 1, 4]`` inclusive boxes on the map's grid. Returns ``(v1 [T], v2 [T], unit)`` equal to
    ``normalize_maps(cam, "minmax")`` followed by :func:`sweep_boxes_pair` and the best inclusive IoU with
    any GT box per tau (``unit``, float32 ``[H, W]``, only with ``want_unit``; arrays may be read-only).
    None when the kernel is not built, the dtypes differ from those (the numpy steps keep float32 taus
    float32, so another dtype could round differently), a side is >= 32768, or the kernel declines
    (non-finite values, a malformed box): the caller then takes the numpy steps, which give the same
    numbers or raise the error that names the problem.
    """
    cam, taus, gt_boxes = np.asarray(cam), np.asarray(taus), np.asarray(gt_boxes)
    if (_components is None or cam.dtype != np.float32 or cam.ndim != 2 or max(cam.shape) >= 1 << 15 or min(cam.shape) < 1
            or taus.dtype != np.float64 or taus.ndim != 1 or taus.size == 0
            or not np.issubdtype(gt_boxes.dtype, np.integer) or gt_boxes.ndim != 2 or gt_boxes.shape[1:] != (4,)
            or gt_boxes.shape[0] == 0):
        return None
    h, w = cam.shape
    gt = np.ascontiguousarray(gt_boxes, dtype=np.int64)
    r = _components.wsol_ious(np.ascontiguousarray(cam), h, w, np.ascontiguousarray(taus), gt, _EXACT_PASS_LEVELS, 0,
                              want_unit)
    if r is None:
        return None
    v1_raw, v2_raw, open_levels, u_raw, unit_raw = r
    v1 = np.frombuffer(v1_raw, dtype=np.float64)
    if open_levels:
        # V1 ties OpenCV's contour order decides (as in _settle_v1): the reference call at their level
        from camkit.metrics.iou import box_iou_inclusive

        v1 = v1.copy()
        u = np.frombuffer(u_raw, dtype=np.uint8).reshape(h, w)
        for level, tau_indices in open_levels:
            box = _contour_boxes(u, int(level), False)[0]
            v1[tau_indices] = box_iou_inclusive(box[None], gt).max()
    unit = np.frombuffer(unit_raw, dtype=np.float32).reshape(h, w) if unit_raw is not None else None
    return v1, np.frombuffer(v2_raw, dtype=np.float64), unit


def sweep_boxes(
    cam_normalized: np.ndarray, taus: Iterable[float] | np.ndarray, multi_contour: bool = False, *, backend: str = "auto"
) -> list[np.ndarray]:
    """wsolevaluation boxes at every tau, computed in one pass; equal to the per-threshold loop.

    Args:
        cam_normalized: float ``[H, W]`` map in [0, 1] (min-max normalised, e.g. by
            :func:`camkit.localize.wsol.normalize_scoremap`), at the resolution boxes are wanted in.
        taus: thresholds (e.g. ``np.arange(0, 1, 0.001)``); the level is ``int(tau * u.max())``.
        multi_contour: False = MaxBoxAcc (V1, the largest-area contour), True = MaxBoxAccV2
            (every contour, hole contours included).
        backend: ``"auto"``, ``"native"`` or ``"numpy"`` (:func:`resolve_backend`); same boxes.

    Returns:
        One int64 ``[n_t, 4]`` array per tau, ``x0, y0, x1, y1`` as the reference (see
        :mod:`camkit.localize.wsol`), rows sorted lexicographically; ``[[0, 0, 0, 0]]`` when no
        pixel exceeds the level. Taus that share a level share the same array object.

    Example:
        >>> import numpy as np
        >>> cam = np.zeros((5, 5)); cam[1:4, 1:3] = 1.0
        >>> sweep_boxes(cam, [0.5])[0].tolist()
        [[1, 1, 3, 4]]
    """
    return sweep_boxes_flat(cam_normalized, taus, multi_contour, backend=backend).per_tau()
