/* Pillow's uint8 resampling (Image.resize with BILINEAR or BICUBIC) of RGB images, bit for bit.
 *
 * Pillow (src/libImaging/Resample.c) resizes in two separable passes through a uint8 image in between.
 * Each output value is clip8((1 << 21) + sum_t pixel_t * k_t), where the k_t are the filter weights
 * normalised to sum 1 and rounded to 22 fractional bits, and clip8(v) = clamp(v >> 22, 0, 255). A pass
 * whose size is unchanged is skipped; with the horizontal pass first, it filters only the source rows
 * the vertical pass reads. The weights come from doubles computed in Pillow's order of operations; from
 * there everything is integer arithmetic whose sums fit in int32, so any order of summation gives the
 * same bits. That freedom is what the vector paths use:
 *
 * - horizontal (AVX2): per output pixel, four taps per step: 16 source bytes broadcast to both 128-bit
 *   lanes, vpshufb lays out (R_t, R_t+1, G_t, G_t+1, B_t, B_t+1, 0, 0) as int16 in lane 0 (taps t, t+1)
 *   and lane 1 (taps t+2, t+3), and vpmaddwd multiplies them by the coefficients. vpmaddwd takes int16
 *   factors, so each coefficient k (|k| < 2^23) is split as k = 256 * hi + lo with lo in [0, 255]: two
 *   vpmaddwd per step, combined as (sum_hi << 8) + sum_lo, which is exactly sum(pixel * k). Taps past a
 *   pixel's own count carry coefficient 0, so the window may run over the row's end (into the next row,
 *   or into a zero-padded copy for the rows at the end of the buffer). Two rows share each coefficient
 *   load.
 * - vertical (AVX2): across the contiguous row, two source rows at a time: their bytes interleaved as
 *   int16 pairs meet the broadcast pair (k_t, k_t+1) in vpmaddwd, the coefficients split the same way.
 * - scalar: the same sums written plainly (any CPU; -O3 may vectorise them).
 *
 * The source is RGB (3 bytes a pixel: a C-contiguous uint8 [h, w, 3] through the buffer protocol) or RGBX
 * (4 bytes a pixel: a Pillow image's own memory, read without a copy through the Arrow C data interface,
 * https://arrow.apache.org/docs/format/CDataInterface.html, which Pillow exports as a fixed-size list of
 * 4 uint8). The output is RGB [out_h, out_w, 3], allocated by the caller. Only Python.h is needed.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(CAMKIT_NO_SIMD)
#define PILRESAMPLE_AVX2 1
#include <immintrin.h>
#endif

#define PRECISION_BITS 22
#define ROUND_HALF (1 << (PRECISION_BITS - 1))

enum { FILTER_BILINEAR = 0, FILTER_BICUBIC = 1 };

/* Which pass runs first when both are needed. Pillow up to 12 always filters horizontally first;
 * Pillow 13 filters vertically first when the height shrinks by more than twice as many pixels as the
 * width does. The two orders round the intermediate image differently. */
enum { ORDER_HORIZONTAL_FIRST = 0, ORDER_PILLOW13 = 1 };

/* ---------------------------------------------------------------- filters and coefficients (as Pillow) */

static double bilinear_filter(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

/* Keys' cubic convolution with a = -0.5, in Pillow's order of operations (its constants a + 2 = 1.5 and
 * a + 3 = 2.5 are exact) */
static double bicubic_filter(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return (1.5 * x - 2.5) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * -0.5;
    return 0.0;
}

/* Fixed-point weights of one axis: output i reads n[i] source pixels from first[i] with weights
 * k[i * stride + t] (t < n[i]); entries past n[i] are 0. */
typedef struct {
    int32_t *first, *n, *k;
    int stride, max_n;
} Coeffs;

static void coeffs_free(Coeffs *c) {
    free(c->first);
    free(c->n);
    free(c->k);
    c->first = c->n = c->k = NULL;
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for the box (0, in_size). Returns -1 when out of
 * memory. */
static int coeffs_make(int in_size, int out_size, int filter, Coeffs *c) {
    double (*fn)(double) = filter == FILTER_BICUBIC ? bicubic_filter : bilinear_filter;
    const double filter_support = filter == FILTER_BICUBIC ? 2.0 : 1.0;
    /* Pillow: (double)(in1 - in0) / outSize with the box edges as float */
    const double scale = (double)(float)in_size / out_size;
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = filter_support * filterscale;
    const int stride = (int)ceil(support) * 2 + 1;
    memset(c, 0, sizeof(*c));
    c->stride = stride;
    c->first = (int32_t *)malloc((size_t)out_size * sizeof(int32_t));
    c->n = (int32_t *)malloc((size_t)out_size * sizeof(int32_t));
    c->k = (int32_t *)calloc((size_t)out_size * (size_t)stride, sizeof(int32_t));
    double *w = (double *)malloc((size_t)stride * sizeof(double));
    if (!c->first || !c->n || !c->k || !w) {
        free(w);
        coeffs_free(c);
        return -1;
    }
    for (int i = 0; i < out_size; i++) {
        const double center = 0.0 + (i + 0.5) * scale;
        const double ss = 1.0 / filterscale;
        int lo = (int)(center - support + 0.5);
        if (lo < 0) lo = 0;
        int hi = (int)(center + support + 0.5);
        if (hi > in_size) hi = in_size;
        const int n = hi - lo;
        double ww = 0.0;
        for (int t = 0; t < n; t++) {
            w[t] = fn((t + lo - center + 0.5) * ss);
            ww += w[t];
        }
        int32_t *k = c->k + (size_t)i * stride;
        for (int t = 0; t < n; t++) {
            const double v = ww != 0.0 ? w[t] / ww : w[t];
            k[t] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS)) : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        c->first[i] = lo;
        c->n[i] = n;
        if (n > c->max_n) c->max_n = n;
    }
    free(w);
    return 0;
}

static inline uint8_t clip8(int32_t v) {
    v >>= PRECISION_BITS; /* arithmetic shift (GCC, Clang, MSVC), as in Pillow */
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* RGBX rows -> RGB rows */
static void drop_x(const uint8_t *src, size_t pixels, uint8_t *dst) {
    for (size_t i = 0; i < pixels; i++, src += 4, dst += 3) {
        dst[0] = src[0];
        dst[1] = src[1];
        dst[2] = src[2];
    }
}

/* ---------------------------------------------------------------- scalar passes */

/* dst RGB rows [rows, out_w * 3] <- the horizontal pass over src rows row0 .. row0 + rows - 1 of in_w
 * pixels of px bytes */
static void horizontal_scalar(const uint8_t *src, int in_w, int px, int row0, int rows, const Coeffs *c, int out_w,
                              uint8_t *dst) {
    const size_t in_rb = (size_t)in_w * px, out_rb = (size_t)out_w * 3;
    for (int y = 0; y < rows; y++) {
        const uint8_t *row = src + (size_t)(row0 + y) * in_rb;
        uint8_t *out = dst + (size_t)y * out_rb;
        for (int x = 0; x < out_w; x++) {
            const int32_t *k = c->k + (size_t)x * c->stride;
            const uint8_t *p = row + (size_t)c->first[x] * px;
            int32_t s0 = ROUND_HALF, s1 = ROUND_HALF, s2 = ROUND_HALF;
            for (int t = 0; t < c->n[x]; t++, p += px) {
                s0 += p[0] * k[t];
                s1 += p[1] * k[t];
                s2 += p[2] * k[t];
            }
            out[3 * x] = clip8(s0);
            out[3 * x + 1] = clip8(s1);
            out[3 * x + 2] = clip8(s2);
        }
    }
}

/* dst [out_h, rb] <- the vertical pass over src [*, rb] whose first row is source row row0 */
static void vertical_scalar(const uint8_t *src, size_t rb, int row0, const Coeffs *c, int out_h, uint8_t *dst,
                            int32_t *acc) {
    for (int i = 0; i < out_h; i++) {
        const int32_t *k = c->k + (size_t)i * c->stride;
        const uint8_t *base = src + (size_t)(c->first[i] - row0) * rb;
        for (size_t j = 0; j < rb; j++) acc[j] = ROUND_HALF;
        for (int t = 0; t < c->n[i]; t++) {
            const uint8_t *row = base + (size_t)t * rb;
            const int32_t kt = k[t];
            for (size_t j = 0; j < rb; j++) acc[j] += row[j] * kt;
        }
        uint8_t *out = dst + (size_t)i * rb;
        for (size_t j = 0; j < rb; j++) out[j] = clip8(acc[j]);
    }
}

/* ---------------------------------------------------------------- AVX2 passes */

#ifdef PILRESAMPLE_AVX2

/* Per output pixel and group of four taps, the int16 coefficient parts in the order the shuffled pixels
 * have them: lane 0 (k_t, k_t+1) x 3 channels and a zero pair, lane 1 the same for taps t+2, t+3. */
typedef struct {
    int16_t *hi, *lo; /* [out_w][groups][16] */
    int groups;
} SplitCoeffs;

static void split_free(SplitCoeffs *s) {
    free(s->hi);
    free(s->lo);
    s->hi = s->lo = NULL;
}

/* Returns 1 when every coefficient splits into int16 parts (always, in practice: the weights stay well
 * inside (-2, 2)), 0 when one does not (the caller then takes the scalar pass), -1 when out of memory. */
static int split_coeffs(const Coeffs *c, int out_w, SplitCoeffs *s) {
    s->groups = (c->max_n + 3) / 4;
    const size_t n16 = (size_t)out_w * (size_t)s->groups * 16;
    s->hi = (int16_t *)calloc(n16, sizeof(int16_t));
    s->lo = (int16_t *)calloc(n16, sizeof(int16_t));
    if (!s->hi || !s->lo) return -1;
    for (int x = 0; x < out_w; x++) {
        const int32_t *k = c->k + (size_t)x * c->stride;
        for (int t = 0; t < c->n[x]; t++) {
            if (k[t] < -(1 << 23) || k[t] >= (1 << 23)) return 0;
            const int16_t hi = (int16_t)(k[t] >> 8), lo = (int16_t)(k[t] & 255);
            const int g = t / 4, r = t % 4;
            /* tap r of the group, channel ch: lane r / 2, pair ch, place r % 2 */
            for (int ch = 0; ch < 3; ch++) {
                const size_t at = ((size_t)x * s->groups + g) * 16 + (size_t)(r / 2) * 8 + ch * 2 + r % 2;
                s->hi[at] = hi;
                s->lo[at] = lo;
            }
        }
    }
    return 1;
}

#define AVX2_INLINE __attribute__((target("avx2"))) static inline __attribute__((always_inline))

/* the int16 pixel pairs of a group of four taps from 16 source bytes of px-byte pixels (see SplitCoeffs) */
AVX2_INLINE __m256i pixel_pairs(const uint8_t *p, const int px) {
    const __m256i rgb = _mm256_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1, /* t, t+1 */
                                         6, -1, 9, -1, 7, -1, 10, -1, 8, -1, 11, -1, -1, -1, -1, -1 /* t+2, t+3 */);
    const __m256i rgbx = _mm256_setr_epi8(0, -1, 4, -1, 1, -1, 5, -1, 2, -1, 6, -1, -1, -1, -1, -1, /* t, t+1 */
                                          8, -1, 12, -1, 9, -1, 13, -1, 10, -1, 14, -1, -1, -1, -1, -1 /* t+2, t+3 */);
    return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p)), px == 4 ? rgbx : rgb);
}

/* sum(pixel * k) of one output pixel in rows a and b (b only when two) as int32 [R, G, B, 0 | R, G, B, 0]
 * whose lane halves add up to the sums. groups, px and two are constants at each call site, so the loop
 * unrolls. */
AVX2_INLINE void h_dot(const uint8_t *a, const uint8_t *b, const int16_t *hi, const int16_t *lo, const int groups,
                       const int px, const int two, __m256i *out_a, __m256i *out_b) {
    __m256i ha = _mm256_setzero_si256(), la = ha, hb = ha, lb = ha;
    for (int g = 0; g < groups; g++) {
        const __m256i kh = _mm256_loadu_si256((const __m256i *)(hi + 16 * g));
        const __m256i kl = _mm256_loadu_si256((const __m256i *)(lo + 16 * g));
        const __m256i pa = pixel_pairs(a + 4 * px * g, px);
        ha = _mm256_add_epi32(ha, _mm256_madd_epi16(pa, kh));
        la = _mm256_add_epi32(la, _mm256_madd_epi16(pa, kl));
        if (two) {
            const __m256i pb = pixel_pairs(b + 4 * px * g, px);
            hb = _mm256_add_epi32(hb, _mm256_madd_epi16(pb, kh));
            lb = _mm256_add_epi32(lb, _mm256_madd_epi16(pb, kl));
        }
    }
    *out_a = _mm256_add_epi32(_mm256_slli_epi32(ha, 8), la);
    if (two) *out_b = _mm256_add_epi32(_mm256_slli_epi32(hb, 8), lb);
}

/* int32 sums -> clip8 values (before the saturating packs) */
AVX2_INLINE __m256i finish32(__m256i v) {
    return _mm256_srai_epi32(_mm256_add_epi32(v, _mm256_set1_epi32(ROUND_HALF)), PRECISION_BITS);
}

/* the sums of output pixels p and q (as h_dot gives them) -> [p's R, G, B, 0 | q's R, G, B, 0] */
AVX2_INLINE __m256i halves(__m256i p, __m256i q) {
    return _mm256_add_epi32(_mm256_permute2x128_si256(p, q, 0x20), _mm256_permute2x128_si256(p, q, 0x31));
}

/* the sums of four output pixels, [p | q] and [r | s] as halves gives them -> their 12 RGB bytes at out */
AVX2_INLINE void store4(__m256i pq, __m256i rs, uint8_t *out) {
    /* packs: [p r | q s] as int16; packus: dwords p r . . | q s . . as RGBX bytes */
    const __m256i bytes = _mm256_packus_epi16(_mm256_packs_epi32(finish32(pq), finish32(rs)), _mm256_setzero_si256());
    const __m128i rgbx = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 0, 0, 0, 0)));
    const __m128i rgb = _mm_shuffle_epi8(rgbx, _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1));
    _mm_storel_epi64((__m128i *)out, rgb);
    const int32_t last = _mm_extract_epi32(rgb, 2);
    memcpy(out + 8, &last, 4);
}

/* the sums of one output pixel -> its 3 RGB bytes at out */
AVX2_INLINE void store1(__m256i p, uint8_t *out) {
    const __m128i sum = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
    const __m128i v = _mm_srai_epi32(_mm_add_epi32(sum, _mm_set1_epi32(ROUND_HALF)), PRECISION_BITS);
    const __m128i bytes = _mm_packus_epi16(_mm_packs_epi32(v, v), _mm_setzero_si128());
    const uint32_t rgbx = (uint32_t)_mm_cvtsi128_si32(bytes);
    out[0] = (uint8_t)rgbx;
    out[1] = (uint8_t)(rgbx >> 8);
    out[2] = (uint8_t)(rgbx >> 16);
}

/* One or two rows of the horizontal pass. off[x]: byte offset of output pixel x's window in its row. */
AVX2_INLINE void h_rows(const uint8_t *ra, const uint8_t *rb, uint8_t *oa, uint8_t *ob, const int32_t *off,
                        const SplitCoeffs *s, int out_w, const int groups, const int px, const int two) {
    const size_t step = (size_t)groups * 16;
    const int16_t *hi = s->hi, *lo = s->lo;
    int x = 0;
    __m256i a0, a1, b0 = _mm256_setzero_si256(), b1 = b0;
    for (; x + 4 <= out_w; x += 4, hi += 4 * step, lo += 4 * step) {
        /* pairs of pixels summed as soon as they are done: fewer live registers */
        h_dot(ra + off[x], rb + off[x], hi, lo, groups, px, two, &a0, &b0);
        h_dot(ra + off[x + 1], rb + off[x + 1], hi + step, lo + step, groups, px, two, &a1, &b1);
        const __m256i a01 = halves(a0, a1), b01 = two ? halves(b0, b1) : a01;
        h_dot(ra + off[x + 2], rb + off[x + 2], hi + 2 * step, lo + 2 * step, groups, px, two, &a0, &b0);
        h_dot(ra + off[x + 3], rb + off[x + 3], hi + 3 * step, lo + 3 * step, groups, px, two, &a1, &b1);
        store4(a01, halves(a0, a1), oa + 3 * x);
        if (two) store4(b01, halves(b0, b1), ob + 3 * x);
    }
    for (; x < out_w; x++, hi += step, lo += step) {
        h_dot(ra + off[x], rb + off[x], hi, lo, groups, px, two, &a0, &b0);
        store1(a0, oa + 3 * x);
        if (two) store1(b0, ob + 3 * x);
    }
}

/* h_rows with its size parameters as constants: up to 16 taps unrolled, any count in a loop */
#define H_ROWS_PX(PX)                                                                                               \
    __attribute__((target("avx2"))) static void h_rows_px##PX(const uint8_t *ra, const uint8_t *rb, uint8_t *oa,   \
                                                               uint8_t *ob, const int32_t *off, const SplitCoeffs *s, \
                                                               int out_w, int two) {                               \
        switch (s->groups * 2 + (two != 0)) {                                                                       \
        case 2: h_rows(ra, ra, oa, oa, off, s, out_w, 1, PX, 0); return;                                            \
        case 3: h_rows(ra, rb, oa, ob, off, s, out_w, 1, PX, 1); return;                                            \
        case 4: h_rows(ra, ra, oa, oa, off, s, out_w, 2, PX, 0); return;                                            \
        case 5: h_rows(ra, rb, oa, ob, off, s, out_w, 2, PX, 1); return;                                            \
        case 6: h_rows(ra, ra, oa, oa, off, s, out_w, 3, PX, 0); return;                                            \
        case 7: h_rows(ra, rb, oa, ob, off, s, out_w, 3, PX, 1); return;                                            \
        case 8: h_rows(ra, ra, oa, oa, off, s, out_w, 4, PX, 0); return;                                            \
        case 9: h_rows(ra, rb, oa, ob, off, s, out_w, 4, PX, 1); return;                                            \
        default:                                                                                                    \
            if (two) h_rows(ra, rb, oa, ob, off, s, out_w, s->groups, PX, 1);                                       \
            else h_rows(ra, ra, oa, oa, off, s, out_w, s->groups, PX, 0);                                           \
        }                                                                                                           \
    }
H_ROWS_PX(3)
H_ROWS_PX(4)
#undef H_ROWS_PX

/* The horizontal pass (see horizontal_scalar); src holds src_len bytes. pad_rows: room for two rows of
 * in_w * px + 16 * groups + 16 bytes, zeroed; off: room for out_w offsets. */
static void horizontal_avx2(const uint8_t *src, size_t src_len, int in_w, int px, int row0, int rows,
                            const Coeffs *c, const SplitCoeffs *s, int out_w, uint8_t *dst, uint8_t *pad_rows,
                            int32_t *off) {
    const size_t in_rb = (size_t)in_w * px, out_rb = (size_t)out_w * 3;
    for (int x = 0; x < out_w; x++) off[x] = px * c->first[x];
    /* the window of the last pixel ends this far into its row: rows closer than that to the end of the
     * buffer are read from zero-padded copies */
    const size_t reach = (size_t)off[out_w - 1] + (size_t)s->groups * 4 * px + 16 - 4 * px;
    const size_t pad_rb = in_rb + (size_t)s->groups * 16 + 16;
    for (int y = 0; y < rows; y += 2) {
        const int two = y + 1 < rows;
        const uint8_t *ra = src + (size_t)(row0 + y) * in_rb, *rb = ra + in_rb;
        if ((size_t)(row0 + y + two) * in_rb + reach > src_len) {
            memcpy(pad_rows, ra, in_rb);
            ra = pad_rows;
            if (two) {
                memcpy(pad_rows + pad_rb, rb, in_rb);
                rb = pad_rows + pad_rb;
            }
        }
        uint8_t *oa = dst + (size_t)y * out_rb, *ob = oa + (two ? out_rb : 0);
        if (px == 4) h_rows_px4(ra, rb, oa, ob, off, s, out_w, two);
        else h_rows_px3(ra, rb, oa, ob, off, s, out_w, two);
    }
}

/* The vertical pass (see vertical_scalar) two source rows at a time: the bytes of rows t and t + 1
 * interleaved as int16 pairs meet the pair (k_t, k_t+1) in vpmaddwd, the coefficients split as in the
 * horizontal pass. pairs: room for 2 * ((max_n + 1) / 2) int32. Returns 0 when a coefficient does not
 * split (the caller then takes the scalar pass). */
__attribute__((target("avx2"))) static int vertical_avx2(const uint8_t *src, size_t rb, int row0, const Coeffs *c,
                                                         int out_h, uint8_t *dst, int32_t *pairs) {
    for (int i = 0; i < out_h; i++)
        for (int t = 0; t < c->n[i]; t++)
            if (c->k[(size_t)i * c->stride + t] < -(1 << 23) || c->k[(size_t)i * c->stride + t] >= (1 << 23)) return 0;
    const __m256i zero = _mm256_setzero_si256(), round = _mm256_set1_epi32(ROUND_HALF);
    for (int i = 0; i < out_h; i++) {
        const int32_t *k = c->k + (size_t)i * c->stride;
        const int n = c->n[i], n_pairs = (n + 1) / 2;
        /* (hi_t, hi_t+1) and (lo_t, lo_t+1) as int16 pairs; a missing last tap weighs 0 */
        for (int q = 0; q < n_pairs; q++) {
            const int32_t k0 = k[2 * q], k1 = 2 * q + 1 < n ? k[2 * q + 1] : 0;
            pairs[2 * q] = (int32_t)(((uint32_t)(k0 >> 8) & 0xffff) | ((uint32_t)(k1 >> 8) << 16));
            pairs[2 * q + 1] = (int32_t)(((uint32_t)k0 & 255) | (((uint32_t)k1 & 255) << 16));
        }
        const uint8_t *base = src + (size_t)(c->first[i] - row0) * rb;
        uint8_t *out = dst + (size_t)i * rb;
        size_t j = 0;
        for (; j + 32 <= rb; j += 32) {
            __m256i h0 = zero, h1 = zero, h2 = zero, h3 = zero, l0 = zero, l1 = zero, l2 = zero, l3 = zero;
            for (int q = 0; q < n_pairs; q++) {
                const uint8_t *pa = base + (size_t)(2 * q) * rb + j;
                const uint8_t *pb = 2 * q + 1 < n ? pa + rb : pa; /* any row: its weight is 0 */
                const __m256i a = _mm256_loadu_si256((const __m256i *)pa), b = _mm256_loadu_si256((const __m256i *)pb);
                const __m256i ab_lo = _mm256_unpacklo_epi8(a, b), ab_hi = _mm256_unpackhi_epi8(a, b);
                /* bytes 0-3 | 16-19, 4-7 | 20-23, 8-11 | 24-27, 12-15 | 28-31 as (row t, row t + 1) int16 pairs */
                const __m256i v0 = _mm256_unpacklo_epi8(ab_lo, zero), v1 = _mm256_unpackhi_epi8(ab_lo, zero);
                const __m256i v2 = _mm256_unpacklo_epi8(ab_hi, zero), v3 = _mm256_unpackhi_epi8(ab_hi, zero);
                const __m256i kh = _mm256_set1_epi32(pairs[2 * q]), kl = _mm256_set1_epi32(pairs[2 * q + 1]);
                h0 = _mm256_add_epi32(h0, _mm256_madd_epi16(v0, kh));
                h1 = _mm256_add_epi32(h1, _mm256_madd_epi16(v1, kh));
                h2 = _mm256_add_epi32(h2, _mm256_madd_epi16(v2, kh));
                h3 = _mm256_add_epi32(h3, _mm256_madd_epi16(v3, kh));
                l0 = _mm256_add_epi32(l0, _mm256_madd_epi16(v0, kl));
                l1 = _mm256_add_epi32(l1, _mm256_madd_epi16(v1, kl));
                l2 = _mm256_add_epi32(l2, _mm256_madd_epi16(v2, kl));
                l3 = _mm256_add_epi32(l3, _mm256_madd_epi16(v3, kl));
            }
#define V_FINISH(h, l) _mm256_srai_epi32(_mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32(h, 8), l), round), PRECISION_BITS)
            /* the in-lane packs undo the in-lane unpacks: the bytes come out in order */
            const __m256i bytes = _mm256_packus_epi16(_mm256_packs_epi32(V_FINISH(h0, l0), V_FINISH(h1, l1)),
                                                      _mm256_packs_epi32(V_FINISH(h2, l2), V_FINISH(h3, l3)));
#undef V_FINISH
            _mm256_storeu_si256((__m256i *)(out + j), bytes);
        }
        for (; j < rb; j++) {
            int32_t acc = ROUND_HALF;
            for (int t = 0; t < n; t++) acc += base[(size_t)t * rb + j] * k[t];
            out[j] = clip8(acc);
        }
    }
    return 1;
}

#endif /* PILRESAMPLE_AVX2 */

/* ---------------------------------------------------------------- driver */

/* The horizontal pass: RGB dst [rows, out_w * 3] from the rows row0 .. row0 + rows - 1 of src (rows of
 * in_w pixels of px bytes, src_len bytes in all). Returns -1 when out of memory. */
static int pass_horizontal(const uint8_t *src, size_t src_len, int in_w, int px, int row0, int rows, const Coeffs *c,
                           int out_w, uint8_t *dst, int use_simd) {
#ifdef PILRESAMPLE_AVX2
    if (use_simd) {
        SplitCoeffs split = {0};
        const int ok = split_coeffs(c, out_w, &split);
        uint8_t *pad_rows = NULL;
        int32_t *off = NULL;
        if (ok > 0) {
            pad_rows = (uint8_t *)calloc(2 * ((size_t)in_w * px + (size_t)split.groups * 16 + 16), 1);
            off = (int32_t *)malloc((size_t)out_w * sizeof(int32_t));
            if (pad_rows && off) horizontal_avx2(src, src_len, in_w, px, row0, rows, c, &split, out_w, dst, pad_rows, off);
        }
        const int failed = ok < 0 || (ok > 0 && (!pad_rows || !off));
        split_free(&split);
        free(pad_rows);
        free(off);
        if (failed) return -1;
        if (ok > 0) return 0;
    }
#else
    (void)src_len;
    (void)use_simd;
#endif
    horizontal_scalar(src, in_w, px, row0, rows, c, out_w, dst);
    return 0;
}

/* The vertical pass: dst [out_h, rb] from src [*, rb] whose first row is source row row0. Returns -1
 * when out of memory. */
static int pass_vertical(const uint8_t *src, size_t rb, int row0, const Coeffs *c, int out_h, uint8_t *dst,
                         int use_simd) {
#ifdef PILRESAMPLE_AVX2
    if (use_simd) {
        int32_t *pairs = (int32_t *)malloc(((size_t)c->max_n + 1) * sizeof(int32_t));
        if (!pairs) return -1;
        const int ok = vertical_avx2(src, rb, row0, c, out_h, dst, pairs);
        free(pairs);
        if (ok) return 0;
    }
#else
    (void)use_simd;
#endif
    int32_t *acc = (int32_t *)malloc(rb * sizeof(int32_t));
    if (!acc) return -1;
    vertical_scalar(src, rb, row0, c, out_h, dst, acc);
    free(acc);
    return 0;
}

/* Pillow's ImagingResampleInner for the box (0, 0, in_w, in_h): src holds in_h rows of in_w pixels of px
 * (3 or 4) bytes, R, G, B first; dst receives [out_h, out_w, 3]. Returns -1 when out of memory (no Python
 * API: runs without the GIL). */
static int resample(const uint8_t *src, size_t src_len, int in_w, int in_h, int px, uint8_t *dst, int out_w,
                    int out_h, int filter, int order, int use_simd) {
    const int need_h = out_w != in_w, need_v = out_h != in_h;
    const size_t in_rb = (size_t)in_w * px, out_rb = (size_t)out_w * 3;
    Coeffs cv = {0}, ch = {0};
    uint8_t *tmp = NULL;
    int rc = -1;
    if (!need_h && !need_v) {
        if (px == 3) memcpy(dst, src, out_rb * (size_t)out_h);
        else drop_x(src, (size_t)in_w * in_h, dst);
        return 0;
    }
    if (need_v && coeffs_make(in_h, out_h, filter, &cv) < 0) goto done;
    if (need_h && coeffs_make(in_w, out_w, filter, &ch) < 0) goto done;
    if (!need_v) {
        rc = pass_horizontal(src, src_len, in_w, px, 0, in_h, &ch, out_w, dst, use_simd);
    } else if (!need_h) {
        if (px == 3) {
            rc = pass_vertical(src, in_rb, 0, &cv, out_h, dst, use_simd);
        } else { /* filter the X bytes along, then drop them */
            tmp = (uint8_t *)malloc(in_rb * (size_t)out_h);
            if (!tmp) goto done;
            rc = pass_vertical(src, in_rb, 0, &cv, out_h, tmp, use_simd);
            if (rc == 0) drop_x(tmp, (size_t)out_w * out_h, dst);
        }
    } else if (order == ORDER_PILLOW13 && out_h < in_h && (int64_t)in_h - out_h > 2 * ((int64_t)in_w - out_w)) {
        tmp = (uint8_t *)malloc(in_rb * (size_t)out_h);
        if (!tmp) goto done;
        rc = pass_vertical(src, in_rb, 0, &cv, out_h, tmp, use_simd);
        if (rc == 0) rc = pass_horizontal(tmp, in_rb * (size_t)out_h, in_w, px, 0, out_h, &ch, out_w, dst, use_simd);
    } else {
        /* only the source rows the vertical pass reads */
        const int row0 = cv.first[0], row1 = cv.first[out_h - 1] + cv.n[out_h - 1];
        tmp = (uint8_t *)malloc(out_rb * (size_t)(row1 - row0));
        if (!tmp) goto done;
        rc = pass_horizontal(src, src_len, in_w, px, row0, row1 - row0, &ch, out_w, tmp, use_simd);
        if (rc == 0) rc = pass_vertical(tmp, out_rb, row0, &cv, out_h, dst, use_simd);
    }
done:
    coeffs_free(&cv);
    coeffs_free(&ch);
    free(tmp);
    return rc;
}

/* ---------------------------------------------------------------- Arrow input */

/* The Arrow C data interface structs (a stable ABI) */
struct ArrowSchema {
    const char *format, *name, *metadata;
    int64_t flags, n_children;
    struct ArrowSchema **children, *dictionary;
    void (*release)(struct ArrowSchema *);
    void *private_data;
};

struct ArrowArray {
    int64_t length, null_count, offset, n_buffers, n_children;
    const void **buffers;
    struct ArrowArray **children, *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};

/* The RGBX bytes of an image exported as (schema, array) capsules: a fixed-size list of 4 uint8 per
 * pixel, w * h pixels. Sets a ValueError and returns NULL when the export is anything else. */
static const uint8_t *arrow_rgbx(PyObject *capsules, Py_ssize_t w, Py_ssize_t h) {
    PyObject *schema_capsule, *array_capsule;
    if (!PyArg_ParseTuple(capsules, "OO", &schema_capsule, &array_capsule)) return NULL;
    const struct ArrowSchema *schema = (const struct ArrowSchema *)PyCapsule_GetPointer(schema_capsule, "arrow_schema");
    if (!schema) return NULL;
    const struct ArrowArray *array = (const struct ArrowArray *)PyCapsule_GetPointer(array_capsule, "arrow_array");
    if (!array) return NULL;
    const int list_ok = schema->format && strcmp(schema->format, "+w:4") == 0 && schema->n_children == 1 &&
                        schema->children[0]->format && strcmp(schema->children[0]->format, "C") == 0;
    const int array_ok = array->release && array->length == (int64_t)w * h && array->offset == 0 &&
                         array->null_count == 0 && array->n_children == 1;
    const struct ArrowArray *child = array_ok ? array->children[0] : NULL;
    const int child_ok = child && child->length == 4 * (int64_t)w * h && child->offset == 0 && child->null_count == 0 &&
                         child->n_buffers == 2 && child->buffers[1];
    if (!list_ok || !array_ok || !child_ok) {
        PyErr_SetString(PyExc_ValueError, "src is not an Arrow export of w * h pixels of 4 uint8 (a Pillow RGB image)");
        return NULL;
    }
    return (const uint8_t *)child->buffers[1];
}

/* ---------------------------------------------------------------- Python binding */

static int cpu_has_avx2 = 0;

/* The argument checks resize and resize_planar share; NULL when they pass. */
static const char *check_args(Py_ssize_t in_w, Py_ssize_t in_h, Py_ssize_t out_w, Py_ssize_t out_h, int filter,
                              int order) {
    if (in_w < 1 || in_h < 1 || out_w < 1 || out_h < 1 || in_w > INT_MAX / 4 || in_h > INT_MAX / 4 ||
        out_w > INT_MAX / 4 || out_h > INT_MAX / 4)
        return "sizes must be positive and below 2**29";
    if (filter != FILTER_BILINEAR && filter != FILTER_BICUBIC) return "filter must be 0 (bilinear) or 1 (bicubic)";
    if (order != ORDER_HORIZONTAL_FIRST && order != ORDER_PILLOW13)
        return "order must be 0 (horizontal pass first, Pillow <= 12) or 1 (Pillow 13's choice)";
    return NULL;
}

/* The source pixels: a Pillow image's Arrow capsules (RGBX, px 4) or a buffer of in_h * in_w * 3 bytes (px 3,
 * held in sbuf until the caller releases it). NULL with an exception set when src_obj is neither. */
static const uint8_t *source_pixels(PyObject *src_obj, Py_ssize_t in_w, Py_ssize_t in_h, Py_buffer *sbuf,
                                    size_t *src_len, int *px) {
    if (PyTuple_Check(src_obj)) {
        *src_len = 4 * (size_t)in_w * in_h;
        *px = 4;
        return arrow_rgbx(src_obj, in_w, in_h);
    }
    if (PyObject_GetBuffer(src_obj, sbuf, PyBUF_SIMPLE) != 0) return NULL;
    *src_len = (size_t)sbuf->len;
    *px = 3;
    if (sbuf->len / 3 / in_w != in_h || sbuf->len != 3 * in_w * in_h) {
        PyErr_SetString(PyExc_ValueError, "src does not hold in_h * in_w * 3 bytes");
        return NULL;
    }
    return (const uint8_t *)sbuf->buf;
}

/* resample() into a scratch buffer, then each channel through its 256-entry float table into the planes of
 * dst (float32 [3, out_h, out_w]), or with interleaved into dst as float32 [out_h, out_w, 3] (the pixel order
 * of a channels-last tensor): the lookup reads every result the per-channel arithmetic can give. */
static int resample_planar(const uint8_t *src, size_t src_len, int in_w, int in_h, int px, const float *table,
                           float *dst, int out_w, int out_h, int filter, int order, int use_simd, int interleaved) {
    const size_t n = (size_t)out_w * out_h;
    uint8_t *rgb = (uint8_t *)malloc(3 * n);
    if (!rgb) return -1;
    int rc = resample(src, src_len, in_w, in_h, px, rgb, out_w, out_h, filter, order, use_simd);
    if (rc == 0 && interleaved) {
        for (size_t i = 0; i < 3 * n; i += 3) {
            dst[i] = table[rgb[i]];
            dst[i + 1] = table[256 + rgb[i + 1]];
            dst[i + 2] = table[512 + rgb[i + 2]];
        }
    } else if (rc == 0) {
        float *r = dst, *g = dst + n, *b = dst + 2 * n;
        const float *tr = table, *tg = table + 256, *tb = table + 512;
        for (size_t i = 0; i < n; i++) {
            r[i] = tr[rgb[3 * i]];
            g[i] = tg[rgb[3 * i + 1]];
            b[i] = tb[rgb[3 * i + 2]];
        }
    }
    free(rgb);
    return rc;
}

/* The pixels of src_obj (see source_pixels) resized into dst with the GIL released: uint8 [out_h, out_w, 3]
 * when table is NULL, else through the table into float32 planes (resample_planar). None, or NULL with an
 * exception set. */
static PyObject *run_resize(PyObject *src_obj, Py_ssize_t in_w, Py_ssize_t in_h, const float *table, void *dst,
                            Py_ssize_t out_w, Py_ssize_t out_h, int filter, int order, int use_simd, int interleaved) {
    Py_buffer sbuf = {0};
    size_t src_len;
    int px;
    const uint8_t *src = source_pixels(src_obj, in_w, in_h, &sbuf, &src_len, &px);
    int rc = -2;
    if (src) {
        Py_BEGIN_ALLOW_THREADS
        rc = table ? resample_planar(src, src_len, (int)in_w, (int)in_h, px, table, (float *)dst, (int)out_w, (int)out_h,
                                     filter, order, use_simd, interleaved)
                   : resample(src, src_len, (int)in_w, (int)in_h, px, (uint8_t *)dst, (int)out_w, (int)out_h, filter,
                              order, use_simd);
        Py_END_ALLOW_THREADS
    }
    if (sbuf.obj) PyBuffer_Release(&sbuf);
    if (rc == -2) return NULL;
    if (rc < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *py_resize(PyObject *self, PyObject *args) {
    PyObject *src_obj;
    Py_buffer dbuf;
    Py_ssize_t in_w, in_h, out_w, out_h;
    int filter, order, force_scalar = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "Onnw*nnii|p", &src_obj, &in_w, &in_h, &dbuf, &out_w, &out_h, &filter, &order,
                          &force_scalar))
        return NULL;
    const char *error = check_args(in_w, in_h, out_w, out_h, filter, order);
    if (!error && (dbuf.len / 3 / out_w != out_h || dbuf.len != 3 * out_w * out_h))
        error = "dst does not hold out_h * out_w * 3 bytes";
    if (error) {
        PyBuffer_Release(&dbuf);
        PyErr_SetString(PyExc_ValueError, error);
        return NULL;
    }
    PyObject *result = run_resize(src_obj, in_w, in_h, NULL, dbuf.buf, out_w, out_h, filter, order,
                                  cpu_has_avx2 && !force_scalar, 0);
    PyBuffer_Release(&dbuf);
    return result;
}

static PyObject *py_resize_planar(PyObject *self, PyObject *args) {
    PyObject *src_obj;
    Py_buffer tbuf, dbuf;
    Py_ssize_t in_w, in_h, out_w, out_h;
    int filter, order, interleaved = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "Onny*w*nnii|p", &src_obj, &in_w, &in_h, &tbuf, &dbuf, &out_w, &out_h, &filter, &order,
                          &interleaved))
        return NULL;
    const char *error = check_args(in_w, in_h, out_w, out_h, filter, order);
    if (!error && tbuf.len != 3 * 256 * (Py_ssize_t)sizeof(float)) error = "table must hold 3 * 256 float32 values";
    if (!error && (dbuf.len / (Py_ssize_t)(3 * sizeof(float)) / out_w != out_h ||
                   dbuf.len != (Py_ssize_t)(3 * sizeof(float)) * out_w * out_h))
        error = "dst does not hold 3 * out_h * out_w float32 values";
    if (error) {
        PyBuffer_Release(&tbuf);
        PyBuffer_Release(&dbuf);
        PyErr_SetString(PyExc_ValueError, error);
        return NULL;
    }
    PyObject *result = run_resize(src_obj, in_w, in_h, (const float *)tbuf.buf, dbuf.buf, out_w, out_h, filter, order,
                                  cpu_has_avx2, interleaved);
    PyBuffer_Release(&tbuf);
    PyBuffer_Release(&dbuf);
    return result;
}

static PyObject *py_simd(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    return PyUnicode_FromString(cpu_has_avx2 ? "avx2" : "scalar");
}

static PyMethodDef methods[] = {
    {"resize", py_resize, METH_VARARGS,
     "resize(src, in_w, in_h, dst, out_w, out_h, filter, order, force_scalar=False, /): Pillow's resize of an RGB "
     "image into dst (a writable uint8 buffer of out_h * out_w * 3 bytes). src: a C-contiguous buffer of in_h * "
     "in_w * 3 bytes, or the (schema, array) capsules of a Pillow RGB image's __arrow_c_array__(). filter: 0 "
     "bilinear, 1 bicubic. order: 0 horizontal pass first (Pillow <= 12), 1 Pillow 13's choice of the first pass."},
    {"resize_planar", py_resize_planar, METH_VARARGS,
     "resize_planar(src, in_w, in_h, table, dst, out_w, out_h, filter, order, interleaved=False, /): resize(...) of "
     "the same arguments, then channel c of each pixel through table[c] (float32 [3, 256]) into plane c of dst "
     "(float32 [3, out_h, out_w]), or with interleaved into dst as float32 [out_h, out_w, 3]; the GIL is released "
     "throughout."},
    {"simd", py_simd, METH_NOARGS, "simd(): the vector path resize takes on this CPU, 'avx2' or 'scalar'."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pilresample",
                                    "Pillow's BILINEAR / BICUBIC resize of RGB uint8 images, bit for bit.", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__pilresample(void) {
#ifdef PILRESAMPLE_AVX2
    __builtin_cpu_init();
    cpu_has_avx2 = __builtin_cpu_supports("avx2") != 0;
#endif
    return PyModule_Create(&module);
}
