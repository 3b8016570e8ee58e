/* wsolevaluation's boxes for a whole grid of threshold levels, from union-find labelling of a uint8 map.
 *
 * camkit.localize.sweep documents the geometry; in short, at level k the reference's findContours
 * (RETR_TREE) sees one outer contour per 8-connected component of {u > k}, box
 * (x0, y0, x1 + 1, y1 + 1), and one hole contour per bounded 4-connected component of {u <= k},
 * box (x0 - 1, y0 - 1, x1 + 2, y1 + 2), right/bottom clipped to W - 1 / H - 1. V1 wants the
 * contour of largest contourArea. The outer contour of a component encloses its holes (and whatever
 * lies in them), so its area is the 2x2-cell area of the component with its holes filled: at least
 * the component's own cell area (exactly that when its Euler number says it has no hole), at most
 * its box of pixel centres. Those bounds settle most levels in the same pass; the rest take one exact
 * pass over e, u with every bounded basin filled, whose components are the filled components.
 *
 * Two strategies give the same rows. Sorted pixels: pixels enter the set one value at a time (counting
 * sort); a union-find over components (pixels carry only a node label; nodes are made at regional
 * extrema) keeps each component's box, cell area and Euler number, and at each wanted level the
 * current roots are read out; the cost grows with the pixels. Per level: each wanted level's set is
 * labelled afresh from row bit masks read as runs (sweep_by_level); the cost grows with the levels
 * and the runs, so it wins on smooth maps (CAMs) and loses on noise. sweep_levels picks one from an
 * estimate of the runs.
 *
 * The same module also holds the CVPR16 box (cvpr16.py's rule: one threshold, the largest 8-connected
 * component), a labelling pass that replaces numpy + cv2.connectedComponentsWithStats at equal results.
 *
 * The extension is optional (setup.py builds it when a C compiler is present); sweep.py and cvpr16.py
 * have numpy paths with the same results. Buffers come through the buffer protocol, so nothing but
 * Python.h is needed to build. Maps are C-contiguous uint8 [h * w] in raster order.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(_MSC_VER)
#define FORCE_INLINE __forceinline
#else
#define FORCE_INLINE inline __attribute__((always_inline))
#endif

/* ---------------------------------------------------------------- growable rows of 5 int32 */

typedef struct {
    int32_t col, x0, y0, x1, y1; /* level column, box */
} Row;

typedef struct {
    Row *data;
    Py_ssize_t len, cap;
} Rows;

static int rows_push(Rows *r, int32_t col, int32_t x0, int32_t y0, int32_t x1, int32_t y1) {
    if (r->len == r->cap) {
        Py_ssize_t cap = r->cap ? 2 * r->cap : 1024;
        Row *grown = (Row *)realloc(r->data, (size_t)cap * sizeof(Row));
        if (!grown) return -1;
        r->data = grown;
        r->cap = cap;
    }
    r->data[r->len++] = (Row){col, x0, y0, x1, y1};
    return 0;
}

/* ---------------------------------------------------------------- component union-find */

/* A component: union-find node over components, its box and doubled cell area, and its place in
 * the list of current roots. */
typedef struct {
    int32_t parent, size, x0, y0, x1, y1, area2, euler4, prev, next;
} Node;

static inline int32_t find_root(Node *nodes, int32_t a) {
    while (nodes[a].parent != a) {
        nodes[a].parent = nodes[nodes[a].parent].parent;
        a = nodes[a].parent;
    }
    return a;
}

/* Merge the components of roots a != b; returns the surviving root. */
static inline int32_t merge(Node *nodes, int32_t *head, int32_t a, int32_t b) {
    if (nodes[a].size < nodes[b].size) { int32_t t = a; a = b; b = t; }
    Node *na = &nodes[a], *nb = &nodes[b];
    nb->parent = a;
    na->size += nb->size;
    if (nb->x0 < na->x0) na->x0 = nb->x0;
    if (nb->y0 < na->y0) na->y0 = nb->y0;
    if (nb->x1 > na->x1) na->x1 = nb->x1;
    if (nb->y1 > na->y1) na->y1 = nb->y1;
    na->area2 += nb->area2;
    na->euler4 += nb->euler4;
    if (nb->prev >= 0) nodes[nb->prev].next = nb->next;
    else *head = nb->next;
    if (nb->next >= 0) nodes[nb->next].prev = nb->prev;
    return a;
}

#if defined(__SSE2__) && !defined(CAMKIT_NO_SIMD)
#include <emmintrin.h>
/* SSE2 has no signed 32-bit max (that is SSE4.1) */
static inline __m128i vmax_epi32(__m128i a, __m128i b) {
    const __m128i gt = _mm_cmpgt_epi32(a, b);
    return _mm_or_si128(_mm_and_si128(gt, a), _mm_andnot_si128(gt, b));
}
#endif

/* Per 2x2 cell, by the mask of its corners in the set (bit 0 top-left, 1 top-right, 2 bottom-left,
 * 3 bottom-right): the step of the doubled area when the mask is reached by adding one corner (a
 * cell adds 1 when its 3rd corner comes and 1 more with its 4th: 2 * N4 + N3 in all), and Gray's
 * bit-quad term of the 8-connected Euler number, 4 * E = sum over cells of
 * [one corner] - [three corners] - 2 [two diagonal corners]. The image is zero-padded, so the
 * cells along the border count too. */
static const int8_t CELL_AREA2[16] = {0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 1, 1};
static const int8_t CELL_EULER4[16] = {0, 1, 1, 0, 1, 0, -2, -1, 1, -2, 0, -1, 0, -1, -1, 0};

typedef struct {
    int32_t *label; /* node of each pixel in the set, -1 outside; grid padded by one pixel */
    uint8_t *cells; /* mask of the corners in the set of each 2x2 cell (padded the same way), or NULL */
    Node *nodes;
    int32_t wp, head, n_nodes;
} Forest;

/* Add the pixels of one level (packed y << 16 | x). conn and area are constants at each call site,
 * so the neighbour loops unroll. */
static FORCE_INLINE void add_pixels(Forest *s, const int32_t *begin, const int32_t *end,
                                      const int conn, const int area) {
    const int32_t wp = s->wp, wc = wp - 1;
    const int32_t off8[8] = {-wp - 1, -wp, -wp + 1, -1, 1, wp - 1, wp, wp + 1};
    const int32_t off4[4] = {-wp, -1, 1, wp};
    const int32_t *off = conn == 8 ? off8 : off4;
    int32_t *label = s->label;
    Node *nodes = s->nodes;
    for (const int32_t *it = begin; it < end; it++) {
        const int32_t y = *it >> 16, x = *it & 0xffff;
        const int32_t P = (y + 1) * wp + x + 1;
        /* Branch-free common case: the neighbours already in the set carry one label (top).
         * Only at saddles (or next to stale labels of merged components) are there more. */
        int32_t top, mixed;
#if defined(__SSE2__) && !defined(CAMKIT_NO_SIMD)
        /* the rows above and below, x-1..x+2, as int32x4; lanes outside the neighbourhood are forced
         * to -1 */
        const __m128i none = _mm_set1_epi32(-1);
        const __m128i off_row = conn == 8 ? _mm_set_epi32(-1, 0, 0, 0) : _mm_set_epi32(-1, -1, 0, -1);
        const __m128i a = _mm_or_si128(_mm_loadu_si128((const __m128i *)(label + P - wp - 1)), off_row);
        /* the middle row as two scalars: p's left neighbour was often stored just before, and a wide
         * load over a pending narrow store cannot be forwarded (a stall) */
        const __m128i b = _mm_set_epi32(-1, label[P + 1], -1, label[P - 1]);
        const __m128i c = _mm_or_si128(_mm_loadu_si128((const __m128i *)(label + P + wp - 1)), off_row);
        __m128i m = vmax_epi32(vmax_epi32(a, b), c);
        m = vmax_epi32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(1, 0, 3, 2)));
        m = vmax_epi32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(2, 3, 0, 1)));
        top = _mm_cvtsi128_si32(m);
#define CAMKIT_OTHER(v) _mm_andnot_si128(_mm_cmpeq_epi32(v, m), _mm_cmpgt_epi32(v, none))
        mixed = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(CAMKIT_OTHER(a), CAMKIT_OTHER(b)), CAMKIT_OTHER(c)));
#undef CAMKIT_OTHER
#else
        top = -1;
        mixed = 0;
        for (int j = 0; j < conn; j++) top = label[P + off[j]] > top ? label[P + off[j]] : top;
        for (int j = 0; j < conn; j++) mixed |= (label[P + off[j]] >= 0) & (label[P + off[j]] != top);
#endif
        int32_t r = top < 0 ? -1 : find_root(nodes, top);
        if (mixed) {
            for (int j = 0; j < conn; j++) {
                const int32_t lq = label[P + off[j]];
                if (lq < 0 || lq == top) continue;
                const int32_t rq = find_root(nodes, lq);
                if (rq != r) r = merge(nodes, &s->head, r, rq);
            }
            /* refresh the neighbours' labels, so the growing front stops meeting stale ones */
            for (int j = 0; j < conn; j++)
                if (label[P + off[j]] >= 0) label[P + off[j]] = r;
        }
        if (r < 0) { /* a regional maximum: a new component */
            r = s->n_nodes++;
            nodes[r] = (Node){r, 0, x, y, x, y, 0, 0, -1, s->head};
            if (s->head >= 0) nodes[s->head].prev = r;
            s->head = r;
        }
        label[P] = r;
        Node *nr = &nodes[r];
        nr->size++;
        nr->x0 = x < nr->x0 ? x : nr->x0;
        nr->x1 = x > nr->x1 ? x : nr->x1;
        nr->y0 = y < nr->y0 ? y : nr->y0;
        nr->y1 = y > nr->y1 ? y : nr->y1;
        if (area) {
            /* The four cells with p as a corner: p is the bottom-right corner (bit 3) of the cell
             * up-left, ..., the top-left corner (bit 0) of the cell down-right. All corners in the set
             * of a cell are 8-connected to p, so the cell's whole contribution is its component's. */
            uint8_t *c = s->cells + y * wc + x;
            const uint8_t o0 = c[0], o1 = c[1], o2 = c[wc], o3 = c[wc + 1];
            const uint8_t n0 = o0 | 8, n1 = o1 | 4, n2 = o2 | 2, n3 = o3 | 1;
            c[0] = n0;
            c[1] = n1;
            c[wc] = n2;
            c[wc + 1] = n3;
            nr->area2 += CELL_AREA2[n0] + CELL_AREA2[n1] + CELL_AREA2[n2] + CELL_AREA2[n3];
            nr->euler4 += CELL_EULER4[n0] - CELL_EULER4[o0] + CELL_EULER4[n1] - CELL_EULER4[o1] + CELL_EULER4[n2] -
                          CELL_EULER4[o2] + CELL_EULER4[n3] - CELL_EULER4[o3];
        }
    }
}

/* What a pass does with the components at a wanted level. */
enum { EMIT_OUTER, EMIT_HOLES, EMIT_LARGEST, EMIT_LARGEST_BOUNDED };

typedef struct {
    int mode;
    int32_t w, h;
    const int32_t *col_of_level; /* [257]: column of level k at [k + 1] (levels of u), -1 if unwanted */
    const int64_t *above_u, *above_e; /* [257]: pixels of u / e above level k at [k + 1] (EMIT_LARGEST) */
    Rows *rows;
    Rows *undecided; /* EMIT_LARGEST: levels whose winner is a tie, left to the caller */
    Rows *outer_rows; /* not NULL: also read out every component's outer box there (V1 and V2 in one pass) */
} Emit;

/* Read out the components of the set {v > k}. Returns -1 when out of memory. */
static int emit_level(const Emit *e, const Forest *s, int k) {
    const int32_t W = e->w, H = e->h;
    if (e->outer_rows) {
        Emit outer = *e;
        outer.mode = EMIT_OUTER;
        outer.rows = e->outer_rows;
        outer.outer_rows = NULL;
        if (emit_level(&outer, s, k) < 0) return -1;
    }
    if (e->mode == EMIT_OUTER) {
        const int32_t col = e->col_of_level[k + 1];
        for (int32_t r = s->head; r >= 0; r = s->nodes[r].next) {
            const Node *n = &s->nodes[r];
            const int32_t x1 = n->x1 + 1 < W - 1 ? n->x1 + 1 : W - 1, y1 = n->y1 + 1 < H - 1 ? n->y1 + 1 : H - 1;
            if (rows_push(e->rows, col, n->x0, n->y0, x1, y1) < 0) return -1;
        }
    } else if (e->mode == EMIT_HOLES) {
        /* the set is {u <= k}; its bounded components are holes */
        const int32_t col = e->col_of_level[k + 1];
        for (int32_t r = s->head; r >= 0; r = s->nodes[r].next) {
            const Node *n = &s->nodes[r];
            if (n->x0 == 0 || n->y0 == 0 || n->x1 == W - 1 || n->y1 == H - 1) continue;
            const int32_t x1 = n->x1 + 2 < W - 1 ? n->x1 + 2 : W - 1, y1 = n->y1 + 2 < H - 1 ? n->y1 + 2 : H - 1;
            if (rows_push(e->rows, col, n->x0 - 1, n->y0 - 1, x1, y1) < 0) return -1;
        }
    } else if (e->mode == EMIT_LARGEST) {
        /* V1 on the filled map: the unique largest filled area wins; a lone contour wins (one
         * component and no hole); anything else is a tie that OpenCV's contour order decides */
        const int32_t col = e->col_of_level[k + 1];
        int32_t count = 0, best = -1, second = -1;
        const Node *win = NULL;
        for (int32_t r = s->head; r >= 0; r = s->nodes[r].next) {
            const Node *n = &s->nodes[r];
            count++;
            if (n->area2 > best) {
                second = best;
                best = n->area2;
                win = n;
            } else if (n->area2 > second) {
                second = n->area2;
            }
        }
        if (count == 0) return rows_push(e->rows, col, 0, 0, 0, 0);
        const int lone = count == 1 && e->above_u[k + 1] == e->above_e[k + 1];
        if (!lone && !(best > 0 && best > second)) {
            if (rows_push(e->undecided, col, 0, 0, 0, 0) < 0) return -1;
            return rows_push(e->rows, col, 0, 0, 0, 0);
        }
        const int32_t x1 = win->x1 + 1 < W - 1 ? win->x1 + 1 : W - 1, y1 = win->y1 + 1 < H - 1 ? win->y1 + 1 : H - 1;
        return rows_push(e->rows, col, win->x0, win->y0, x1, y1);
    } else {
        /* V1 on u itself, with bounds: a component's outer contour has at least its own cell area
         * (area2 / 2; exactly that without holes, Euler number 1) and at most the area of its box of
         * pixel centres; its hole contours, and anything inside them, have less than its outer one
         * when area2 > 0. The winner is settled when the largest lower bound beats every other
         * component's upper bound; other levels are left to an exact pass. */
        const int32_t col = e->col_of_level[k + 1];
        int32_t count = 0;
        int64_t best = -1, top_upper = -1, second_upper = -1;
        const Node *win = NULL, *top_node = NULL;
        for (int32_t r = s->head; r >= 0; r = s->nodes[r].next) {
            const Node *n = &s->nodes[r];
            const int64_t upper = n->euler4 == 4 ? n->area2 : 2 * (int64_t)(n->x1 - n->x0) * (n->y1 - n->y0);
            count++;
            if (n->area2 > best) {
                best = n->area2;
                win = n;
            }
            if (upper > top_upper) {
                second_upper = top_upper;
                top_upper = upper;
                top_node = n;
            } else if (upper > second_upper) {
                second_upper = upper;
            }
        }
        if (count == 0) return rows_push(e->rows, col, 0, 0, 0, 0);
        const int64_t others = top_node == win ? second_upper : top_upper;
        const int settled = count == 1 ? (win->euler4 == 4 || win->area2 > 0) : best > others;
        if (!settled) {
            if (rows_push(e->undecided, col, 0, 0, 0, 0) < 0) return -1;
            return rows_push(e->rows, col, 0, 0, 0, 0);
        }
        const int32_t x1 = win->x1 + 1 < W - 1 ? win->x1 + 1 : W - 1, y1 = win->y1 + 1 < H - 1 ? win->y1 + 1 : H - 1;
        return rows_push(e->rows, col, win->x0, win->y0, x1, y1);
    }
    return 0;
}

/* Pixels sorted by value (raster order within a value), packed as y << 16 | x: the pixels of value
 * v are order[start[v]:start[v + 1]]. start has 257 entries. */
static void sort_by_value(const uint8_t *v, int32_t H, int32_t W, int32_t *order, int32_t *start) {
    memset(start, 0, 257 * sizeof(int32_t));
    for (int32_t p = 0; p < H * W; p++) start[v[p] + 1]++;
    for (int k = 0; k < 256; k++) start[k + 1] += start[k];
    int32_t fill[256];
    memcpy(fill, start, sizeof(fill));
    for (int32_t y = 0, p = 0; y < H; y++)
        for (int32_t x = 0; x < W; x++, p++) order[fill[v[p]]++] = (y << 16) | x;
}

/* One union-find pass. Descending (upper): the set is {v > k}, growing from k = 255 down to -1;
 * ascending (lower): the set is {v <= k}, growing from k = -1 up to 255. At each k with
 * want[k + 1] the components are read out. Returns -1 when out of memory (no Python API: runs
 * without the GIL). */
static int run_pass(const int32_t *order, const int32_t *start, int32_t H, int32_t W, int conn, int area,
                    int ascending, const uint8_t *want, const Emit *e) {
    const int32_t n = W * H, wp = W + 2, wc = W + 1;
    int rc = -1;
    /* + 4: the vector loads of the last row read up to two labels past the padded grid */
    const size_t n_labels = (size_t)(H + 2) * (size_t)wp + 4;
    int32_t *label = (int32_t *)malloc(n_labels * sizeof(int32_t));
    Node *nodes = (Node *)malloc((size_t)n * sizeof(Node)); /* pages are touched only as nodes are made */
    /* padding cells keep at most two corners in the set, so they never count */
    uint8_t *cells = area ? (uint8_t *)calloc((size_t)(H + 1) * (size_t)wc, 1) : NULL;
    if (!label || !nodes || (area && !cells)) goto done;
    memset(label, 0xff, n_labels * sizeof(int32_t));
    Forest s = {label, cells, nodes, wp, -1, 0};
    for (int step = 0; step <= 256; step++) {
        /* descending: read out {v > k}, then add value k; ascending: add value k, read out {v <= k} */
        const int k = ascending ? step - 1 : 255 - step;
        if (!ascending && want[k + 1] && emit_level(e, &s, k) < 0) goto done;
        if (k >= 0) {
            const int32_t *begin = order + start[k], *end = order + start[k + 1];
            if (conn == 8 && area) add_pixels(&s, begin, end, 8, 1);
            else if (conn == 8) add_pixels(&s, begin, end, 8, 0);
            else add_pixels(&s, begin, end, 4, 0);
        }
        if (ascending && want[k + 1] && emit_level(e, &s, k) < 0) goto done;
    }
    rc = 0;
done:
    free(label);
    free(nodes);
    free(cells);
    return rc;
}

/* e[p] = the lowest k such that p is 4-connected to the image border through pixels with u <= k
 * (border pixels: e = u); {e > k} is {u > k} with every bounded 4-connected region of {u <= k}
 * filled in. Priority flood from the border, one bucket per level: O(h * w). */
static int fill_basins(const uint8_t *u, int32_t H, int32_t W, uint8_t *out) {
    const int32_t wp = W + 2, np_ = (H + 2) * wp;
    int rc = -1;
    int32_t *next = (int32_t *)malloc((size_t)np_ * sizeof(int32_t));
    uint8_t *e = (uint8_t *)malloc((size_t)np_);
    uint8_t *reached = (uint8_t *)calloc((size_t)np_, 1); /* padding counts as reached */
    uint8_t *pu = (uint8_t *)malloc((size_t)np_);         /* u on the padded grid */
    if (!next || !e || !reached || !pu) goto done;
    for (int32_t y = 0; y < H; y++) memcpy(pu + (y + 1) * wp + 1, u + (size_t)y * W, (size_t)W);
    for (int32_t i = 0; i < wp; i++) reached[i] = reached[np_ - wp + i] = 1;
    for (int32_t y = 1; y <= H; y++) reached[y * wp] = reached[y * wp + wp - 1] = 1;
    int32_t head[256];
    for (int k = 0; k < 256; k++) head[k] = -1;
    for (int32_t y = 0; y < H; y++) {
        const int32_t step = (y == 0 || y == H - 1 || W == 1) ? 1 : W - 1;
        for (int32_t x = 0; x < W; x += step) {
            const int32_t P = (y + 1) * wp + x + 1;
            const uint8_t l = pu[P];
            reached[P] = 1;
            e[P] = l;
            next[P] = head[l];
            head[l] = P;
        }
    }
    const int32_t off[4] = {-wp, -1, 1, wp};
    for (int level = 0; level < 256; level++) {
        while (head[level] >= 0) {
            const int32_t P = head[level];
            head[level] = next[P];
            for (int j = 0; j < 4; j++) {
                const int32_t Q = P + off[j];
                if (reached[Q]) continue;
                reached[Q] = 1;
                const uint8_t lq = pu[Q] > level ? pu[Q] : (uint8_t)level;
                e[Q] = lq;
                next[Q] = head[lq];
                head[lq] = Q;
            }
        }
    }
    for (int32_t y = 0; y < H; y++) memcpy(out + (size_t)y * W, e + (y + 1) * wp + 1, (size_t)W);
    rc = 0;
done:
    free(next);
    free(e);
    free(reached);
    free(pu);
    return rc;
}

/* V1 for the open levels from the basin-filled map (exact filled areas, EMIT_LARGEST): their rows in
 * `rows` (one per wanted level, in descending level order) are replaced, and `undecided` keeps only
 * the ties. aux, order: scratch of h * w bytes / int32. Returns -1 when out of memory. */
static int largest_exact(const uint8_t *u, int32_t H, int32_t W, int32_t *order, const int32_t *levels, Py_ssize_t L,
                         const int32_t *col_of_level, Rows *rows, Rows *undecided, uint8_t *aux) {
    const int32_t n = H * W;
    int rc = -1;
    Rows exact = {0}, ties = {0};
    int32_t *row_of_col = (int32_t *)malloc((size_t)L * sizeof(int32_t));
    if (!row_of_col) return -1;
    for (Py_ssize_t i = 0; i < rows->len; i++) row_of_col[rows->data[i].col] = (int32_t)i;
    uint8_t want[257] = {0};
    for (Py_ssize_t i = 0; i < undecided->len; i++) want[levels[undecided->data[i].col] + 1] = 1;
    if (fill_basins(u, H, W, aux) < 0) goto done;
    int64_t above_u[257] = {0}, above_e[257] = {0}; /* at [k + 1]: pixels with value > k */
    for (int32_t p = 0; p < n; p++) {
        above_u[u[p]]++;
        above_e[aux[p]]++;
    }
    /* counts at value v sit in slot v = (k = v - 1) + 1; suffix sums from the slot after */
    for (int i = 255; i >= 0; i--) {
        above_u[i] += above_u[i + 1];
        above_e[i] += above_e[i + 1];
    }
    int32_t start_of_value[257];
    sort_by_value(aux, H, W, order, start_of_value);
    Emit e = {EMIT_LARGEST, W, H, col_of_level, above_u, above_e, &exact, &ties, NULL};
    if (run_pass(order, start_of_value, H, W, 8, 1, 0, want, &e) < 0) goto done;
    for (Py_ssize_t i = 0; i < exact.len; i++) rows->data[row_of_col[exact.data[i].col]] = exact.data[i];
    free(undecided->data);
    *undecided = ties;
    ties.data = NULL;
    rc = 0;
done:
    free(exact.data);
    free(ties.data);
    free(row_of_col);
    return rc;
}

static int compare_rows(const void *a, const void *b) {
    const int32_t *p = (const int32_t *)a, *q = (const int32_t *)b;
    for (int i = 0; i < 5; i++)
        if (p[i] != q[i]) return p[i] < q[i] ? -1 : 1;
    return 0;
}

/* Sort rows by (col, x0, y0, x1, y1): an LSD radix sort of one uint64 key per row when the fields fit
 * in 64 bits (columns < 512 and coordinates < 8192), else qsort. Returns -1 when out of memory. */
static int sort_rows(Rows *rows) {
    const Py_ssize_t n = rows->len;
    if (n < 2) return 0;
    int32_t top = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        const Row *r = &rows->data[i];
        top = r->x1 > top ? r->x1 : top;
        top = r->y1 > top ? r->y1 : top;
    }
    int b = 1;
    while ((1 << b) <= top) b++;
    if (n < 64 || 9 + 4 * b > 64) {
        qsort(rows->data, (size_t)n, sizeof(Row), compare_rows);
        return 0;
    }
    uint64_t *key = (uint64_t *)malloc(2 * (size_t)n * sizeof(uint64_t));
    if (!key) return -1;
    uint64_t *tmp = key + n;
    for (Py_ssize_t i = 0; i < n; i++) {
        const Row *r = &rows->data[i];
        key[i] = (uint64_t)r->col << (4 * b) | (uint64_t)r->x0 << (3 * b) | (uint64_t)r->y0 << (2 * b) |
                 (uint64_t)r->x1 << b | (uint64_t)r->y1;
    }
    enum { DIGIT = 11 };
    for (int shift = 0; shift < 9 + 4 * b; shift += DIGIT) {
        Py_ssize_t count[(1 << DIGIT) + 1] = {0};
        for (Py_ssize_t i = 0; i < n; i++) count[((key[i] >> shift) & ((1 << DIGIT) - 1)) + 1]++;
        if (count[((key[0] >> shift) & ((1 << DIGIT) - 1)) + 1] == n) continue; /* one digit value: nothing moves */
        for (int d = 0; d < 1 << DIGIT; d++) count[d + 1] += count[d];
        for (Py_ssize_t i = 0; i < n; i++) tmp[count[(key[i] >> shift) & ((1 << DIGIT) - 1)]++] = key[i];
        uint64_t *t = key;
        key = tmp;
        tmp = t;
    }
    const uint64_t m = ((uint64_t)1 << b) - 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint64_t k = key[i];
        rows->data[i] = (Row){(int32_t)(k >> (4 * b)), (int32_t)(k >> (3 * b) & m), (int32_t)(k >> (2 * b) & m),
                              (int32_t)(k >> b & m), (int32_t)(k & m)};
    }
    free(key < tmp ? key : tmp);
    return 0;
}

/* Group rows by level column, boxes sorted within a level (a level without contours gets 0, 0, 0, 0);
 * *start_out: the [L + 1] offsets (malloc'ed). Returns -1 when out of memory. */
static int group_rows(Rows *rows, Py_ssize_t L, int32_t **start_out) {
    int32_t *start = (int32_t *)calloc((size_t)L + 1, sizeof(int32_t));
    if (!start) return -1;
    for (Py_ssize_t i = 0; i < rows->len; i++) start[rows->data[i].col + 1]++;
    for (Py_ssize_t j = 0; j < L; j++)
        if (start[j + 1] == 0 && rows_push(rows, (int32_t)j, 0, 0, 0, 0) < 0) {
            free(start);
            return -1;
        }
    if (sort_rows(rows) < 0) {
        free(start);
        return -1;
    }
    memset(start, 0, ((size_t)L + 1) * sizeof(int32_t));
    for (Py_ssize_t i = 0; i < rows->len; i++) start[rows->data[i].col + 1]++;
    for (Py_ssize_t j = 0; j < L; j++) start[j + 1] += start[j];
    *start_out = start;
    return 0;
}

enum { SWEEP_V1 = 1, SWEEP_V2 = 2 };

/* ---------------------------------------------------------------- per-level run labelling
 *
 * The other way to the same rows: label {u > k} afresh at each wanted level, from row bit masks read as
 * runs of set bits (a run joins the runs of the row above that overlap it, widened by one pixel for
 * 8-connectivity). A union-find root carries its component's box, doubled cell area (the 2x2 cells with
 * three or four corners in the set, read from the masks of the row and the one below, are counted by
 * the run of the upper row that holds their top corners) and Euler number: runs minus adjacencies
 * between runs, the Euler number of the run graph, which has the component's holes as its cycles.
 * Bounded 4-connected components of {u <= k}, the holes, are labelled only at levels whose Euler
 * number says there are any. The cost grows with the levels and the runs, not with the pixels: on
 * smooth maps (CAMs: a few runs per row) it beats the passes over the value-sorted pixels, on noise
 * (thousands of runs per level) those passes win; sweep_levels picks by an estimate of the runs. */

#if defined(__GNUC__) || defined(__clang__)
#define SWEEP_CTZ64(v) __builtin_ctzll(v)
#else
static inline int SWEEP_CTZ64(uint64_t v) {
    int k = 0;
    while (!(v & 1)) { v >>= 1; k++; }
    return k;
}
#endif

#if defined(__POPCNT__) || defined(__ARM_NEON)
#define SWEEP_POPCOUNT64(v) __builtin_popcountll(v)
#else
static inline int SWEEP_POPCOUNT64(uint64_t v) { /* SWAR: no call into libgcc without -mpopcnt */
    v -= (v >> 1) & 0x5555555555555555ULL;
    v = (v & 0x3333333333333333ULL) + ((v >> 2) & 0x3333333333333333ULL);
    v = (v + (v >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
    return (int)((v * 0x0101010101010101ULL) >> 56);
}
#endif

typedef struct {
    int32_t x0, x1, comp; /* inclusive columns; a component (not necessarily its root) */
} Run;

typedef struct {
    int32_t parent, x0, y0, x1, y1, area2, euler; /* euler: runs minus adjacencies */
} Comp;

typedef struct {
    const uint8_t *u;
    int32_t H, W, nw;        /* nw: 64-bit words per mask row */
    const uint8_t *row_max, *row_min;
    uint64_t *set, *other;   /* [H * nw] masks: the set {u > k}; its complement or the filled set */
    uint64_t *cell3, *cell4; /* [nw] the 2x2 cells with >= 3 / 4 corners in the set, of one row pair */
    Run *runs;               /* [H * (W / 2 + 1)]: every run of the last labelling */
    int32_t *row_start;      /* [H + 1]: row y's runs are runs[row_start[y]:row_start[y + 1]] */
    Comp *comps;             /* [H * (W / 2 + 1)] */
} Labeller;

static inline int32_t comp_find(Comp *c, int32_t a) {
    while (c[a].parent != a) {
        c[a].parent = c[c[a].parent].parent;
        a = c[a].parent;
    }
    return a;
}

/* bits of m[y] = (u[y, x] > k) for x < W (bits past W clear), for the rows y0 <= y <= y1 that can hold
 * such pixels (the rows outside are left as they were: the set has nothing there); returns 0, or -1
 * when no row does. */
static int level_mask(const Labeller *lb, int k, uint64_t *m, int32_t *y0_out, int32_t *y1_out) {
    const int32_t W = lb->W, nw = lb->nw;
    int32_t y0 = 0, y1 = lb->H - 1;
    while (y0 <= y1 && lb->row_max[y0] <= k) y0++;
    while (y1 >= y0 && lb->row_max[y1] <= k) y1--;
    if (y0 > y1) return -1;
    *y0_out = y0;
    *y1_out = y1;
    for (int32_t y = y0; y <= y1; y++) {
        uint64_t *b = m + (size_t)y * nw;
        if (lb->row_max[y] <= k) {
            memset(b, 0, (size_t)nw * sizeof(uint64_t));
            continue;
        }
        const uint8_t *r = lb->u + (size_t)y * W;
        int32_t x = 0;
        if (lb->row_min[y] > k) {
            for (; x + 64 <= W; x += 64) b[x >> 6] = ~(uint64_t)0;
            if (x < W) b[x >> 6] = ((uint64_t)1 << (W - x)) - 1;
            continue;
        }
#if defined(__SSE2__) && !defined(CAMKIT_NO_SIMD)
        /* unsigned u > k as signed (u ^ 0x80) > (k ^ 0x80); here 0 <= k < 255. A word from four
         * compares at a time, so that no word is stored more than once. */
        const __m128i flip = _mm_set1_epi8((char)0x80), kv = _mm_set1_epi8((char)(k ^ 0x80));
#define SWEEP_GT16(at) ((uint64_t)(uint32_t)_mm_movemask_epi8( \
        _mm_cmpgt_epi8(_mm_xor_si128(_mm_loadu_si128((const __m128i *)(r + (at))), flip), kv)))
        for (; x + 64 <= W; x += 64)
            b[x >> 6] = SWEEP_GT16(x) | SWEEP_GT16(x + 16) << 16 | SWEEP_GT16(x + 32) << 32 | SWEEP_GT16(x + 48) << 48;
        if (x < W) b[x >> 6] = 0;
        for (; x + 16 <= W; x += 16) b[x >> 6] |= SWEEP_GT16(x) << (x & 63);
#undef SWEEP_GT16
#else
        if (x < W) b[x >> 6] = 0;
#endif
        for (; x < W; x++) {
            if (!(x & 63)) b[x >> 6] = 0;
            b[x >> 6] |= (uint64_t)(r[x] > k) << (x & 63);
        }
    }
    return 0;
}

/* o = the complement within the W columns of the set m, whose rows outside y0..y1 are empty */
static void complement_mask(const Labeller *lb, const uint64_t *m, int32_t y0, int32_t y1, uint64_t *o) {
    const int32_t nw = lb->nw, tail = lb->W & 63;
    const uint64_t last = tail ? ((uint64_t)1 << tail) - 1 : ~(uint64_t)0;
    for (int32_t y = 0; y < lb->H; y++) {
        uint64_t *b = o + (size_t)y * nw;
        if (y < y0 || y > y1)
            for (int32_t i = 0; i < nw; i++) b[i] = ~(uint64_t)0;
        else
            for (int32_t i = 0; i < nw; i++) b[i] = ~m[(size_t)y * nw + i];
        b[nw - 1] &= last;
    }
}

/* set bits lo..hi (inclusive) of the row b */
static inline void set_bits(uint64_t *b, int32_t lo, int32_t hi) {
    for (int32_t i = lo >> 6; i <= hi >> 6; i++) {
        uint64_t mk = ~(uint64_t)0;
        if (i == lo >> 6) mk &= ~(uint64_t)0 << (lo & 63);
        if (i == hi >> 6) mk &= ~(uint64_t)0 >> (63 - (hi & 63));
        b[i] |= mk;
    }
}

/* set bits of b among bits lo..hi (inclusive; lo may be -1) */
static inline int32_t count_bits(const uint64_t *b, int32_t lo, int32_t hi) {
    if (lo < 0) lo = 0;
    int32_t c = 0;
    for (int32_t i = lo >> 6; i <= hi >> 6; i++) {
        uint64_t v = b[i];
        if (i == lo >> 6) v &= ~(uint64_t)0 << (lo & 63);
        if (i == hi >> 6) v &= ~(uint64_t)0 >> (63 - (hi & 63));
        c += SWEEP_POPCOUNT64(v);
    }
    return c;
}

/* first set bit at or after pos in the row mask b[nw], -1 when none */
static inline int32_t run_next_set(const uint64_t *b, int32_t nw, int32_t pos) {
    int32_t i = pos >> 6;
    if (i >= nw) return -1;
    uint64_t v = b[i] & (~(uint64_t)0 << (pos & 63));
    while (!v) {
        if (++i >= nw) return -1;
        v = b[i];
    }
    return (i << 6) + SWEEP_CTZ64(v);
}

/* first clear bit at or after pos (bits past the row's end are clear) */
static inline int32_t run_next_clear(const uint64_t *b, int32_t nw, int32_t pos) {
    int32_t i = pos >> 6;
    uint64_t v = ~b[i] & (~(uint64_t)0 << (pos & 63));
    while (!v) {
        if (++i >= nw) return nw << 6;
        v = ~b[i];
    }
    return (i << 6) + SWEEP_CTZ64(v);
}

/* Label the 8- (conn8) or 4-connected components of the set in the masks m, whose rows outside y0..y1
 * are empty (and not read); with area, their doubled cell areas too. Returns the number of component
 * entries made (roots have parent == index); row_start is set for the rows y0..y1 + 1. */
static int32_t label_mask(Labeller *lb, const uint64_t *m, int32_t y0, int32_t y1, int conn8, int area) {
    const int32_t nw = lb->nw, d = conn8 ? 1 : 0;
    Run *runs = lb->runs;
    Comp *comps = lb->comps;
    int32_t nr = 0, nc = 0, prev_lo = 0, prev_hi = 0;
    for (int32_t y = y0; y <= y1; y++) {
        const uint64_t *a = m + (size_t)y * nw;
        lb->row_start[y] = nr;
        uint64_t any = 0;
        for (int32_t i = 0; i < nw; i++) any |= a[i];
        if (!any) {
            prev_lo = prev_hi = nr;
            continue;
        }
        const int cells = area && y < y1;
        if (cells) {
            const uint64_t *b = a + nw;
            for (int32_t i = 0; i < nw; i++) {
                /* corners x and x + 1 of the two rows */
                const uint64_t a1 = (a[i] >> 1) | (i + 1 < nw ? a[i + 1] << 63 : 0);
                const uint64_t b1 = (b[i] >> 1) | (i + 1 < nw ? b[i + 1] << 63 : 0);
                const uint64_t ta = a[i] & a1, tb = b[i] & b1;
                lb->cell4[i] = ta & tb;
                lb->cell3[i] = (ta & (b[i] | b1)) | (tb & (a[i] | a1));
            }
        }
        int32_t j = prev_lo;
        for (int32_t x0 = run_next_set(a, nw, 0); x0 >= 0;) {
            const int32_t end = run_next_clear(a, nw, x0), x1 = end - 1;
            while (j < prev_hi && runs[j].x1 < x0 - d) j++;
            int32_t root = -1, edges = 0;
            for (int32_t t = j; t < prev_hi && runs[t].x0 <= x1 + d; t++) {
                int32_t rt = comp_find(comps, runs[t].comp);
                edges++;
                if (root < 0) {
                    root = rt;
                } else if (rt != root) {
                    /* the older entry stays the root */
                    if (rt < root) { const int32_t s = rt; rt = root; root = s; }
                    Comp *cr = &comps[root], *cq = &comps[rt];
                    cq->parent = root;
                    cr->x0 = cq->x0 < cr->x0 ? cq->x0 : cr->x0;
                    cr->y0 = cq->y0 < cr->y0 ? cq->y0 : cr->y0;
                    cr->x1 = cq->x1 > cr->x1 ? cq->x1 : cr->x1;
                    cr->area2 += cq->area2;
                    cr->euler += cq->euler;
                }
            }
            if (root < 0) {
                root = nc++;
                comps[root] = (Comp){root, x0, y, x1, y, 0, 0};
            }
            Comp *c = &comps[root];
            c->x0 = x0 < c->x0 ? x0 : c->x0;
            c->x1 = x1 > c->x1 ? x1 : c->x1;
            c->y1 = y; /* rows come in order */
            c->euler += 1 - edges;
            if (cells) c->area2 += count_bits(lb->cell3, x0 - 1, x1) + count_bits(lb->cell4, x0 - 1, x1);
            runs[nr++] = (Run){x0, x1, root};
            x0 = run_next_set(a, nw, end);
        }
        prev_lo = lb->row_start[y];
        prev_hi = nr;
    }
    lb->row_start[y1 + 1] = nr;
    return nc;
}

static inline int push_outer(Rows *rows, int32_t col, const Comp *c, int32_t W, int32_t H) {
    return rows_push(rows, col, c->x0, c->y0, c->x1 + 1 < W - 1 ? c->x1 + 1 : W - 1, c->y1 + 1 < H - 1 ? c->y1 + 1 : H - 1);
}

/* sweep_levels' rows (not yet grouped) by labelling each wanted level afresh. V1 as there: the bounds
 * settle a level, a tie without holes is left to the caller, and a level the bounds leave open with
 * holes is settled on the set with its bounded holes filled (labelled again; ties left to the caller).
 * Returns -1 when out of memory. */
static int sweep_by_level(const uint8_t *u, int32_t H, int32_t W, const int32_t *levels, Py_ssize_t L, int which,
                          Rows *v1, Rows *undecided, Rows *v2) {
    const int32_t nw = (W + 63) >> 6;
    const size_t max_runs = (size_t)H * (size_t)(W / 2 + 1);
    int rc = -1;
    Labeller lb = {u, H, W, nw, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    uint8_t *row_max = (uint8_t *)malloc(2 * (size_t)H);
    uint64_t *masks = (uint64_t *)malloc((2 * (size_t)H + 2) * (size_t)nw * sizeof(uint64_t));
    lb.runs = (Run *)malloc(max_runs * sizeof(Run));
    lb.comps = (Comp *)malloc(max_runs * sizeof(Comp)); /* pages are touched only as entries are made */
    lb.row_start = (int32_t *)malloc(((size_t)H + 1) * sizeof(int32_t));
    if (!row_max || !masks || !lb.runs || !lb.comps || !lb.row_start) goto done;
    for (int32_t y = 0; y < H; y++) {
        uint8_t hi = 0, lo = 255;
        for (int32_t x = 0; x < W; x++) {
            const uint8_t v = u[(size_t)y * W + x];
            hi = v > hi ? v : hi;
            lo = v < lo ? v : lo;
        }
        row_max[y] = hi;
        row_max[H + y] = lo;
    }
    lb.row_max = row_max;
    lb.row_min = row_max + H;
    lb.set = masks;
    lb.other = masks + (size_t)H * nw;
    lb.cell3 = masks + 2 * (size_t)H * nw;
    lb.cell4 = lb.cell3 + nw;
    for (Py_ssize_t j = 0; j < L; j++) {
        const int k = levels[j];
        const int32_t col = (int32_t)j;
        int32_t y0, y1;
        if (level_mask(&lb, k, lb.set, &y0, &y1) < 0) { /* nothing above k */
            if ((which & SWEEP_V1) && rows_push(v1, col, 0, 0, 0, 0) < 0) goto done;
            continue;
        }
        int32_t nc = label_mask(&lb, lb.set, y0, y1, 1, 0);
        int32_t count = 0, holes = 0;
        const Comp *win = NULL;
        for (int32_t r = 0; r < nc; r++) {
            const Comp *c = &lb.comps[r];
            if (c->parent != r) continue;
            count++;
            holes += 1 - c->euler;
            win = c;
            if ((which & SWEEP_V2) && push_outer(v2, col, c, W, H) < 0) goto done;
        }
        int exact = 0;
        if ((which & SWEEP_V1) && count == 1 && win->euler == 1) {
            if (push_outer(v1, col, win, W, H) < 0) goto done; /* the one contour */
        } else if (which & SWEEP_V1) {
            /* V1's bounds, as EMIT_LARGEST_BOUNDED; they need the cell areas: label again with them */
            nc = label_mask(&lb, lb.set, y0, y1, 1, 1);
            int32_t best = -1;
            int64_t top_upper = -1, second_upper = -1;
            const Comp *top_node = NULL;
            win = NULL;
            for (int32_t r = 0; r < nc; r++) {
                const Comp *c = &lb.comps[r];
                if (c->parent != r) continue;
                const int64_t upper = c->euler == 1 ? c->area2 : 2 * (int64_t)(c->x1 - c->x0) * (c->y1 - c->y0);
                if (c->area2 > best) {
                    best = c->area2;
                    win = c;
                }
                if (upper > top_upper) {
                    second_upper = top_upper;
                    top_upper = upper;
                    top_node = c;
                } else if (upper > second_upper) {
                    second_upper = upper;
                }
            }
            const int64_t others = top_node == win ? second_upper : top_upper;
            const int settled = count == 1 ? (win->euler == 1 || win->area2 > 0) : best > others;
            if (settled) {
                if (push_outer(v1, col, win, W, H) < 0) goto done;
            } else if (holes > 0) {
                exact = 1;
            } else if (rows_push(undecided, col, 0, 0, 0, 0) < 0 || rows_push(v1, col, 0, 0, 0, 0) < 0) {
                goto done;
            }
        }
        if (holes > 0 && ((which & SWEEP_V2) || exact)) {
            /* the holes: bounded 4-connected components of {u <= k} */
            complement_mask(&lb, lb.set, y0, y1, lb.other);
            const int32_t nh = label_mask(&lb, lb.other, 0, H - 1, 0, 0);
            int32_t n_bounded = 0;
            for (int32_t r = 0; r < nh; r++) {
                const Comp *c = &lb.comps[r];
                if (c->parent != r || c->x0 == 0 || c->y0 == 0 || c->x1 == W - 1 || c->y1 == H - 1) continue;
                n_bounded++;
                if ((which & SWEEP_V2) &&
                    rows_push(v2, col, c->x0 - 1, c->y0 - 1, c->x1 + 2 < W - 1 ? c->x1 + 2 : W - 1,
                              c->y1 + 2 < H - 1 ? c->y1 + 2 : H - 1) < 0)
                    goto done;
            }
            if (exact) {
                /* V1 on the filled set, as EMIT_LARGEST: the outer contour's area is the filled component's */
                /* the holes lie between the set's rows */
                memcpy(lb.other + (size_t)y0 * nw, lb.set + (size_t)y0 * nw, (size_t)(y1 - y0 + 1) * nw * sizeof(uint64_t));
                for (int32_t y = y0; y <= y1; y++)
                    for (int32_t i = lb.row_start[y]; i < lb.row_start[y + 1]; i++) {
                        const Comp *c = &lb.comps[comp_find(lb.comps, lb.runs[i].comp)];
                        if (c->x0 == 0 || c->y0 == 0 || c->x1 == W - 1 || c->y1 == H - 1) continue;
                        set_bits(lb.other + (size_t)y * nw, lb.runs[i].x0, lb.runs[i].x1);
                    }
                const int32_t nf = label_mask(&lb, lb.other, y0, y1, 1, 1);
                int32_t n_filled = 0, fbest = -1, fsecond = -1;
                const Comp *fwin = NULL;
                for (int32_t r = 0; r < nf; r++) {
                    const Comp *c = &lb.comps[r];
                    if (c->parent != r) continue;
                    n_filled++;
                    if (c->area2 > fbest) {
                        fsecond = fbest;
                        fbest = c->area2;
                        fwin = c;
                    } else if (c->area2 > fsecond) {
                        fsecond = c->area2;
                    }
                }
                const int lone = n_filled == 1 && n_bounded == 0;
                if (!lone && !(fbest > 0 && fbest > fsecond)) {
                    if (rows_push(undecided, col, 0, 0, 0, 0) < 0 || rows_push(v1, col, 0, 0, 0, 0) < 0) goto done;
                } else if (push_outer(v1, col, fwin, W, H) < 0) {
                    goto done;
                }
            }
        }
    }
    rc = 0;
done:
    free(row_max);
    free(masks);
    free(lb.runs);
    free(lb.comps);
    free(lb.row_start);
    return rc;
}

/* Run starts of {u > k} summed over the wanted levels, estimated from every 8th row. */
static double estimate_runs(const uint8_t *u, int32_t H, int32_t W, const uint8_t *want) {
    int32_t below[256]; /* wanted levels k < v, for v = 0..255 (want[k + 1]) */
    int32_t acc = 0;
    for (int v = 0; v < 256; v++) below[v] = acc += want[v];
    int64_t starts = 0;
    int32_t rows = 0;
    for (int32_t y = 0; y < H; y += 8, rows++) {
        int32_t prev = 0;
        for (int32_t x = 0; x < W; x++) {
            const int32_t c = below[u[(size_t)y * W + x]];
            starts += c > prev ? c - prev : 0;
            prev = c;
        }
    }
    return (double)starts * H / rows;
}


/* The whole sweep without the Python API (it runs with the GIL released). `which`: SWEEP_V1, SWEEP_V2 or
 * both. V1 rows go to v1 (undecided: the V1 columns left to the caller), V2 rows to v2, each grouped
 * by level column and sorted within a level with its [L + 1] offsets in *start_v1 / *start_v2
 * (malloc'ed). With both, one sort and one pass over {u > k} serve V1's bounds and V2's outer boxes.
 * Returns -1 when out of memory. */
enum { STRATEGY_AUTO = 0, STRATEGY_PER_LEVEL = 1, STRATEGY_SORTED = 2 };
/* The cost model of the choice, fitted to timings of 224x224 CAMs (with and without noise) at 100 and
 * 1000 thresholds: per level and mask row, and per pixel of the value-sorted passes; the per-level
 * strategy's cost grows with runs^2 / (levels * rows), since with more runs per row more levels have
 * holes (one more labelling, of the complement) and several components (one more, with cell areas). */
#define LEVEL_ROW_COST 1.0
#define RUN_DENSITY_COST 6.5
#define PIXEL_COST 4.5

/* The strategy STRATEGY_AUTO stands for on this map and these levels. */
static int choose_strategy(const uint8_t *u, int32_t H, int32_t W, Py_ssize_t L, const uint8_t *want) {
    const double rows = (double)L * H, runs = estimate_runs(u, H, W, want);
    const double per_level = rows > 0 ? rows * LEVEL_ROW_COST + RUN_DENSITY_COST * runs * runs / rows : 0;
    return per_level < (double)H * W * PIXEL_COST ? STRATEGY_PER_LEVEL : STRATEGY_SORTED;
}

static int sweep_levels(const uint8_t *u, int32_t H, int32_t W, const int32_t *levels, Py_ssize_t L,
                        const int32_t *col_of_level, const uint8_t *want, int which, int exact_pass_levels,
                        int strategy, Rows *v1, Rows *undecided, int32_t **start_v1, Rows *v2, int32_t **start_v2) {
    const int32_t n = H * W;
    int rc = -1;
    int32_t start_of_value[257];
    uint8_t *aux = NULL;
    int32_t *order = NULL;
    if (strategy == STRATEGY_AUTO) strategy = choose_strategy(u, H, W, L, want);
    if (strategy == STRATEGY_PER_LEVEL) {
        if (sweep_by_level(u, H, W, levels, L, which, v1, undecided, v2) < 0) goto done;
        if ((which & SWEEP_V2) && group_rows(v2, L, start_v2) < 0) goto done;
        if ((which & SWEEP_V1) && group_rows(v1, L, start_v1) < 0) goto done;
        rc = 0;
        goto done;
    }
    aux = (uint8_t *)malloc((size_t)n);
    order = (int32_t *)malloc((size_t)n * sizeof(int32_t));
    if (!aux || !order) goto done;
    sort_by_value(u, H, W, order, start_of_value);
    if (which & SWEEP_V1) {
        /* V1's bounds from {u > k} with cell areas; with V2 too, its outer boxes from the same pass */
        Emit e = {EMIT_LARGEST_BOUNDED, W, H, col_of_level, NULL, NULL, v1, undecided, (which & SWEEP_V2) ? v2 : NULL};
        if (run_pass(order, start_of_value, H, W, 8, 1, 0, want, &e) < 0) goto done;
    } else {
        Emit e = {EMIT_OUTER, W, H, col_of_level, NULL, NULL, v2, NULL, NULL};
        if (run_pass(order, start_of_value, H, W, 8, 0, 0, want, &e) < 0) goto done;
    }
    if (which & SWEEP_V2) {
        /* the same sort serves the holes: bounded 4-connected components of {u <= k} */
        Emit e = {EMIT_HOLES, W, H, col_of_level, NULL, NULL, v2, NULL, NULL};
        if (run_pass(order, start_of_value, H, W, 4, 0, 1, want, &e) < 0) goto done;
        if (group_rows(v2, L, start_v2) < 0) goto done;
    }
    if (which & SWEEP_V1) {
        /* (largest_exact reuses order as scratch: after the holes pass) */
        if (undecided->len > exact_pass_levels &&
            largest_exact(u, H, W, order, levels, L, col_of_level, v1, undecided, aux) < 0)
            goto done;
        if (group_rows(v1, L, start_v1) < 0) goto done;
    }
    rc = 0;
done:
    free(aux);
    free(order);
    return rc;
}

/* Checks u's size and the levels, fills col_of_level / want. Returns 0, or -1 with a Python error set. */
static int parse_levels(Py_ssize_t h, Py_ssize_t w, Py_ssize_t u_len, const Py_buffer *lbuf, int32_t *col_of_level,
                        uint8_t *want, Py_ssize_t *L_out) {
    if (h < 1 || w < 1 || h >= (1 << 15) || w >= (1 << 15) || u_len != h * w) {
        PyErr_SetString(PyExc_ValueError, "u must be a uint8 map of h * w values, sides in [1, 32767]");
        return -1;
    }
    const Py_ssize_t L = lbuf->len / (Py_ssize_t)sizeof(int32_t);
    const int32_t *levels = (const int32_t *)lbuf->buf;
    for (int i = 0; i < 257; i++) col_of_level[i] = -1;
    memset(want, 0, 257);
    for (Py_ssize_t j = 0; j < L; j++) {
        if (levels[j] < -1 || levels[j] > 255 || (j && levels[j] <= levels[j - 1])) {
            PyErr_SetString(PyExc_ValueError, "levels must be ascending, distinct, in [-1, 255]");
            return -1;
        }
        col_of_level[levels[j] + 1] = (int32_t)j;
        want[levels[j] + 1] = 1;
    }
    *L_out = L;
    return 0;
}

/* (boxes, level_start) as bytes of int32 [n, 4] and [L + 1]; NULL with a Python error on failure. */
static PyObject *rows_to_bytes(const Rows *rows, const int32_t *start, Py_ssize_t L) {
    PyObject *boxes = PyBytes_FromStringAndSize(NULL, rows->len * 4 * (Py_ssize_t)sizeof(int32_t));
    if (!boxes) return NULL;
    int32_t *b = (int32_t *)PyBytes_AS_STRING(boxes);
    for (Py_ssize_t i = 0; i < rows->len; i++) memcpy(b + 4 * i, &rows->data[i].x0, 4 * sizeof(int32_t));
    PyObject *bounds = PyBytes_FromStringAndSize((const char *)start, (L + 1) * (Py_ssize_t)sizeof(int32_t));
    if (!bounds) {
        Py_DECREF(boxes);
        return NULL;
    }
    PyObject *pair = PyTuple_Pack(2, boxes, bounds);
    Py_DECREF(boxes);
    Py_DECREF(bounds);
    return pair;
}

static PyObject *columns_to_bytes(const Rows *undecided) {
    PyObject *open_cols = PyBytes_FromStringAndSize(NULL, undecided->len * (Py_ssize_t)sizeof(int32_t));
    if (open_cols)
        for (Py_ssize_t i = 0; i < undecided->len; i++) ((int32_t *)PyBytes_AS_STRING(open_cols))[i] = undecided->data[i].col;
    return open_cols;
}

/* Runs sweep_levels on parsed arguments and builds (boxes, level_start[, undecided]) per variant:
 * which == SWEEP_V1 or SWEEP_V2: a 3-tuple (undecided empty for V2); both: a 5-tuple, V1's three then V2's two. */
static PyObject *sweep_call(Py_buffer *ubuf, Py_ssize_t h, Py_ssize_t w, Py_buffer *lbuf, int which, int exact_pass_levels,
                            int strategy) {
    PyObject *result = NULL, *r1 = NULL, *r2 = NULL, *open_cols = NULL;
    Rows v1 = {0}, v2 = {0}, undecided = {0};
    int32_t *start1 = NULL, *start2 = NULL;
    int32_t col_of_level[257];
    uint8_t want[257];
    Py_ssize_t L;
    if (parse_levels(h, w, ubuf->len, lbuf, col_of_level, want, &L) < 0) goto done;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = sweep_levels((const uint8_t *)ubuf->buf, (int32_t)h, (int32_t)w, (const int32_t *)lbuf->buf, L, col_of_level,
                      want, which, exact_pass_levels, strategy, &v1, &undecided, &start1, &v2, &start2);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        PyErr_NoMemory();
        goto done;
    }
    open_cols = columns_to_bytes(&undecided);
    if (!open_cols) goto done;
    if (which & SWEEP_V1 && !(r1 = rows_to_bytes(&v1, start1, L))) goto done;
    if (which & SWEEP_V2 && !(r2 = rows_to_bytes(&v2, start2, L))) goto done;
    if (which == SWEEP_V1)
        result = PyTuple_Pack(3, PyTuple_GET_ITEM(r1, 0), PyTuple_GET_ITEM(r1, 1), open_cols);
    else if (which == SWEEP_V2)
        result = PyTuple_Pack(3, PyTuple_GET_ITEM(r2, 0), PyTuple_GET_ITEM(r2, 1), open_cols);
    else
        result = PyTuple_Pack(5, PyTuple_GET_ITEM(r1, 0), PyTuple_GET_ITEM(r1, 1), open_cols, PyTuple_GET_ITEM(r2, 0),
                              PyTuple_GET_ITEM(r2, 1));
done:
    Py_XDECREF(r1);
    Py_XDECREF(r2);
    Py_XDECREF(open_cols);
    free(v1.data);
    free(v2.data);
    free(undecided.data);
    free(start1);
    free(start2);
    return result;
}

static int check_strategy(int strategy) {
    if (strategy < STRATEGY_AUTO || strategy > STRATEGY_SORTED) {
        PyErr_SetString(PyExc_ValueError, "strategy must be 0 (auto), 1 (per level) or 2 (sorted pixels)");
        return -1;
    }
    return 0;
}

/* sweep(u, h, w, levels, multi_contour, exact_pass_levels[, strategy]) -> (boxes, level_start, undecided), bytes of int32:
 * boxes [n, 4] (x0, y0, x1, y1 as the reference, sorted within each level), level_start [L + 1]
 * (boxes of levels[j] are rows level_start[j]:level_start[j + 1]), undecided: columns whose V1 box
 * is a tie for the caller to settle (their row holds 0, 0, 0, 0). levels: int32 [L], ascending,
 * distinct, in [-1, 255]. A level without any pixel above it gets the box 0, 0, 0, 0.
 * strategy: 0 picks by an estimate of the work (sweep_strategy), 1 labels each level's row runs
 * (sweep_by_level), 2 runs the union-find passes over the value-sorted pixels; the rows are the same.
 * V1 (not multi_contour) settles most levels from bounds on u's components; a level they leave open
 * is settled on the set with its holes filled: per level (strategy 1), or, with strategy 2 and more
 * than exact_pass_levels open levels (each costs the caller a findContours call), by one exact pass
 * over the basin-filled map. Only true ties are left to the caller. The GIL is released while it computes. */
static PyObject *sweep(PyObject *self, PyObject *args) {
    Py_buffer ubuf, lbuf;
    Py_ssize_t h, w;
    int multi, exact_pass_levels, strategy = STRATEGY_AUTO;
    if (!PyArg_ParseTuple(args, "y*nny*pi|i", &ubuf, &h, &w, &lbuf, &multi, &exact_pass_levels, &strategy)) return NULL;
    PyObject *result = check_strategy(strategy) < 0 ? NULL
                       : sweep_call(&ubuf, h, w, &lbuf, multi ? SWEEP_V2 : SWEEP_V1, exact_pass_levels, strategy);
    PyBuffer_Release(&ubuf);
    PyBuffer_Release(&lbuf);
    return result;
}

/* sweep_pair(u, h, w, levels, exact_pass_levels[, strategy]) -> (boxes_v1, level_start_v1, undecided_v1,
 * boxes_v2, level_start_v2): sweep()'s V1 and V2 results from one call (one labelling of {u > k} per
 * level, or one sort and one pass over {u > k} fewer, serves both). */
static PyObject *sweep_pair(PyObject *self, PyObject *args) {
    Py_buffer ubuf, lbuf;
    Py_ssize_t h, w;
    int exact_pass_levels, strategy = STRATEGY_AUTO;
    if (!PyArg_ParseTuple(args, "y*nny*i|i", &ubuf, &h, &w, &lbuf, &exact_pass_levels, &strategy)) return NULL;
    PyObject *result = check_strategy(strategy) < 0 ? NULL
                       : sweep_call(&ubuf, h, w, &lbuf, SWEEP_V1 | SWEEP_V2, exact_pass_levels, strategy);
    PyBuffer_Release(&ubuf);
    PyBuffer_Release(&lbuf);
    return result;
}

/* ---------------------------------------------------------------- one map's per-tau IoUs for the evaluator

 * wsol_ious(m, h, w, taus, gt_boxes, exact_pass_levels, strategy, want_unit) -> None or
 * (v1, v2, open, u, unit): what camkit.evaluate.boxes.wsol_map_ious computes from a raw float32 map
 * m [h * w] in numpy steps (normalize_maps "minmax", unit_map_to_uint8, threshold_levels + np.unique,
 * sweep_pair, box_iou_inclusive, best_iou_per_tau), in one call with the GIL released, so the
 * evaluator's helper threads do not queue for it between a dozen small numpy calls.
 *
 * Every step is the numpy step's arithmetic: lo, hi = min, max (float32); unit = (m - lo) / (hi - lo)
 * in float32 (all zeros when hi - lo is not > 0); u = (uint8)(unit * 255.0f) (float32 product,
 * truncation); k = trunc(tau * max(u)) in double, clipped to [-1, 255]; the IoU of inclusive integer
 * boxes is inter / (area_a + area_b - inter) on exact integers in double, so the quotient is the same
 * correctly rounded double. v1, v2: bytes of float64 [T], the best IoU per tau of V1's and V2's boxes
 * with any GT box. open: [(level, [tau indices])] for V1 ties the kernel leaves to the caller (v1 holds
 * NaN there); u: the uint8 map's bytes when open is not empty (the caller needs it to settle them), else
 * None; unit: the float32 unit map's bytes when want_unit, else None. None instead of the tuple when the
 * map holds a non-finite value, a tau is not finite or |tau| > 1e15, or a GT box has x1 < x0 or y1 < y0:
 * the caller then takes the numpy steps (which give zeros, or raise the error that names the problem). */
static inline double iou_incl(const int32_t *a, const int64_t *b) {
    const double iw = (double)((a[2] < b[2] ? a[2] : b[2]) - (a[0] > b[0] ? a[0] : b[0]) + 1);
    const double ih = (double)((a[3] < b[3] ? a[3] : b[3]) - (a[1] > b[1] ? a[1] : b[1]) + 1);
    const double inter = (iw > 0 ? iw : 0) * (ih > 0 ? ih : 0);
    const double area_a = (double)(a[2] - a[0] + 1) * (double)(a[3] - a[1] + 1);
    const double area_b = (double)(b[2] - b[0] + 1) * (double)(b[3] - b[1] + 1);
    return inter / (area_a + area_b - inter);
}

/* best IoU of rows [begin, end) with any of the n GT boxes; rows must not be empty */
static double best_iou(const Rows *rows, int32_t begin, int32_t end, const int64_t *gt, Py_ssize_t n) {
    double best = -1.0;
    for (int32_t r = begin; r < end; r++)
        for (Py_ssize_t g = 0; g < n; g++) {
            const double v = iou_incl(&rows->data[r].x0, gt + 4 * g);
            if (v > best) best = v;
        }
    return best;
}

static PyObject *wsol_ious(PyObject *self, PyObject *args) {
    Py_buffer mbuf, tbuf, gbuf;
    Py_ssize_t h, w;
    int exact_pass_levels, strategy, want_unit;
    if (!PyArg_ParseTuple(args, "y*nny*y*iip", &mbuf, &h, &w, &tbuf, &gbuf, &exact_pass_levels, &strategy, &want_unit))
        return NULL;
    PyObject *result = NULL, *v1_bytes = NULL, *v2_bytes = NULL, *open_list = NULL, *u_bytes = NULL, *unit_bytes = NULL;
    Rows v1 = {0}, v2 = {0}, undecided = {0};
    int32_t *start1 = NULL, *start2 = NULL, *tau_col = NULL;
    uint8_t *u = NULL;
    float *unit = NULL;
    const Py_ssize_t T = tbuf.len / (Py_ssize_t)sizeof(double), G = gbuf.len / (Py_ssize_t)(4 * sizeof(int64_t));
    const float *m = (const float *)mbuf.buf;
    const double *taus = (const double *)tbuf.buf;
    const int64_t *gt = (const int64_t *)gbuf.buf;
    if (check_strategy(strategy) < 0) goto done;
    if (h < 1 || w < 1 || h >= (1 << 15) || w >= (1 << 15) || mbuf.len != h * w * (Py_ssize_t)sizeof(float) || T < 1 ||
        tbuf.len != T * (Py_ssize_t)sizeof(double) || G < 1 || gbuf.len != G * 4 * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "m must be float32 [h * w] (sides in [1, 32767]), taus float64 [T >= 1], "
                                          "gt_boxes int64 [n >= 1, 4]");
        goto done;
    }
    const Py_ssize_t n = h * w;
    for (Py_ssize_t t = 0; t < T; t++)
        if (!isfinite(taus[t]) || fabs(taus[t]) > 1e15) {
            result = Py_NewRef(Py_None);
            goto done;
        }
    for (Py_ssize_t g = 0; g < G; g++)
        if (gt[4 * g + 2] < gt[4 * g] || gt[4 * g + 3] < gt[4 * g + 1]) {
            result = Py_NewRef(Py_None);
            goto done;
        }
    if (want_unit) {
        if (!(unit_bytes = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(float)))) goto done;
        unit = (float *)PyBytes_AS_STRING(unit_bytes);
    } else if (!(unit = (float *)malloc((size_t)n * sizeof(float)))) {
        PyErr_NoMemory();
        goto done;
    }
    u = (uint8_t *)malloc((size_t)n);
    tau_col = (int32_t *)malloc((size_t)T * sizeof(int32_t));
    double *best1 = NULL, *best2 = NULL;
    if (!(v1_bytes = PyBytes_FromStringAndSize(NULL, T * (Py_ssize_t)sizeof(double))) ||
        !(v2_bytes = PyBytes_FromStringAndSize(NULL, T * (Py_ssize_t)sizeof(double))))
        goto done;
    if (!u || !tau_col) {
        PyErr_NoMemory();
        goto done;
    }
    best1 = (double *)PyBytes_AS_STRING(v1_bytes);
    best2 = (double *)PyBytes_AS_STRING(v2_bytes);
    int32_t col_of_level[257], levels[257];
    uint8_t want[257];
    Py_ssize_t L = 0;
    int rc = 0; /* 0 ok, 1 non-finite map, -1 out of memory */
    Py_BEGIN_ALLOW_THREADS
    float lo = m[0], hi = m[0];
    for (Py_ssize_t i = 0; i < n; i++) {
        const float v = m[i];
        if (!isfinite(v)) {
            rc = 1;
            break;
        }
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    const float span = hi - lo;
    if (rc == 0 && !isfinite(span)) rc = 1; /* numpy's quotients would hold NaN: the caller's steps say so */
    if (rc == 0) {
        uint8_t top = 0;
        if (span > 0) {
            for (Py_ssize_t i = 0; i < n; i++) {
                const float d = m[i] - lo;
                unit[i] = d / span;
            }
        } else {
            memset(unit, 0, (size_t)n * sizeof(float));
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            const float s = unit[i] * 255.0f;
            u[i] = (uint8_t)s;
            top = u[i] > top ? u[i] : top;
        }
        memset(want, 0, sizeof(want));
        for (Py_ssize_t t = 0; t < T; t++) {
            double k = trunc(taus[t] * (double)top);
            k = k < -1 ? -1 : (k > 255 ? 255 : k);
            tau_col[t] = (int32_t)k; /* the level for now; its column below */
            want[tau_col[t] + 1] = 1;
        }
        for (int i = 0; i < 257; i++) {
            col_of_level[i] = -1;
            if (want[i]) {
                col_of_level[i] = (int32_t)L;
                levels[L++] = i - 1;
            }
        }
        for (Py_ssize_t t = 0; t < T; t++) tau_col[t] = col_of_level[tau_col[t] + 1];
        if (sweep_levels(u, (int32_t)h, (int32_t)w, levels, L, col_of_level, want, SWEEP_V1 | SWEEP_V2, exact_pass_levels,
                         strategy, &v1, &undecided, &start1, &v2, &start2) < 0)
            rc = -1;
    }
    if (rc == 0) {
        double lv1[257], lv2[257];
        for (Py_ssize_t j = 0; j < L; j++) {
            lv1[j] = start1[j + 1] > start1[j] ? best_iou(&v1, start1[j], start1[j + 1], gt, G) : NAN;
            lv2[j] = start2[j + 1] > start2[j] ? best_iou(&v2, start2[j], start2[j + 1], gt, G) : NAN;
        }
        for (Py_ssize_t k = 0; k < undecided.len; k++) lv1[undecided.data[k].col] = NAN;
        for (Py_ssize_t t = 0; t < T; t++) {
            best1[t] = lv1[tau_col[t]];
            best2[t] = lv2[tau_col[t]];
        }
    }
    Py_END_ALLOW_THREADS
    if (rc == 1) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (rc < 0) {
        PyErr_NoMemory();
        goto done;
    }
    /* every level has a row in both (an empty set gets the box 0, 0, 0, 0): a level without one is a kernel bug */
    for (Py_ssize_t j = 0; j < L; j++)
        if (start1[j + 1] != start1[j] + 1 || start2[j + 1] <= start2[j]) {
            PyErr_SetString(PyExc_RuntimeError, "sweep kernel: a level without its V1 row or any V2 row");
            goto done;
        }
    if (!(open_list = PyList_New(0))) goto done;
    for (Py_ssize_t k = 0; k < undecided.len; k++) {
        const int32_t col = undecided.data[k].col;
        PyObject *idx = PyList_New(0), *item = NULL;
        if (!idx) goto done;
        for (Py_ssize_t t = 0; t < T; t++) {
            if (tau_col[t] != col) continue;
            PyObject *i = PyLong_FromSsize_t(t);
            if (!i || PyList_Append(idx, i) < 0) {
                Py_XDECREF(i);
                Py_DECREF(idx);
                goto done;
            }
            Py_DECREF(i);
        }
        item = Py_BuildValue("(iN)", levels[col], idx);
        if (!item || PyList_Append(open_list, item) < 0) {
            Py_XDECREF(item);
            goto done;
        }
        Py_DECREF(item);
    }
    if (undecided.len) {
        if (!(u_bytes = PyBytes_FromStringAndSize((const char *)u, n))) goto done;
    } else {
        u_bytes = Py_NewRef(Py_None);
    }
    result = PyTuple_Pack(5, v1_bytes, v2_bytes, open_list, u_bytes, unit_bytes ? unit_bytes : Py_None);
done:
    Py_XDECREF(v1_bytes);
    Py_XDECREF(v2_bytes);
    Py_XDECREF(open_list);
    Py_XDECREF(u_bytes);
    if (unit_bytes) Py_DECREF(unit_bytes);
    else free(unit);
    free(u);
    free(tau_col);
    free(v1.data);
    free(v2.data);
    free(undecided.data);
    free(start1);
    free(start2);
    PyBuffer_Release(&mbuf);
    PyBuffer_Release(&tbuf);
    PyBuffer_Release(&gbuf);
    return result;
}

/* ---------------------------------------------------------------- the CVPR16 box

 * Zhou et al.'s rule on one float map m (float32 or float64, raster order): keep the pixels with
 * relu(m) / max(m) >= tau (in double, as numpy computes it after converting to float64), label the
 * 8-connected components, and box the one with the most pixels; ties go to the component holding the
 * first maximum in raster order, else to the one whose first pixel comes first in raster order.
 *
 * The kept set is {v >= t}: the correctly rounded quotient v / top is monotone in v, so the decision
 * is a threshold on v itself, and t, the least value kept, is found exactly by bisecting the bit
 * patterns of the positive values up to top (at tau = 0 every value is kept). Each row is compared
 * with t into a bit mask whose runs of kept pixels are read with count-trailing-zeros. A run joins
 * every run of the row above that overlaps [x0 - 1, x1 + 1] (8-connectivity), and each union-find root
 * carries its component's pixel count, box and first pixel, so no per-pixel label is stored: the work
 * space is two rows of runs and one entry per run that starts a component (on the stack for small
 * maps). */

typedef struct {
    int32_t parent, count, x0, y0, x1, y1, first;
} Cvpr16Comp;

static inline int32_t comp_root(Cvpr16Comp *c, int32_t a) {
    while (c[a].parent != a) {
        c[a].parent = c[c[a].parent].parent;
        a = c[a].parent;
    }
    return a;
}

/* Joins the components of roots a != b under the one made first (the earlier first pixel: components
 * are made in raster order); returns the new root. */
static inline int32_t comp_join(Cvpr16Comp *c, int32_t a, int32_t b) {
    if (b < a) {
        const int32_t t = a;
        a = b;
        b = t;
    }
    Cvpr16Comp *r = c + a;
    const Cvpr16Comp *s = c + b;
    c[b].parent = a;
    r->count += s->count;
    if (s->x0 < r->x0) r->x0 = s->x0;
    if (s->x1 > r->x1) r->x1 = s->x1;
    if (s->y1 > r->y1) r->y1 = s->y1;
    return a;
}

#if defined(__GNUC__) || defined(__clang__)
#define CAMKIT_CTZ64(v) __builtin_ctzll(v)
#else
static inline int CAMKIT_CTZ64(uint64_t v) {
    int k = 0;
    while (!(v & 1)) { v >>= 1; k++; }
    return k;
}
#endif

/* first set bit at or after pos in the row mask b[nw], -1 when none */
static inline int32_t mask_next_set(const uint64_t *b, int32_t nw, int32_t pos) {
    int32_t i = pos >> 6;
    if (i >= nw) return -1;
    uint64_t v = b[i] & (~(uint64_t)0 << (pos & 63));
    while (!v) {
        if (++i >= nw) return -1;
        v = b[i];
    }
    return (i << 6) + CAMKIT_CTZ64(v);
}

/* first clear bit at or after pos (the bits past the row's end are clear; nw * 64 when the row is full) */
static inline int32_t mask_next_clear(const uint64_t *b, int32_t nw, int32_t pos) {
    int32_t i = pos >> 6;
    if (i >= nw) return nw << 6;
    uint64_t v = ~b[i] & (~(uint64_t)0 << (pos & 63));
    while (!v) {
        if (++i >= nw) return nw << 6;
        v = ~b[i];
    }
    return (i << 6) + CAMKIT_CTZ64(v);
}

/* bit x of b = (r[x] >= t), for x < W; b holds (W + 63) / 64 words */
static void row_mask_f(const float *r, int32_t W, float t, uint64_t *b) {
    memset(b, 0, (size_t)((W + 63) >> 6) * sizeof(uint64_t));
    int32_t x = 0;
#if defined(__SSE2__) && !defined(CAMKIT_NO_SIMD)
    const __m128 tv = _mm_set1_ps(t);
    for (; x + 16 <= W; x += 16) {
        const __m128i k0 = _mm_castps_si128(_mm_cmpge_ps(_mm_loadu_ps(r + x), tv));
        const __m128i k1 = _mm_castps_si128(_mm_cmpge_ps(_mm_loadu_ps(r + x + 4), tv));
        const __m128i k2 = _mm_castps_si128(_mm_cmpge_ps(_mm_loadu_ps(r + x + 8), tv));
        const __m128i k3 = _mm_castps_si128(_mm_cmpge_ps(_mm_loadu_ps(r + x + 12), tv));
        const int bits = _mm_movemask_epi8(_mm_packs_epi16(_mm_packs_epi32(k0, k1), _mm_packs_epi32(k2, k3)));
        b[x >> 6] |= (uint64_t)(uint32_t)bits << (x & 63);
    }
#endif
    for (; x < W; x++) b[x >> 6] |= (uint64_t)(r[x] >= t) << (x & 63);
}

static void row_mask_d(const double *r, int32_t W, double t, uint64_t *b) {
    memset(b, 0, (size_t)((W + 63) >> 6) * sizeof(uint64_t));
    int32_t x = 0;
#if defined(__SSE2__) && !defined(CAMKIT_NO_SIMD)
    const __m128d tv = _mm_set1_pd(t);
    for (; x + 8 <= W; x += 8) {
        const int bits = _mm_movemask_pd(_mm_cmpge_pd(_mm_loadu_pd(r + x), tv)) |
                         _mm_movemask_pd(_mm_cmpge_pd(_mm_loadu_pd(r + x + 2), tv)) << 2 |
                         _mm_movemask_pd(_mm_cmpge_pd(_mm_loadu_pd(r + x + 4), tv)) << 4 |
                         _mm_movemask_pd(_mm_cmpge_pd(_mm_loadu_pd(r + x + 6), tv)) << 6;
        b[x >> 6] |= (uint64_t)(uint32_t)bits << (x & 63);
    }
#endif
    for (; x < W; x++) b[x >> 6] |= (uint64_t)(r[x] >= t) << (x & 63);
}

/* the maximum of f[n]; *nan set when f holds NaN */
static float max_f(const float *f, int64_t n, int *nan) {
    int64_t p = 0;
    float mx = -INFINITY;
    int bad = 0;
#if defined(__SSE2__) && !defined(CAMKIT_NO_SIMD)
    __m128 m0 = _mm_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0, u = _mm_setzero_ps();
    for (; p + 16 <= n; p += 16) {
        const __m128 a = _mm_loadu_ps(f + p), b = _mm_loadu_ps(f + p + 4);
        const __m128 c = _mm_loadu_ps(f + p + 8), d = _mm_loadu_ps(f + p + 12);
        m0 = _mm_max_ps(m0, a);
        m1 = _mm_max_ps(m1, b);
        m2 = _mm_max_ps(m2, c);
        m3 = _mm_max_ps(m3, d);
        u = _mm_or_ps(u, _mm_or_ps(_mm_cmpunord_ps(a, b), _mm_cmpunord_ps(c, d)));
    }
    m0 = _mm_max_ps(_mm_max_ps(m0, m1), _mm_max_ps(m2, m3));
    float lanes[4];
    _mm_storeu_ps(lanes, m0);
    for (int k = 0; k < 4; k++) mx = lanes[k] > mx ? lanes[k] : mx;
    bad = _mm_movemask_ps(u) != 0;
#endif
    for (; p < n; p++) {
        bad |= f[p] != f[p];
        mx = f[p] > mx ? f[p] : mx;
    }
    *nan = bad;
    return mx;
}

static double max_d(const double *d, int64_t n, int *nan) {
    int64_t p = 0;
    double mx = -INFINITY;
    int bad = 0;
#if defined(__SSE2__) && !defined(CAMKIT_NO_SIMD)
    __m128d m0 = _mm_set1_pd(-INFINITY), m1 = m0, m2 = m0, m3 = m0, u = _mm_setzero_pd();
    for (; p + 8 <= n; p += 8) {
        const __m128d a = _mm_loadu_pd(d + p), b = _mm_loadu_pd(d + p + 2);
        const __m128d c = _mm_loadu_pd(d + p + 4), e = _mm_loadu_pd(d + p + 6);
        m0 = _mm_max_pd(m0, a);
        m1 = _mm_max_pd(m1, b);
        m2 = _mm_max_pd(m2, c);
        m3 = _mm_max_pd(m3, e);
        u = _mm_or_pd(u, _mm_or_pd(_mm_cmpunord_pd(a, b), _mm_cmpunord_pd(c, e)));
    }
    m0 = _mm_max_pd(_mm_max_pd(m0, m1), _mm_max_pd(m2, m3));
    double lanes[2];
    _mm_storeu_pd(lanes, m0);
    for (int k = 0; k < 2; k++) mx = lanes[k] > mx ? lanes[k] : mx;
    bad = _mm_movemask_pd(u) != 0;
#endif
    for (; p < n; p++) {
        bad |= d[p] != d[p];
        mx = d[p] > mx ? d[p] : mx;
    }
    *nan = bad;
    return mx;
}

/* the first p with f[p] == v (v occurs in f) */
static int64_t first_equal_f(const float *f, int64_t n, float v) {
    int64_t p = 0;
#if defined(__SSE2__) && !defined(CAMKIT_NO_SIMD)
    const __m128 vv = _mm_set1_ps(v);
    for (; p + 8 <= n; p += 8) {
        const int bits = _mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(f + p), vv)) |
                         _mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(f + p + 4), vv)) << 4;
        if (bits) return p + CAMKIT_CTZ64((uint64_t)bits);
    }
#endif
    while (f[p] != v) p++;
    return p;
}

static int64_t first_equal_d(const double *d, int64_t n, double v) {
    int64_t p = 0;
#if defined(__SSE2__) && !defined(CAMKIT_NO_SIMD)
    const __m128d vv = _mm_set1_pd(v);
    for (; p + 4 <= n; p += 4) {
        const int bits = _mm_movemask_pd(_mm_cmpeq_pd(_mm_loadu_pd(d + p), vv)) |
                         _mm_movemask_pd(_mm_cmpeq_pd(_mm_loadu_pd(d + p + 2), vv)) << 2;
        if (bits) return p + CAMKIT_CTZ64((uint64_t)bits);
    }
#endif
    while (d[p] != v) p++;
    return p;
}

/* The least float32 v > 0 with (double)v / top >= tau, for a finite top > 0 and tau in (0, 1]: bisection
 * over the bit patterns, which order positive floats by value; +0 is not kept (its ratio is 0 < tau),
 * top is (its ratio is 1). */
static float least_kept_f(float top, double tau) {
    uint32_t lo = 0, hi;
    memcpy(&hi, &top, sizeof hi);
    while (hi - lo > 1) {
        const uint32_t mid = lo + (hi - lo) / 2;
        float v;
        memcpy(&v, &mid, sizeof v);
        if ((double)v / (double)top >= tau) hi = mid;
        else lo = mid;
    }
    float t;
    memcpy(&t, &hi, sizeof t);
    return t;
}

static double least_kept_d(double top, double tau) {
    uint64_t lo = 0, hi;
    memcpy(&hi, &top, sizeof hi);
    while (hi - lo > 1) {
        const uint64_t mid = lo + (hi - lo) / 2;
        double v;
        memcpy(&v, &mid, sizeof v);
        if (v / top >= tau) hi = mid;
        else lo = mid;
    }
    double t;
    memcpy(&t, &hi, sizeof t);
    return t;
}

#define CVPR16_STACK_COMPS 256
#define CVPR16_STACK_WORDS 1024

/* Returns 0 with the inclusive box, 1 when m holds NaN, 2 when max(m) <= 0, 3 when max(m) is +inf (the
 * ratio is undefined), -1 when out of memory. tau is in [0, 1]. */
static int cvpr16_impl(const void *data, int is_double, int32_t H, int32_t W, double tau, int32_t box[4]) {
    const int64_t n = (int64_t)H * W;
    const float *f = (const float *)data;
    const double *d = (const double *)data;
    int nan;
    const double top = is_double ? max_d(d, n, &nan) : (double)max_f(f, n, &nan);
    if (nan) return 1;
    if (!(top > 0)) return 2;
    if (top == INFINITY) return 3;
    const int64_t peak = is_double ? first_equal_d(d, n, top) : first_equal_f(f, n, (float)top);
    const int32_t peak_y = (int32_t)(peak / W), peak_x = (int32_t)(peak % W);
    double td = -INFINITY;
    float tf = -INFINITY;
    if (tau > 0) {
        if (is_double) td = least_kept_d(top, tau);
        else tf = least_kept_f((float)top, tau);
    }

    /* work space: the row mask, then two rows of runs (x0, x1, component), at most (W + 1) / 2 runs a row */
    const int32_t nw = (W + 63) >> 6, max_runs = (W + 1) / 2;
    const size_t words = (size_t)nw + ((size_t)6 * max_runs * sizeof(int32_t) + 7) / 8;
    uint64_t stack_words[CVPR16_STACK_WORDS];
    uint64_t *heap_words = NULL;
    uint64_t *mask = stack_words;
    Cvpr16Comp stack_comps[CVPR16_STACK_COMPS];
    Cvpr16Comp *c = stack_comps;
    int32_t n_comps = 0, cap = CVPR16_STACK_COMPS;
    const int64_t max_comps = (int64_t)H * max_runs;
    int rc = -1;
    if (words > CVPR16_STACK_WORDS) {
        heap_words = (uint64_t *)malloc(words * sizeof(uint64_t));
        if (!heap_words) return -1;
        mask = heap_words;
    }
    int32_t *prev = (int32_t *)(mask + nw), *cur = prev + 3 * max_runs;
    int32_t n_prev = 0, peak_comp = -1;
    for (int32_t y = 0; y < H; y++) {
        if (is_double) row_mask_d(d + (int64_t)y * W, W, td, mask);
        else row_mask_f(f + (int64_t)y * W, W, tf, mask);
        int32_t n_cur = 0, j = 0;
        for (int32_t a = mask_next_set(mask, nw, 0); a >= 0;) {
            const int32_t end = mask_next_clear(mask, nw, a + 1), b = end - 1;
            /* the runs above that touch [a - 1, b + 1]; the last of them may touch the next run too */
            while (j < n_prev && prev[3 * j + 1] < a - 1) j++;
            int32_t r = -1;
            for (int32_t k = j; k < n_prev && prev[3 * k] <= b + 1; k++) {
                const int32_t q = comp_root(c, prev[3 * k + 2]);
                r = r < 0 ? q : (q == r ? r : comp_join(c, r, q));
            }
            if (r < 0) {
                if (n_comps == cap) {
                    const int64_t want = (int64_t)cap * 2 < max_comps ? (int64_t)cap * 2 : max_comps;
                    Cvpr16Comp *grown = (Cvpr16Comp *)(c == stack_comps ? malloc((size_t)want * sizeof *c)
                                                                         : realloc(c, (size_t)want * sizeof *c));
                    if (!grown) goto done;
                    if (c == stack_comps) memcpy(grown, stack_comps, sizeof stack_comps);
                    c = grown;
                    cap = (int32_t)want;
                }
                r = n_comps++;
                c[r] = (Cvpr16Comp){r, 0, a, y, b, y, y * W + a};
            } else {
                if (a < c[r].x0) c[r].x0 = a;
                if (b > c[r].x1) c[r].x1 = b;
                c[r].y1 = y;
            }
            c[r].count += end - a;
            if (y == peak_y && a <= peak_x && peak_x <= b) peak_comp = r;
            cur[3 * n_cur] = a;
            cur[3 * n_cur + 1] = b;
            cur[3 * n_cur + 2] = r;
            n_cur++;
            a = mask_next_set(mask, nw, end + 1);
        }
        int32_t *t = prev;
        prev = cur;
        cur = t;
        n_prev = n_cur;
    }
    /* the maximum is kept (its ratio is 1 >= tau), so peak_comp is set and some component exists */
    const int32_t peak_root = comp_root(c, peak_comp);
    int32_t best = -1;
    for (int32_t i = 0; i < n_comps; i++) {
        if (c[i].parent != i) continue;
        if (best < 0 || c[i].count > c[best].count) best = i;
        else if (c[i].count == c[best].count) {
            /* tie: the peak's component, else the earlier first pixel */
            if (i == peak_root || (best != peak_root && c[i].first < c[best].first)) best = i;
        }
    }
    box[0] = c[best].x0;
    box[1] = c[best].y0;
    box[2] = c[best].x1;
    box[3] = c[best].y1;
    rc = 0;
done:
    free(heap_words);
    if (c != stack_comps) free(c);
    return rc;
}

/* cvpr16(m, h, w, is_double, tau) -> (status, x0, y0, x1, y1): status 0 box, 1 NaN in m, 2 max(m) <= 0,
 * 3 max(m) is +inf. */
static PyObject *cvpr16(PyObject *self, PyObject *args) {
    Py_buffer buf;
    Py_ssize_t h, w;
    int is_double;
    double tau;
    if (!PyArg_ParseTuple(args, "y*nnpd", &buf, &h, &w, &is_double, &tau)) return NULL;
    const Py_ssize_t item = is_double ? 8 : 4;
    if (h < 1 || w < 1 || h > INT32_MAX / w || buf.len != h * w * item) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "m must be a float32 or float64 map of h * w values (h * w < 2**31)");
        return NULL;
    }
    if (!(tau >= 0 && tau <= 1)) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "tau must be in [0, 1]");
        return NULL;
    }
    int32_t box[4] = {0, 0, 0, 0};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cvpr16_impl(buf.buf, is_double, (int32_t)h, (int32_t)w, tau, box);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    if (rc < 0) return PyErr_NoMemory();
    return Py_BuildValue("(iiiii)", rc, box[0], box[1], box[2], box[3]);
}

/* sweep_strategy(u, h, w, levels) -> 1 (per level) or 2 (sorted pixels): the strategy sweep() and
 * sweep_pair() take for strategy 0 (auto) on these arguments. */
static PyObject *sweep_strategy(PyObject *self, PyObject *args) {
    Py_buffer ubuf, lbuf;
    Py_ssize_t h, w, L;
    int32_t col_of_level[257];
    uint8_t want[257];
    if (!PyArg_ParseTuple(args, "y*nny*", &ubuf, &h, &w, &lbuf)) return NULL;
    PyObject *result = NULL;
    if (parse_levels(h, w, ubuf.len, &lbuf, col_of_level, want, &L) == 0)
        result = PyLong_FromLong(choose_strategy((const uint8_t *)ubuf.buf, (int32_t)h, (int32_t)w, L, want));
    PyBuffer_Release(&ubuf);
    PyBuffer_Release(&lbuf);
    return result;
}

static PyMethodDef methods[] = {
    {"sweep", sweep, METH_VARARGS,
     "sweep(u, h, w, levels, multi_contour, exact_pass_levels[, strategy]) -> (boxes, level_start, undecided), bytes of int32"},
    {"sweep_pair", sweep_pair, METH_VARARGS,
     "sweep_pair(u, h, w, levels, exact_pass_levels[, strategy]) -> (boxes_v1, level_start_v1, undecided_v1, boxes_v2, level_start_v2)"},
    {"sweep_strategy", sweep_strategy, METH_VARARGS,
     "sweep_strategy(u, h, w, levels) -> 1 (per level) or 2 (sorted pixels), the kernel's choice for strategy 0"},
    {"wsol_ious", wsol_ious, METH_VARARGS,
     "wsol_ious(m, h, w, taus, gt_boxes, exact_pass_levels, strategy, want_unit) -> None or (v1, v2, open, u, unit)"},
    {"cvpr16", cvpr16, METH_VARARGS, "cvpr16(m, h, w, is_double, tau) -> (status, x0, y0, x1, y1); status 1: NaN, 2: max <= 0, 3: max is +inf"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_components",
                                    "wsolevaluation boxes for all threshold levels at once (camkit.localize.sweep).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__components(void) { return PyModule_Create(&module); }
