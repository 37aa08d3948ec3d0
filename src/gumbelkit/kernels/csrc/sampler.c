/* Fused token sampler: temperature -> top-k -> top-p -> min-p -> Gumbel-max, one row at a time.
 *
 * The twin of gumbelkit/kernels/sampler_reference.py; both compute, for every row,
 *   z_i = fl32(x_i / T),  m = max_i z_i,  w_i = exp((double) z_i - (double) m),
 *   K   = kept tokens (filters below),  token = argmax_{i in K} fl32(z_i + G_i)
 * with G_i the Gumbel noise of (seed, row key, column i), ties to the lowest index.
 * Filters (tie-inclusive, so no order among equal logits is ever needed):
 *   top-k  keep z_i >= v_k, the k-th largest z (with multiplicity);
 *   top-p  keep i iff the sum of w_j over kept j with z_j > z_i is < p * S,
 *          S the sum of w over the tokens kept by top-k;
 *   min-p  keep (double) z_i - (double) m >= log(min_p).
 *
 * No buffer the size of the vocabulary: candidates are gathered only after a
 * selection (a k-element min-heap over the logits gives the k-th largest
 * value; fl32(x / T) is monotone, so it is the k-th largest z), and without a
 * top-k filter the Gumbel race runs over the row in chunks with the noise of a
 * token evaluated only when its random word can still beat the current winner
 * (see race_row); top-p there is the threshold z >= z*, z* found without a sort
 * (see top_p_cut).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "gk.h"
#include "noise.h"

/* AVX2 versions of the hot loops, taken when the active instruction set of the kernels
 * (gk_isa, so GUMBELKIT_SIMD and gk_set_isa apply) is AVX2 or wider; the build targets
 * baseline x86-64. */
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define GK_HAVE_AVX2_PATH 1
#endif

enum { GK_SAMPLE_OK = 0, GK_SAMPLE_BAD_LOGIT = 1, GK_SAMPLE_NO_TOKEN = 2,
       GK_SAMPLE_OVERFLOW = 3, GK_SAMPLE_TOO_FEW = 4, GK_SAMPLE_NO_MEMORY = 5 };

#define GK_SAMPLE_CHUNK 256    /* columns per noise chunk (a multiple of 16) */
#define GK_GUMBEL_BOUND 23.5   /* every Gumbel value of _rng lies below 22.87 */
#define GK_BINS 256            /* top-p histogram over m - z ... */
#define GK_BINS_PER_UNIT 4     /* ... in quarters of a unit of z */

typedef struct {
    float z;       /* x / T */
    float key;     /* z + G */
    double w;      /* exp(z - m) */
    int64_t idx;
} gk_cand;

typedef struct {
    gk_cand *c;
    int64_t n, cap;
} gk_cands;

static int cands_push(gk_cands *a, float z, int64_t idx) {
    if (a->n == a->cap) {
        int64_t cap = a->cap ? 2 * a->cap : 64;
        gk_cand *c = realloc(a->c, (size_t)cap * sizeof(gk_cand));
        if (!c) return 0;
        a->c = c;
        a->cap = cap;
    }
    a->c[a->n].z = z;
    a->c[a->n].idx = idx;
    a->n++;
    return 1;
}

/* exp(d) for d <= 0 (d = -inf gives 0; below -708, where exp is under 3.4e-308, 0):
 * d = k ln2 + r with |r| <= ln2 / 2 (Cody-Waite), exp(r) by its Taylor series to r^13
 * (truncation < 5e-18), times 2^k built from the bits. Branch-free, so loops vectorize;
 * within about 1 ulp of exp. */
/* Taylor coefficients of exp on |r| <= log(2)/2, highest first: 1/13!, then 1/12! .. 1/0!.
 * One table for the scalar and vector versions, evaluated in the same order. */
#define GK_EXP_LEAD (1.0 / 6227020800.0)
static const double gk_exp_coef[13] = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
                                       1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0,
                                       1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5,
                                       1.0, 1.0};

static inline double gk_exp_nonpos(double d) {
    const double magic = 0x1.8p52;
    double keep = d >= -708.0 ? 1.0 : 0.0;
    d = d >= -708.0 ? d : -708.0;
    double t = d * 1.4426950408889634 + magic;
    double kd = t - magic;
    double r = (d - kd * 6.93147180369123816490e-01) - kd * 1.90821492927058770002e-10;
    double p = GK_EXP_LEAD;
    for (int j = 0; j < 13; ++j) p = p * r + gk_exp_coef[j];
    int64_t tb, mb;
    memcpy(&tb, &t, 8);
    memcpy(&mb, &magic, 8);
    int64_t sb = (tb - mb + 1023) << 52;
    double scale;
    memcpy(&scale, &sb, 8);
    return p * scale * keep;
}

#if defined(__SSE2__)
/* gk_exp_nonpos on two lanes, the same operations in the same order (bit-identical). */
static inline __m128d gk_exp_nonpos_x2(__m128d d) {
    const __m128d magic = _mm_set1_pd(0x1.8p52), low = _mm_set1_pd(-708.0);
    __m128d keep = _mm_cmpge_pd(d, low);
    d = _mm_max_pd(d, low);
    __m128d t = _mm_add_pd(_mm_mul_pd(d, _mm_set1_pd(1.4426950408889634)), magic);
    __m128d kd = _mm_sub_pd(t, magic);
    __m128d r = _mm_sub_pd(_mm_sub_pd(d, _mm_mul_pd(kd, _mm_set1_pd(6.93147180369123816490e-01))),
                           _mm_mul_pd(kd, _mm_set1_pd(1.90821492927058770002e-10)));
    __m128d p = _mm_set1_pd(GK_EXP_LEAD);
    for (int j = 0; j < 13; ++j) p = _mm_add_pd(_mm_mul_pd(p, r), _mm_set1_pd(gk_exp_coef[j]));
    __m128i sb = _mm_slli_epi64(_mm_add_epi64(_mm_sub_epi64(_mm_castpd_si128(t),
                                                            _mm_castpd_si128(magic)),
                                              _mm_set1_epi64x(1023)), 52);
    return _mm_and_pd(_mm_mul_pd(p, _mm_castsi128_pd(sb)), keep);
}
#endif

#ifdef GK_HAVE_AVX2_PATH
/* gk_exp_nonpos on four lanes, the same operations in the same order (bit-identical). */
__attribute__((target("avx2"))) static inline __m256d gk_exp_nonpos_x4(__m256d d) {
    const __m256d magic = _mm256_set1_pd(0x1.8p52), low = _mm256_set1_pd(-708.0);
    __m256d keep = _mm256_cmp_pd(d, low, _CMP_GE_OQ);
    d = _mm256_max_pd(d, low);
    __m256d t = _mm256_add_pd(_mm256_mul_pd(d, _mm256_set1_pd(1.4426950408889634)), magic);
    __m256d kd = _mm256_sub_pd(t, magic);
    __m256d r = _mm256_sub_pd(
        _mm256_sub_pd(d, _mm256_mul_pd(kd, _mm256_set1_pd(6.93147180369123816490e-01))),
        _mm256_mul_pd(kd, _mm256_set1_pd(1.90821492927058770002e-10)));
    __m256d p = _mm256_set1_pd(GK_EXP_LEAD);
    for (int j = 0; j < 13; ++j) p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(gk_exp_coef[j]));
    __m256i sb = _mm256_slli_epi64(
        _mm256_add_epi64(_mm256_sub_epi64(_mm256_castpd_si256(t), _mm256_castpd_si256(magic)),
                         _mm256_set1_epi64x(1023)), 52);
    return _mm256_and_pd(_mm256_mul_pd(p, _mm256_castsi256_pd(sb)), keep);
}

__attribute__((target("avx2"))) static int64_t weights_avx2(const float *x, int64_t n, float T,
                                                           double m, double *d, double *w) {
    __m128 tv = _mm_set1_ps(T);
    __m256d mv = _mm256_set1_pd(m);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d di = _mm256_sub_pd(_mm256_cvtps_pd(_mm_div_ps(_mm_loadu_ps(x + i), tv)), mv);
        _mm256_storeu_pd(d + i, di);
        _mm256_storeu_pd(w + i, gk_exp_nonpos_x4(di));
    }
    return i;
}
#endif

/* d[i] = fl32(x[i] / T) - m and w[i] = exp(d[i]) (0 for -inf), as gk_exp_nonpos. */
static void weights(const float *x, int64_t n, float T, double m, double *d, double *w) {
    int64_t i = 0;
#ifdef GK_HAVE_AVX2_PATH
    if (gk_isa() >= GK_ISA_AVX2) i = weights_avx2(x, n, T, m, d, w);
#endif
#if defined(__SSE2__)
    __m128 tv = _mm_set1_ps(T);
    __m128d mv = _mm_set1_pd(m);
    for (; i + 4 <= n; i += 4) {
        __m128 z = _mm_div_ps(_mm_loadu_ps(x + i), tv);
        __m128d lo = _mm_sub_pd(_mm_cvtps_pd(z), mv);
        __m128d hi = _mm_sub_pd(_mm_cvtps_pd(_mm_movehl_ps(z, z)), mv);
        _mm_storeu_pd(d + i, lo);
        _mm_storeu_pd(d + i + 2, hi);
        _mm_storeu_pd(w + i, gk_exp_nonpos_x2(lo));
        _mm_storeu_pd(w + i + 2, gk_exp_nonpos_x2(hi));
    }
#endif
    for (; i < n; ++i) {
        d[i] = (double)(x[i] / T) - m;
        w[i] = gk_exp_nonpos(d[i]);
    }
}

/* Bit j set iff x[j] > t, for the 16 floats at x (one test when none is). */
static inline int gt16(const float *x, float t) {
#if defined(__SSE2__)
    __m128 tv = _mm_set1_ps(t);
    __m128 a = _mm_cmpgt_ps(_mm_loadu_ps(x), tv), b = _mm_cmpgt_ps(_mm_loadu_ps(x + 4), tv);
    __m128 c = _mm_cmpgt_ps(_mm_loadu_ps(x + 8), tv), d = _mm_cmpgt_ps(_mm_loadu_ps(x + 12), tv);
    if (!_mm_movemask_ps(_mm_or_ps(_mm_or_ps(a, b), _mm_or_ps(c, d)))) return 0;
    return _mm_movemask_ps(a) | _mm_movemask_ps(b) << 4 | _mm_movemask_ps(c) << 8
           | _mm_movemask_ps(d) << 12;
#else
    int mask = 0;
    for (int j = 0; j < 16; ++j) mask |= (x[j] > t) << j;
    return mask;
#endif
}

#if defined(__SSE2__)
/* Fold the four lanes of a scan's accumulators into (largest, any NaN, count). */
static inline void scan_fold(__m128 mx, __m128 nan, __m128i cnt, float *m, int *b, int64_t *c) {
    float m4[4];
    int32_t c4[4];
    _mm_storeu_ps(m4, mx);
    _mm_storeu_si128((__m128i *)c4, cnt);
    for (int q = 0; q < 4; ++q) {
        *m = m4[q] > *m ? m4[q] : *m;
        *c += c4[q];
    }
    *b |= _mm_movemask_ps(nan) != 0;
}
#endif

/* Largest entry (NaN ignored), whether any entry is NaN, and how many are > -inf. */
static void scan_row(const float *x, int64_t V, float *xmax, int *bad, int64_t *nfinite) {
    float m = -INFINITY;
    int b = 0;
    int64_t c = 0, i = 0;
#if defined(__SSE2__)
    __m128 mx = _mm_set1_ps(-INFINITY), my = mx, nan = _mm_setzero_ps(), ninf = mx;
    __m128i cnt = _mm_setzero_si128();
    for (; i + 8 <= V; i += 8) {   /* two max chains; a NaN v leaves the max unchanged */
        __m128 v = _mm_loadu_ps(x + i), u = _mm_loadu_ps(x + i + 4);
        mx = _mm_max_ps(v, mx);
        my = _mm_max_ps(u, my);
        nan = _mm_or_ps(nan, _mm_cmpunord_ps(v, u));
        cnt = _mm_sub_epi32(_mm_sub_epi32(cnt, _mm_castps_si128(_mm_cmpgt_ps(v, ninf))),
                            _mm_castps_si128(_mm_cmpgt_ps(u, ninf)));
    }
    scan_fold(_mm_max_ps(mx, my), nan, cnt, &m, &b, &c);
#endif
    for (; i < V; ++i) {
        float v = x[i];
        m = v > m ? v : m;
        b |= v != v;
        c += v > -INFINITY;
    }
    *xmax = m;
    *bad = b;
    *nfinite = c;
}

/* Bit j set iff w[j] >= bar, for the 16 words at w (one test when none is). */
static inline int words_at_least16(const uint32_t *w, uint32_t bar) {
    if (bar == 0u) return 0xFFFF;
#if defined(__SSE2__)
    const __m128i sign = _mm_set1_epi32((int)0x80000000u);
    __m128i t = _mm_set1_epi32((int)((bar - 1u) ^ 0x80000000u));
    __m128 a = _mm_castsi128_ps(_mm_cmpgt_epi32(_mm_xor_si128(_mm_loadu_si128((const __m128i *)w), sign), t));
    __m128 b = _mm_castsi128_ps(_mm_cmpgt_epi32(_mm_xor_si128(_mm_loadu_si128((const __m128i *)(w + 4)), sign), t));
    __m128 c = _mm_castsi128_ps(_mm_cmpgt_epi32(_mm_xor_si128(_mm_loadu_si128((const __m128i *)(w + 8)), sign), t));
    __m128 d = _mm_castsi128_ps(_mm_cmpgt_epi32(_mm_xor_si128(_mm_loadu_si128((const __m128i *)(w + 12)), sign), t));
    if (!_mm_movemask_ps(_mm_or_ps(_mm_or_ps(a, b), _mm_or_ps(c, d)))) return 0;
    return _mm_movemask_ps(a) | _mm_movemask_ps(b) << 4 | _mm_movemask_ps(c) << 8
           | _mm_movemask_ps(d) << 12;
#else
    int mask = 0;
    for (int j = 0; j < 16; ++j) mask |= (w[j] >= bar) << j;
    return mask;
#endif
}

/* The first i with x[i] == v (v occurs in x[0..n)). */
static int64_t first_equal(const float *x, int64_t n, float v) {
    int64_t i = 0;
#if defined(__SSE2__)
    __m128 vv = _mm_set1_ps(v);
    for (; i + 16 <= n; i += 16) {
        int mask = _mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(x + i), vv))
                   | _mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(x + i + 4), vv)) << 4
                   | _mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(x + i + 8), vv)) << 8
                   | _mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(x + i + 12), vv)) << 12;
        if (mask) return i + __builtin_ctz((unsigned)mask);
    }
#endif
    while (i < n - 1 && x[i] != v) ++i;
    return i;
}

/* Largest entry of x[0..n), NaN-free. */
static float block_max(const float *x, int64_t n) {
    float m = -INFINITY;
    int64_t i = 0;
#if defined(__SSE2__)
    __m128 mx = _mm_set1_ps(-INFINITY), my = mx, mz = mx, mw = mx;   /* four chains */
    for (; i + 16 <= n; i += 16) {
        mx = _mm_max_ps(_mm_loadu_ps(x + i), mx);
        my = _mm_max_ps(_mm_loadu_ps(x + i + 4), my);
        mz = _mm_max_ps(_mm_loadu_ps(x + i + 8), mz);
        mw = _mm_max_ps(_mm_loadu_ps(x + i + 12), mw);
    }
    mx = _mm_max_ps(_mm_max_ps(mx, my), _mm_max_ps(mz, mw));
    for (; i + 4 <= n; i += 4) mx = _mm_max_ps(_mm_loadu_ps(x + i), mx);
    float m4[4];
    _mm_storeu_ps(m4, mx);
    for (int j = 0; j < 4; ++j) m = m4[j] > m ? m4[j] : m;
#endif
    for (; i < n; ++i) m = x[i] > m ? x[i] : m;
    return m;
}

/* z descending, then index ascending. */
static int by_z(const void *pa, const void *pb) {
    const gk_cand *a = pa, *b = pb;
    if (a->z != b->z) return a->z > b->z ? -1 : 1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

/* key descending, then index ascending. */
static int by_key(const void *pa, const void *pb) {
    const gk_cand *a = pa, *b = pb;
    if (a->key != b->key) return a->key > b->key ? -1 : 1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

/* Move h[i] down the min-heap h[0..k) until both children are >= it. */
static void heap_sift_down(float *h, int64_t k, int64_t i) {
    float v = h[i];
    for (;;) {
        int64_t l = 2 * i + 1, m = l;
        if (l >= k) break;
        if (l + 1 < k && h[l + 1] < h[l]) m = l + 1;
        if (!(h[m] < v)) break;
        h[i] = h[m];
        i = m;
    }
    h[i] = v;
}

/* One pass over x[0..V): the largest entry (NaN ignored), whether any entry is NaN, how
 * many are > -inf, and, for 1 <= k <= V, the k-th largest entry with multiplicity (*kth)
 * by a k-element min-heap: 16 logits per SIMD compare against the heap's root, O(log k)
 * per replacement. Returns 0 when the heap cannot be allocated. */
static int select_scan(const float *x, int64_t V, int64_t k, float *kth, float *xmax, int *bad,
                       int64_t *nfinite) {
    if (k <= 0) {
        scan_row(x, V, xmax, bad, nfinite);
        return 1;
    }
    float *h = malloc((size_t)k * sizeof(float));
    if (!h) return 0;
    scan_row(x, k, xmax, bad, nfinite);
    memcpy(h, x, (size_t)k * sizeof(float));
    for (int64_t i = k / 2 - 1; i >= 0; --i) heap_sift_down(h, k, i);
    float m = *xmax;
    int b = *bad;
    int64_t c = *nfinite, j = k;
#if defined(__SSE2__)
    __m128 mx = _mm_set1_ps(-INFINITY), nan = _mm_setzero_ps(), ninf = _mm_set1_ps(-INFINITY);
    __m128i cnt = _mm_setzero_si128();
    for (; j + 16 <= V; j += 16) {
        __m128 v[4], any = _mm_setzero_ps(), root = _mm_set1_ps(h[0]);
        for (int q = 0; q < 4; ++q) {
            v[q] = _mm_loadu_ps(x + j + 4 * q);
            mx = _mm_max_ps(v[q], mx);
            nan = _mm_or_ps(nan, _mm_cmpunord_ps(v[q], v[q]));
            cnt = _mm_sub_epi32(cnt, _mm_castps_si128(_mm_cmpgt_ps(v[q], ninf)));
            any = _mm_or_ps(any, _mm_cmpgt_ps(v[q], root));
        }
        if (_mm_movemask_ps(any))
            for (int64_t i = j; i < j + 16; ++i)
                if (x[i] > h[0]) {
                    h[0] = x[i];
                    heap_sift_down(h, k, 0);
                }
    }
    scan_fold(mx, nan, cnt, &m, &b, &c);
#endif
    float tail_max;
    int tail_bad;
    int64_t tail_count;
    scan_row(x + j, V - j, &tail_max, &tail_bad, &tail_count);
    m = tail_max > m ? tail_max : m;
    b |= tail_bad;
    c += tail_count;
    for (; j < V; ++j)
        if (x[j] > h[0]) {
            h[0] = x[j];
            heap_sift_down(h, k, 0);
        }
    *kth = h[0];
    *xmax = m;
    *bad = b;
    *nfinite = c;
    free(h);
    return 1;
}

/* Every i with z_i = fl32(x_i / T) >= fl32(L / T) and z_i > -inf, with its z. Exact:
 * x_i >= L is kept by monotonicity; below xlo the quotient is provably smaller; the band
 * between is divided. z_i = -inf is a masked token even when x_i is finite (x_i / T
 * underflows, e.g. a finfo.min mask with T < 1), as in the PyTorch path. */
static int gather_one(const float *x, int64_t i, float T, float L, float vk, double xlo,
                      gk_cands *out) {
    float v = x[i], z = v / T;
    if (z > -INFINITY && (L == -INFINITY || ((double)v >= xlo && (v >= L || z >= vk))))
        return cands_push(out, z, i);
    return 1;
}

static int gather(const float *x, int64_t V, float T, float L, gk_cands *out) {
    out->n = 0;
    float vk = L / T;
    double xlo = L == -INFINITY ? -INFINITY
                 : (double)L - fabs((double)L) * 0x1p-20 - (double)T * 0x1p-100;
    float below = (float)xlo;   /* a float below xlo: every v >= xlo has v > below */
    while ((double)below >= xlo && below > -INFINITY) below = nextafterf(below, -INFINITY);
    int64_t i = 0;
    for (; i + 16 <= V; i += 16)
        for (int mask = gt16(x + i, below); mask; mask &= mask - 1)
            if (!gather_one(x, i + __builtin_ctz((unsigned)mask), T, L, vk, xlo, out)) return 0;
    for (; i < V; ++i)
        if (!gather_one(x, i, T, L, vk, xlo, out)) return 0;
    return 1;
}

/* Keep the sorted candidates that pass top-p (p < 1) and min-p; returns how many. */
static int64_t cut(gk_cand *c, int64_t nc, double p, double S, double m, double log_min_p) {
    int64_t kept = nc;
    if (p < 1.0) {
        double target = p * S, run = 0.0;
        int64_t i = 0;
        while (i < nc && run < target) {
            float z = c[i].z;
            while (i < nc && c[i].z == z) run += c[i++].w;
        }
        kept = i;
    }
    int64_t j = 0;
    while (j < kept && (double)c[j].z - m >= log_min_p) ++j;
    return j;
}

/* Noise for the kept candidates, then the n best keys to the front (sorted). */
static void race_candidates(gk_cand *c, int64_t kept, int64_t n, uint64_t seed, uint64_t key) {
    for (int64_t j = 0; j < kept; ++j) {
        float g;
        gk_fill_gumbel_f32(seed, key, 0, c[j].idx, 1, &g);
        c[j].key = c[j].z + g;
    }
    if (n == 1) {
        int64_t b = 0;
        for (int64_t j = 1; j < kept; ++j)
            if (c[j].key > c[b].key || (c[j].key == c[b].key && c[j].idx < c[b].idx)) b = j;
        gk_cand t = c[0]; c[0] = c[b]; c[b] = t;
    } else {
        qsort(c, (size_t)kept, sizeof(gk_cand), by_key);
    }
}

/* ---------------------------------------------------------------- top-p threshold */

#define GK_RADIX_BITS 11   /* bits of a z key per step of the refinement */

/* A token of the bin where the nucleus ends: its weight, z, and z's key. */
typedef struct {
    double w;
    float z;
    uint32_t key;
} gk_edge;

/* Order-preserving key of z (larger z, larger key; -0 and +0 share one). */
static inline uint32_t z_key(float z) {
    uint32_t u;
    z = z == 0.0f ? 0.0f : z;
    memcpy(&u, &z, 4);
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

/* z[j] = fl32(x[j] / T) for the 16 floats at x, and bit j set iff z[j] falls in histogram
 * bin `bin` of top_p_cut: q = -(z - m) * 4 in [bin, bin + 1) (in [bin, inf] for the last
 * bin, where hi is NaN), the operations of its first pass, so the same tokens. */
static inline int bin16(const float *x, float T, double m, double lo, double hi, float *z) {
    int mask = 0;
#if defined(__SSE2__)
    __m128 tv = _mm_set1_ps(T);
    __m128d mv = _mm_set1_pd(m), k = _mm_set1_pd(-(double)GK_BINS_PER_UNIT);
    __m128d lv = _mm_set1_pd(lo), hv = _mm_set1_pd(hi);
    for (int j = 0; j < 16; j += 4) {
        __m128 zj = _mm_div_ps(_mm_loadu_ps(x + j), tv);
        _mm_storeu_ps(z + j, zj);
        __m128d a = _mm_mul_pd(_mm_sub_pd(_mm_cvtps_pd(zj), mv), k);
        __m128d b = _mm_mul_pd(_mm_sub_pd(_mm_cvtps_pd(_mm_movehl_ps(zj, zj)), mv), k);
        int ma = _mm_movemask_pd(_mm_andnot_pd(_mm_cmpge_pd(a, hv), _mm_cmpge_pd(a, lv)));
        int mb = _mm_movemask_pd(_mm_andnot_pd(_mm_cmpge_pd(b, hv), _mm_cmpge_pd(b, lv)));
        mask |= (ma | mb << 2) << j;
    }
#else
    for (int j = 0; j < 16; ++j) {
        z[j] = x[j] / T;
        double q = ((double)z[j] - m) * -(double)GK_BINS_PER_UNIT;
        mask |= (q >= lo && !(q >= hi)) << j;
    }
#endif
    return mask;
}

/* bin16 over the 16 floats from x[i] (NaN past V, which no bin holds). */
static inline int bin16_at(const float *x, int64_t i, int64_t V, float T, double m, double lo,
                           double hi, float *z) {
    if (V - i >= 16) return bin16(x + i, T, m, lo, hi, z);
    float pad[16];
    for (int j = 0; j < 16; ++j) pad[j] = i + j < V ? x[i + j] : NAN;
    return bin16(pad, T, m, lo, hi, z);
}

/* e[j].w = exp(e[j].z - m) for the n edge tokens, by the vector loop of `weights`. */
static void edge_weights(gk_edge *e, int64_t n, double m) {
    float z[GK_SAMPLE_CHUNK];
    double d[GK_SAMPLE_CHUNK], w[GK_SAMPLE_CHUNK];
    for (int64_t c0 = 0; c0 < n; c0 += GK_SAMPLE_CHUNK) {
        int64_t len = n - c0 < GK_SAMPLE_CHUNK ? n - c0 : GK_SAMPLE_CHUNK;
        for (int64_t j = 0; j < len; ++j) z[j] = e[c0 + j].z;
        weights(z, len, 1.0f, m, d, w);   /* z / 1 = z: the same d and w as pass 1 */
        for (int64_t j = 0; j < len; ++j) e[c0 + j].w = w[j];
    }
}

/* The top-p boundary of a row without top-k: the smallest z kept (*zcut), so that top-p
 * keeps exactly the tokens with z >= *zcut (every kept token with finite z).
 *
 * A group of equal z is kept iff the mass B of the tokens with a larger z is < p * S.
 * Pass 1 builds a histogram of the weights over m - z in quarter units and S, its sum;
 * walking the bins from the top, B before the first bin whose running sum reaches p * S
 * is below p * S, and B after it is not. Pass 2 finds that bin's tokens; if they share
 * one z, that is the boundary; otherwise a radix walk over the bits where their keys
 * differ (GK_RADIX_BITS a step, the buckets from the top, each bucket's mass summed in
 * column order) narrows them the same way to one value of z. B is thus summed bucket by
 * bucket: the definition up to float64 rounding, in an order fixed by the row alone
 * (threads and batch never change it), at a cost of two passes over the row and a few
 * over one bin, whatever the nucleus size. If rounding lets no bucket reach p * S, the
 * lowest non-empty one is the boundary. Returns 0 when the bin's buffer cannot be
 * allocated. */
/* Pass 1 of top_p_cut: the histogram of the weights over m - z in quarter units, its
 * total S, and the first bin from the top whose running sum reaches p * S; *above is the
 * mass of the bins above it and *target = p * S. */
static int boundary_bin(const float *x, int64_t V, float T, double m, double p, double *above,
                        double *target) {
    /* four histograms, so that a run of one bin is four chains of additions, not one */
    double hist[4][GK_BINS] = {{0.0}}, S = 0.0, mass[GK_BINS];
    double d[GK_SAMPLE_CHUNK], w[GK_SAMPLE_CHUNK];
    for (int64_t c0 = 0; c0 < V; c0 += GK_SAMPLE_CHUNK) {
        int64_t len = V - c0 < GK_SAMPLE_CHUNK ? V - c0 : GK_SAMPLE_CHUNK;
        weights(x + c0, len, T, m, d, w);
        for (int64_t i = 0; i < len; ++i) {
            double q = -d[i] * GK_BINS_PER_UNIT;
            hist[i & 3][q < GK_BINS - 1 ? (int)q : GK_BINS - 1] += w[i];
        }
    }
    for (int b = 0; b < GK_BINS; ++b) {
        mass[b] = (hist[0][b] + hist[1][b]) + (hist[2][b] + hist[3][b]);
        S += mass[b];
    }
    *target = p * S;
    *above = 0.0;
    int bin = 0;
    while (bin < GK_BINS - 1 && *above + mass[bin] < *target) *above += mass[bin++];
    return bin;
}

/* Pass 2 of top_p_cut: how many tokens fall in the bin [lo, hi), and their least and
 * greatest z. */
static int64_t bin_extent(const float *x, int64_t V, float T, double m, double lo, double hi,
                          float *zmin, float *zmax) {
    float z[16];
    int64_t n = 0;
    *zmin = INFINITY;
    *zmax = -INFINITY;
    for (int64_t i = 0; i < V; i += 16) {
        int mask = bin16_at(x, i, V, T, m, lo, hi, z);
        if (mask == 0xFFFF) {   /* a whole block in the bin: no per-token loop */
            for (int j = 0; j < 16; ++j) {
                *zmin = z[j] < *zmin ? z[j] : *zmin;
                *zmax = z[j] > *zmax ? z[j] : *zmax;
            }
            n += 16;
            continue;
        }
        for (; mask; mask &= mask - 1) {
            float v = z[__builtin_ctz((unsigned)mask)];
            *zmin = v < *zmin ? v : *zmin;
            *zmax = v > *zmax ? v : *zmax;
            n++;
        }
    }
    return n;
}

/* The radix walk of top_p_cut over the n tokens of the boundary bin (weights set), the
 * top GK_RADIX_BITS of the bits where their keys still differ per step, until one key (one
 * value of z) is left; returns that z. */
static float radix_walk(gk_edge *e, int64_t n, double above, double target) {
    uint32_t kmin = UINT32_MAX, kmax = 0;
    for (int64_t j = 0; j < n; ++j) {
        kmin = e[j].key < kmin ? e[j].key : kmin;
        kmax = e[j].key > kmax ? e[j].key : kmax;
    }
    while (n > 0 && kmin != kmax) {
        int shift = 31 - __builtin_clz(kmin ^ kmax) - (GK_RADIX_BITS - 1);
        shift = shift > 0 ? shift : 0;
        const uint32_t mask = (1u << GK_RADIX_BITS) - 1u;
        double mass[1 << GK_RADIX_BITS] = {0.0};
        int64_t seen[1 << GK_RADIX_BITS] = {0};
        for (int64_t j = 0; j < n; ++j) {
            uint32_t r = e[j].key >> shift & mask;
            mass[r] += e[j].w;
            seen[r] += 1;
        }
        int sel = -1;
        double before = above;
        for (int r = (int)mask; r >= 0; --r) {
            if (!seen[r]) continue;
            sel = r;
            before = above;
            if (above + mass[r] >= target) break;
            above += mass[r];
        }
        above = before;
        int64_t kept = 0;
        kmin = UINT32_MAX;
        kmax = 0;
        for (int64_t j = 0; j < n; ++j)
            if ((e[j].key >> shift & mask) == (uint32_t)sel) {
                kmin = e[j].key < kmin ? e[j].key : kmin;
                kmax = e[j].key > kmax ? e[j].key : kmax;
                e[kept++] = e[j];
            }
        n = kept;
    }
    return e[0].z;
}

static int top_p_cut(const float *x, int64_t V, float T, double m, double p, float *zcut) {
    double above, target;
    int bin = boundary_bin(x, V, T, m, p, &above, &target);
    /* when the bin's tokens share one z (all logits equal, say), that is the boundary and
     * nothing is stored */
    double lo = bin, hi = bin < GK_BINS - 1 ? bin + 1.0 : NAN;
    float zmin, zmax, z[16];
    int64_t n = bin_extent(x, V, T, m, lo, hi, &zmin, &zmax);
    if (n == 0 || zmin == zmax) {   /* n == 0: the last bin, empty; every token is kept */
        *zcut = n == 0 ? -INFINITY : zmin;
        return 1;
    }
    gk_edge *e = malloc((size_t)n * sizeof(gk_edge));
    if (!e) return 0;
    n = 0;
    for (int64_t i = 0; i < V; i += 16)
        for (int mask = bin16_at(x, i, V, T, m, lo, hi, z); mask; mask &= mask - 1) {
            float v = z[__builtin_ctz((unsigned)mask)];
            e[n].z = v;
            e[n++].key = z_key(v);
        }
    edge_weights(e, n, m);
    *zcut = radix_walk(e, n, above, target);
    free(e);
    return 1;
}

/* ---------------------------------------------------------------- Gumbel race over a row */

typedef struct {
    gk_cand *h;      /* min-heap by (key, -idx): the worst of the n best at h[0] */
    int64_t n, size;
    double bar;      /* a token needs z + G >= bar to beat h[0] (-inf until the heap is full) */
    double xcut;     /* a logit below xcut cannot beat h[0] whatever its noise */
} gk_race;

static int worse(const gk_cand *a, const gk_cand *b) {
    return a->key < b->key || (a->key == b->key && a->idx > b->idx);
}

static void race_sift_down(gk_race *r) {
    int64_t i = 0, n = r->size;
    for (;;) {
        int64_t l = 2 * i + 1, rr = l + 1, m = i;
        if (l < n && worse(&r->h[l], &r->h[m])) m = l;
        if (rr < n && worse(&r->h[rr], &r->h[m])) m = rr;
        if (m == i) return;
        gk_cand t = r->h[i]; r->h[i] = r->h[m]; r->h[m] = t;
        i = m;
    }
}

/* Bars from the current n-th best key: skipped tokens have key < best, strictly.
 * The margin covers the noise's rounding (< 1e-5) and float32 rounding of z and z + G. */
static void race_thresholds(gk_race *r, double m, float T) {
    double best = r->h[0].key;
    r->bar = best - (1e-4 + 0x1p-20 * (fabs(best) + fabs(m) + 32.0));
    r->xcut = (r->bar - GK_GUMBEL_BOUND) * (double)T;
}

/* Words below the result give G < t: P(G < t) = exp(-exp(-t)) >= 1 - exp(-t), minus a margin. */
static uint32_t word_bar(double t) {
    if (!(t > 0.0)) return 0u;
    double wm = floor((1.0 - exp(-t)) * 0x1p32) - 2.0;
    return wm <= 0.0 ? 0u : wm >= 4294967295.0 ? 4294967295u : (uint32_t)wm;
}

static void race_offer(gk_race *r, float z, float g, int64_t idx, double m, float T) {
    gk_cand c = {z, z + g, 0.0, idx};
    if (r->size < r->n) {
        int64_t i = r->size++;
        while (i > 0) {
            int64_t parent = (i - 1) / 2;
            if (!worse(&c, &r->h[parent])) break;
            r->h[i] = r->h[parent];
            i = parent;
        }
        r->h[i] = c;
        if (r->size == r->n) race_thresholds(r, m, T);
    } else if (worse(&r->h[0], &c)) {
        r->h[0] = c;
        race_sift_down(r);
        race_thresholds(r, m, T);
    }
}

/* The random words of columns [col0, col0 + n) (col0 a multiple of 4): the Philox of the
 * kernels' active instruction set, bit-identical to gk_philox4x32_10 of noise.h. */
static void race_words(uint64_t seed, uint64_t key, int64_t col0, int64_t n, uint32_t *w) {
    gk_ops()->words(seed, key, 0, col0, n, w);
}

/* The n best keys over every kept token (finite, z >= zcut for top-p, passing min-p), by
 * the exponential race in log space. The first max (key known to be kept) seeds the race;
 * afterwards a column is evaluated only if its chunk holds a logit >= xcut (else
 * z + G_max < bar) and a z >= zcut, and its word is >= the chunk's word bar (a word below
 * gives G < bar - z_chunk_max <= bar - z). Both skips are strict, so the result equals
 * the full argmax over all keys, ties to the lowest index. */
static int race_row(const float *x, int64_t V, float T, double m, int64_t imax, double log_min_p,
                    float zcut, uint64_t seed, uint64_t key, int64_t n, gk_cand *out) {
    gk_race r = {malloc((size_t)n * sizeof(gk_cand)), n, 0, -INFINITY, -INFINITY};
    if (!r.h) return 0;
    uint32_t w[GK_SAMPLE_CHUNK];
    float g;
    gk_fill_gumbel_f32(seed, key, 0, imax, 1, &g);
    race_offer(&r, (float)m, g, imax, m, T);
    for (int64_t c0 = 0; c0 < V; c0 += GK_SAMPLE_CHUNK) {
        int64_t len = V - c0 < GK_SAMPLE_CHUNK ? V - c0 : GK_SAMPLE_CHUNK;
        const float *xc = x + c0;
        float cmax = block_max(xc, len);
        if ((double)cmax < r.xcut || cmax == -INFINITY) continue;
        if (cmax / T < zcut) continue;   /* no token of the chunk passes top-p */
        uint32_t wmin = word_bar(r.bar - (double)(cmax / T));   /* z <= cmax / T here */
        race_words(seed, key, c0, len, w);
        for (int64_t i0 = 0; i0 < len; i0 += 16) {
            int mask = len - i0 >= 16 ? words_at_least16(w + i0, wmin) : (1 << (len - i0)) - 1;
            for (; mask; mask &= mask - 1) {
                int64_t i = i0 + __builtin_ctz((unsigned)mask);
                if (w[i] < wmin || (double)xc[i] < r.xcut || c0 + i == imax) continue;
                float z = xc[i] / T;
                if (z == -INFINITY || (double)z - m < log_min_p) continue;
                if (z < zcut) continue;
                race_offer(&r, z, gk_gumbel_f32(w[i]), c0 + i, m, T);
            }
        }
    }
    int64_t got = r.size;
    qsort(r.h, (size_t)got, sizeof(gk_cand), by_key);
    memcpy(out, r.h, (size_t)got * sizeof(gk_cand));
    free(r.h);
    return got == n ? 1 : -1;
}

/* ---------------------------------------------------------------- one row */

/* Temperature 0: the n largest logits, ties to the lowest index; log-probabilities
 * -log(number of maxima) for the maxima, -inf for the others. */
static int sample_greedy(const float *x, int64_t V, float xmax, int64_t nfinite, int64_t n,
                         int64_t *tok, float *lp) {
    if (nfinite < n) return GK_SAMPLE_TOO_FEW;
    int64_t nmax = 0;
    for (int64_t i = 0; i < V; ++i) nmax += x[i] == xmax;
    gk_cands c = {0};
    float L = xmax;
    float unused_max;
    int unused_bad;
    int64_t unused_count;
    if (n > 1 && !select_scan(x, V, n, &L, &unused_max, &unused_bad, &unused_count))
        return GK_SAMPLE_NO_MEMORY;
    if (!gather(x, V, 1.0f, L, &c)) { free(c.c); return GK_SAMPLE_NO_MEMORY; }
    qsort(c.c, (size_t)c.n, sizeof(gk_cand), by_z);
    for (int64_t j = 0; j < n; ++j) {
        tok[j] = c.c[j].idx;
        if (lp) lp[j] = c.c[j].z == xmax ? (float)(0.0 - log((double)nmax)) : -INFINITY;
    }
    free(c.c);
    return GK_SAMPLE_OK;
}

/* Top-k rows: the candidates z >= z_k, sorted, cut by top-p and min-p (`cut`) and raced;
 * on success *best holds the n winners first (the caller frees it) and *S_kept the kept
 * weight. */
static int sample_top_k(const float *x, int64_t V, float T, float kth, double m, double p,
                        double log_min_p, uint64_t seed, uint64_t key, int64_t n,
                        gk_cand **best, double *S_kept) {
    gk_cands c = {0};
    double S = 0.0;
    if (!gather(x, V, T, kth, &c)) { free(c.c); return GK_SAMPLE_NO_MEMORY; }
    qsort(c.c, (size_t)c.n, sizeof(gk_cand), by_z);
    for (int64_t j = 0; j < c.n; ++j) S += c.c[j].w = gk_exp_nonpos((double)c.c[j].z - m);
    int64_t kept = cut(c.c, c.n, p, S, m, log_min_p);
    if (kept < n) { free(c.c); return GK_SAMPLE_TOO_FEW; }
    for (int64_t j = 0; j < kept; ++j) *S_kept += c.c[j].w;
    race_candidates(c.c, kept, n, seed, key);
    *best = c.c;
    return GK_SAMPLE_OK;
}

/* Rows without top-k: top-p is a threshold on z too (top_p_cut), so the row races with
 * the min-p and top-p thresholds; *best gets the n winners (the caller frees it) and, if
 * want_mass, *S_kept the kept weight. */
static int sample_thresholds(const float *x, int64_t V, float T, float xmax, double m,
                             double p, double log_min_p, uint64_t seed, uint64_t key, int64_t n,
                             int want_mass, gk_cand **best, double *S_kept) {
    float zcut = -INFINITY;
    if (p < 1.0 && !top_p_cut(x, V, T, m, p, &zcut)) return GK_SAMPLE_NO_MEMORY;
    int64_t imax = first_equal(x, V, xmax);
    gk_cand *won = malloc((size_t)n * sizeof(gk_cand));
    if (!won) return GK_SAMPLE_NO_MEMORY;
    int got = race_row(x, V, T, m, imax, log_min_p, zcut, seed, key, n, won);
    if (got <= 0) { free(won); return got == 0 ? GK_SAMPLE_NO_MEMORY : GK_SAMPLE_TOO_FEW; }
    /* d = z - m rounds monotonically: d > dcut implies z > zcut and d < dcut implies
     * z < zcut, so only d == dcut needs z itself */
    double d[GK_SAMPLE_CHUNK], w[GK_SAMPLE_CHUNK], dcut = (double)zcut - m;
    for (int64_t c0 = 0; want_mass && c0 < V; c0 += GK_SAMPLE_CHUNK) {
        int64_t len = V - c0 < GK_SAMPLE_CHUNK ? V - c0 : GK_SAMPLE_CHUNK;
        weights(x + c0, len, T, m, d, w);
        for (int64_t i = 0; i < len; ++i) {
            int top_p = d[i] > dcut || (d[i] == dcut && x[c0 + i] / T >= zcut);
            *S_kept += d[i] >= log_min_p && top_p ? w[i] : 0.0;
        }
    }
    *best = won;
    return GK_SAMPLE_OK;
}

static int sample_row(const float *x, int64_t V, float T, int64_t k, double p, double log_min_p,
                      uint64_t seed, uint64_t key, int64_t n, int64_t *tok, float *lp) {
    float xmax, kth = -INFINITY;
    int bad;
    int64_t nfinite;
    /* one pass: maximum, checks and (top-k rows) the k-th largest logit */
    if (!select_scan(x, V, T != 0.0f && k > 0 && k < V ? k : 0, &kth, &xmax, &bad, &nfinite))
        return GK_SAMPLE_NO_MEMORY;
    if (bad || xmax == INFINITY) return GK_SAMPLE_BAD_LOGIT;
    if (nfinite == 0) return GK_SAMPLE_NO_TOKEN;
    if (T == 0.0f) return sample_greedy(x, V, xmax, nfinite, n, tok, lp);

    float zm32 = xmax / T;
    if (isinf(zm32)) return GK_SAMPLE_OVERFLOW;
    double m = zm32, S_kept = 0.0;
    gk_cand *best = NULL;
    int status = k > 0 && k < nfinite
        ? sample_top_k(x, V, T, kth, m, p, log_min_p, seed, key, n, &best, &S_kept)
        : sample_thresholds(x, V, T, xmax, m, p, log_min_p, seed, key, n, lp != NULL, &best,
                            &S_kept);
    if (status != GK_SAMPLE_OK) return status;
    double lse = log(S_kept);
    for (int64_t j = 0; j < n; ++j) {
        tok[j] = best[j].idx;
        if (lp) lp[j] = (float)(((double)best[j].z - m) - lse);
    }
    free(best);
    return GK_SAMPLE_OK;
}

/* logits: [rows, V] float32 with row stride `stride`; per-row controls (temperature 0 =
 * greedy, top_k <= 0 = off, top_p = 1 = off, log_min_p = -inf = off), 64-bit seeds and row
 * keys. Writes tokens[rows, n] (-1 on a failed row), logprobs[rows, n] if not NULL
 * (-inf on a failed row) and status[rows] (GK_SAMPLE_*). Rows run in parallel. */
void gk_sample_f32(const float *logits, int64_t rows, int64_t V, int64_t stride,
                   const float *temperature, const int64_t *top_k, const double *top_p,
                   const double *log_min_p, const int64_t *seeds, const int64_t *keys,
                   int64_t n, int64_t *tokens, float *logprobs, int8_t *status, int threads) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t r = 0; r < rows; ++r) {
        int64_t *tok = tokens + r * n;
        float *lp = logprobs ? logprobs + r * n : NULL;
        int s = sample_row(logits + r * stride, V, temperature[r], top_k[r], top_p[r],
                           log_min_p[r], (uint64_t)seeds[r], (uint64_t)keys[r], n, tok, lp);
        status[r] = (int8_t)s;
        if (s != GK_SAMPLE_OK)
            for (int64_t j = 0; j < n; ++j) {
                tok[j] = -1;
                if (lp) lp[j] = -INFINITY;
            }
    }
}
