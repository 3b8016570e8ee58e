/* wsolevaluation's boxes for a whole grid of threshold levels, from union-find passes over a uint8 map.
 *
 * camkit.localize.sweep documents the geometry; in short, at level k the reference's findContours
 * (RETR_TREE) sees one outer contour per 8-connected component of {u > k}, box
 * (x0, y0, x1 + 1, y1 + 1), and one hole contour per bounded 4-connected component of
 * {u <= k} = {255 - u > 254 - k}, box (x0 - 1, y0 - 1, x1 + 2, y1 + 2), right/bottom clipped to
 * W - 1 / H - 1. V1 wants the contour of largest contourArea: the outer contour of a component
 * encloses its holes (and whatever lies in them), so its area is the 2x2-cell area of the component
 * with its holes filled, i.e. of a component of {e > k}, e = u with every bounded basin filled.
 *
 * One pass per kind: pixels enter the set in decreasing value (counting sort), a union-find over
 * components (pixels carry only a node label; nodes are made at regional maxima) keeps each
 * component's box and cell area, and at each wanted level the current roots are read out.
 *
 * The extension is optional (setup.py builds it when a C compiler is present); sweep.py has a
 * pure-numpy path with the same results. Buffers come through the buffer protocol, so nothing but
 * Python.h is needed to build. Maps are C-contiguous uint8 [h * w] in raster order.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
    int32_t parent, size, x0, y0, x1, y1, area2, prev, next;
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

typedef struct {
    int32_t *label; /* node of each pixel in the set, -1 outside; grid padded by one pixel */
    uint8_t *cells; /* corners in the set of each 2x2 cell (padded the same way), or NULL */
    Node *nodes;
    int32_t wp, head, n_nodes;
} Forest;

/* Add the pixels of one level (packed y << 16 | x). conn and area are constants at each call site,
 * so the neighbour loops unroll. */
static inline __attribute__((always_inline)) void add_pixels(Forest *s, const int32_t *begin, const int32_t *end,
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
        /* the three rows x-1..x+2 as int32x4; lanes outside the neighbourhood are forced to -1 */
        const __m128i none = _mm_set1_epi32(-1);
        const __m128i off_row = conn == 8 ? _mm_set_epi32(-1, 0, 0, 0) : _mm_set_epi32(-1, -1, 0, -1);
        const __m128i a = _mm_or_si128(_mm_loadu_si128((const __m128i *)(label + P - wp - 1)), off_row);
        const __m128i b = _mm_or_si128(_mm_loadu_si128((const __m128i *)(label + P - 1)), _mm_set_epi32(-1, 0, 0, 0));
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
        }
        if (r < 0) { /* a regional maximum: a new component */
            r = s->n_nodes++;
            nodes[r] = (Node){r, 0, x, y, x, y, 0, -1, s->head};
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
            /* the four cells with p as a corner; a cell with >= 3 corners in the set has them all
             * 8-connected, i.e. in p's component */
            uint8_t *c = s->cells + y * wc + x;
            nr->area2 += (++c[0] >= 3) + (++c[1] >= 3) + (++c[wc] >= 3) + (++c[wc + 1] >= 3);
        }
    }
}

/* What a pass does with the components at a wanted level. */
enum { EMIT_OUTER, EMIT_HOLES, EMIT_LARGEST };

typedef struct {
    int mode;
    int32_t w, h;
    const int32_t *col_of_level; /* [257]: column of level k at [k + 1] (levels of u), -1 if unwanted */
    const int64_t *above_u, *above_e; /* [257]: pixels of u / e above level k at [k + 1] (EMIT_LARGEST) */
    Rows *rows;
    Rows *undecided; /* EMIT_LARGEST: levels whose winner is a tie, left to the caller */
} Emit;

/* Read out the components of the set {v > k}. Returns -1 when out of memory. */
static int emit_level(const Emit *e, const Forest *s, int k) {
    const int32_t W = e->w, H = e->h;
    if (e->mode == EMIT_OUTER) {
        const int32_t col = e->col_of_level[k + 1];
        for (int32_t r = s->head; r >= 0; r = s->nodes[r].next) {
            const Node *n = &s->nodes[r];
            const int32_t x1 = n->x1 + 1 < W - 1 ? n->x1 + 1 : W - 1, y1 = n->y1 + 1 < H - 1 ? n->y1 + 1 : H - 1;
            if (rows_push(e->rows, col, n->x0, n->y0, x1, y1) < 0) return -1;
        }
    } else if (e->mode == EMIT_HOLES) {
        /* the set is {255 - u > k}, i.e. {u <= 254 - k}; bounded components are holes */
        const int32_t col = e->col_of_level[254 - k + 1];
        for (int32_t r = s->head; r >= 0; r = s->nodes[r].next) {
            const Node *n = &s->nodes[r];
            if (n->x0 == 0 || n->y0 == 0 || n->x1 == W - 1 || n->y1 == H - 1) continue;
            const int32_t x1 = n->x1 + 2 < W - 1 ? n->x1 + 2 : W - 1, y1 = n->y1 + 2 < H - 1 ? n->y1 + 2 : H - 1;
            if (rows_push(e->rows, col, n->x0 - 1, n->y0 - 1, x1, y1) < 0) return -1;
        }
    } else {
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
    }
    return 0;
}

/* One pass over v: the set {v > k} grows from k = 255 down to -1; at each k with want[k + 1] the
 * components are read out. Returns -1 with a Python error set on failure. */
static int run_pass(const uint8_t *v, int32_t H, int32_t W, int conn, int area, const uint8_t *want, const Emit *e) {
    const int32_t n = W * H, wp = W + 2, wc = W + 1;
    int rc = -1;
    /* + 4: the vector loads of the last row read up to two labels past the padded grid */
    const size_t n_labels = (size_t)(H + 2) * (size_t)wp + 4;
    int32_t *label = (int32_t *)malloc(n_labels * sizeof(int32_t));
    int32_t *order = (int32_t *)malloc((size_t)n * sizeof(int32_t));
    Node *nodes = (Node *)malloc((size_t)n * sizeof(Node)); /* pages are touched only as nodes are made */
    /* padding cells keep at most two corners in the set, so they never count */
    uint8_t *cells = area ? (uint8_t *)calloc((size_t)(H + 1) * (size_t)wc, 1) : NULL;
    if (!label || !order || !nodes || (area && !cells)) {
        PyErr_NoMemory();
        goto done;
    }
    memset(label, 0xff, n_labels * sizeof(int32_t));
    int32_t start[257] = {0};
    for (int32_t p = 0; p < n; p++) start[v[p] + 1]++;
    for (int k = 0; k < 256; k++) start[k + 1] += start[k];
    {
        int32_t fill[256];
        memcpy(fill, start, sizeof(fill));
        for (int32_t y = 0, p = 0; y < H; y++)
            for (int32_t x = 0; x < W; x++, p++) order[fill[v[p]]++] = (y << 16) | x;
    }
    Forest s = {label, cells, nodes, wp, -1, 0};
    for (int k = 255; k >= -1; k--) {
        if (want[k + 1] && emit_level(e, &s, k) < 0) {
            PyErr_NoMemory();
            goto done;
        }
        if (k < 0) break;
        if (conn == 8 && area) add_pixels(&s, order + start[k], order + start[k + 1], 8, 1);
        else if (conn == 8) add_pixels(&s, order + start[k], order + start[k + 1], 8, 0);
        else add_pixels(&s, order + start[k], order + start[k + 1], 4, 0);
    }
    rc = 0;
done:
    free(label);
    free(order);
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
    if (!next || !e || !reached || !pu) {
        PyErr_NoMemory();
        goto done;
    }
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

static int compare_rows(const void *a, const void *b) {
    const int32_t *p = (const int32_t *)a, *q = (const int32_t *)b;
    for (int i = 0; i < 5; i++)
        if (p[i] != q[i]) return p[i] < q[i] ? -1 : 1;
    return 0;
}

/* sweep(u, h, w, levels, multi_contour) -> (boxes, level_start, undecided), all bytes of int32:
 * boxes [n, 4] (x0, y0, x1, y1 as the reference, sorted within each level), level_start [L + 1]
 * (boxes of levels[j] are rows level_start[j]:level_start[j + 1]), undecided: columns whose V1 box
 * is a tie for the caller to settle (their row holds 0, 0, 0, 0). levels: int32 [L], ascending,
 * distinct, in [-1, 255]. A level without any pixel above it gets the box 0, 0, 0, 0. */
static PyObject *sweep(PyObject *self, PyObject *args) {
    Py_buffer ubuf, lbuf;
    Py_ssize_t h, w;
    int multi;
    if (!PyArg_ParseTuple(args, "y*nny*p", &ubuf, &h, &w, &lbuf, &multi)) return NULL;
    PyObject *result = NULL;
    Rows rows = {0}, undecided = {0};
    uint8_t *aux = NULL;
    int32_t *start = NULL;
    if (h < 1 || w < 1 || h >= (1 << 15) || w >= (1 << 15) || ubuf.len != h * w) {
        PyErr_SetString(PyExc_ValueError, "u must be a uint8 map of h * w values, sides in [1, 32767]");
        goto done;
    }
    const Py_ssize_t L = lbuf.len / (Py_ssize_t)sizeof(int32_t);
    const int32_t *levels = (const int32_t *)lbuf.buf;
    int32_t col_of_level[257];
    uint8_t want[257] = {0}, want_inv[257] = {0};
    for (int i = 0; i < 257; i++) col_of_level[i] = -1;
    for (Py_ssize_t j = 0; j < L; j++) {
        if (levels[j] < -1 || levels[j] > 255 || (j && levels[j] <= levels[j - 1])) {
            PyErr_SetString(PyExc_ValueError, "levels must be ascending, distinct, in [-1, 255]");
            goto done;
        }
        col_of_level[levels[j] + 1] = (int32_t)j;
        want[levels[j] + 1] = 1;
        want_inv[254 - levels[j] + 1] = 1;
    }
    const uint8_t *u = (const uint8_t *)ubuf.buf;
    const int32_t H = (int32_t)h, W = (int32_t)w, n = H * W;
    aux = (uint8_t *)malloc((size_t)n);
    if (!aux) {
        PyErr_NoMemory();
        goto done;
    }
    Emit e = {EMIT_OUTER, W, H, col_of_level, NULL, NULL, &rows, &undecided};
    if (multi) {
        if (run_pass(u, H, W, 8, 0, want, &e) < 0) goto done;
        for (int32_t p = 0; p < n; p++) aux[p] = (uint8_t)(255 - u[p]);
        e.mode = EMIT_HOLES;
        if (run_pass(aux, H, W, 4, 0, want_inv, &e) < 0) goto done;
    } else {
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
        e.mode = EMIT_LARGEST;
        e.above_u = above_u;
        e.above_e = above_e;
        if (run_pass(aux, H, W, 8, 1, want, &e) < 0) goto done;
    }
    /* group by level column, boxes sorted within a level; a level without contours gets 0,0,0,0 */
    start = (int32_t *)calloc((size_t)L + 1, sizeof(int32_t));
    if (!start) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < rows.len; i++) start[rows.data[i].col + 1]++;
    for (Py_ssize_t j = 0; j < L; j++)
        if (start[j + 1] == 0 && rows_push(&rows, (int32_t)j, 0, 0, 0, 0) < 0) {
            PyErr_NoMemory();
            goto done;
        }
    qsort(rows.data, (size_t)rows.len, sizeof(Row), compare_rows);
    memset(start, 0, ((size_t)L + 1) * sizeof(int32_t));
    for (Py_ssize_t i = 0; i < rows.len; i++) start[rows.data[i].col + 1]++;
    for (Py_ssize_t j = 0; j < L; j++) start[j + 1] += start[j];
    PyObject *boxes = PyBytes_FromStringAndSize(NULL, rows.len * 4 * (Py_ssize_t)sizeof(int32_t));
    if (boxes) {
        int32_t *b = (int32_t *)PyBytes_AS_STRING(boxes);
        for (Py_ssize_t i = 0; i < rows.len; i++) memcpy(b + 4 * i, &rows.data[i].x0, 4 * sizeof(int32_t));
    }
    PyObject *bounds = PyBytes_FromStringAndSize((const char *)start, (L + 1) * (Py_ssize_t)sizeof(int32_t));
    PyObject *open_cols = PyBytes_FromStringAndSize(NULL, undecided.len * (Py_ssize_t)sizeof(int32_t));
    if (open_cols)
        for (Py_ssize_t i = 0; i < undecided.len; i++) ((int32_t *)PyBytes_AS_STRING(open_cols))[i] = undecided.data[i].col;
    if (boxes && bounds && open_cols) result = PyTuple_Pack(3, boxes, bounds, open_cols);
    Py_XDECREF(boxes);
    Py_XDECREF(bounds);
    Py_XDECREF(open_cols);
done:
    free(rows.data);
    free(undecided.data);
    free(aux);
    free(start);
    PyBuffer_Release(&ubuf);
    PyBuffer_Release(&lbuf);
    return result;
}

static PyMethodDef methods[] = {
    {"sweep", sweep, METH_VARARGS,
     "sweep(u, h, w, levels, multi_contour) -> (boxes, level_start, undecided), bytes of int32"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_components",
                                    "wsolevaluation boxes for all threshold levels at once (camkit.localize.sweep).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__components(void) { return PyModule_Create(&module); }
