/* Fused row kernels: Gumbel-Softmax (soft/hard, per-row tau) forward and
 * backward, Gumbel-max, Binary/Hard Concrete forward and backward.
 *
 * Plain C on raw pointers (called through ctypes, see kernels/_lib.py). A
 * matrix argument is (data, dtype, row stride, column stride) in elements;
 * outputs are contiguous [rows, cols] in the compute dtype (float32, or
 * float64 for float64 inputs). Rows run in parallel (OpenMP, handed out
 * dynamically so that a thread delayed by other load does not hold the
 * others up); each row's noise depends only on (seed, row key, column), so
 * results do not depend on the thread count or schedule. Float32 rows go
 * through the vectorized primitives of the active instruction set (gk.h);
 * float64 rows use the scalar twin and libm.
 *
 * Logit validation is folded in: status[0] is the first row holding NaN or
 * +inf, status[1] the first row whose logits are all -inf, status[2] (the
 * Gumbel-Softmax only) the first row whose largest (x + G) / tau overflows the
 * compute dtype (-1: none); the Concrete kernels report the first NaN's flat
 * index in status[0] (their sigmoid saturates instead of overflowing).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gk.h"
#include "noise.h"

enum { GK_F32 = 0, GK_F64 = 1, GK_BF16 = 2, GK_F16 = 3 };
enum { GK_CHUNK = 1024 };

/* IEEE half -> float, exactly (no compiler support for _Float16 needed). */
static float gk_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exponent = (h >> 10) & 0x1Fu;
    uint32_t mantissa = h & 0x3FFu, bits;
    if (exponent == 0x1F) {
        bits = sign | 0x7F800000u | (mantissa << 13);
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else {
        float magnitude = (float)mantissa * 0x1p-24f; /* subnormal or zero, exact */
        memcpy(&bits, &magnitude, 4);
        bits |= sign;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Columns [c0, c0 + n) of a row starting at base, converted to float / double. */
#define GK_DEFINE_LOAD(T)                                                                   \
    static void gk_load_##T(const void *base, int dtype, int64_t cs, int64_t c0, int64_t n, \
                            T *out) {                                                       \
        switch (dtype) {                                                                    \
        case GK_F32:                                                                        \
            for (int64_t i = 0; i < n; ++i) out[i] = (T)((const float *)base)[(c0 + i) * cs];\
            break;                                                                          \
        case GK_F64:                                                                        \
            for (int64_t i = 0; i < n; ++i) out[i] = (T)((const double *)base)[(c0 + i) * cs]; \
            break;                                                                          \
        case GK_BF16:                                                                       \
            for (int64_t i = 0; i < n; ++i) {                                               \
                uint32_t bits = (uint32_t)((const uint16_t *)base)[(c0 + i) * cs] << 16;    \
                float f;                                                                    \
                memcpy(&f, &bits, 4);                                                       \
                out[i] = (T)f;                                                              \
            }                                                                               \
            break;                                                                          \
        default:                                                                            \
            for (int64_t i = 0; i < n; ++i)                                                 \
                out[i] = (T)gk_half_to_float(((const uint16_t *)base)[(c0 + i) * cs]);       \
        }                                                                                   \
    }

GK_DEFINE_LOAD(float)
GK_DEFINE_LOAD(double)

static size_t gk_size(int dtype) { return dtype == GK_F64 ? 8 : dtype == GK_F32 ? 4 : 2; }

static const char *gk_row(const void *data, int dtype, int64_t rs, int64_t r) {
    return (const char *)data + (size_t)(r * rs) * gk_size(dtype);
}

static void gk_record_min(int64_t *slot, int64_t value) {
#pragma omp critical(gk_status)
    if (*slot < 0 || value < *slot) *slot = value;
}

/* ----------------------------------------------------- float64 primitives */

static void gk_row_zpass_f64(const double *x, double *io, int64_t n, double inv_tau, int store,
                         int64_t col0, double *best, int64_t *arg, int *bad) {
    for (int64_t i = 0; i < n; ++i) {
        double z = x[i] + io[i];
        if (!(z < INFINITY)) *bad = 1;
        if (z > *best) {
            *best = z;
            *arg = col0 + i;
        }
        if (store) io[i] = z * inv_tau;
    }
}

static void gk_row_gumbel_argmax_f64(const double *x, int64_t n, uint64_t seed, uint64_t key,
                                     uint32_t stream, int64_t col0, double *best,
                                     int64_t *arg, int *bad) {
    double g[GK_CHUNK];
    gk_fill_gumbel_f64(seed, key, stream, col0, n, g);
    gk_row_zpass_f64(x, g, n, 1.0, 0, col0, best, arg, bad);
}

static double gk_row_expsum_f64(double *io, int64_t n, double m, double threshold,
                                int64_t *cand, int *ncand) {
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        if (io[i] >= threshold) gk_candidate(cand, ncand, i);
        io[i] = exp(io[i] - m);
        s += io[i];
    }
    return s;
}

static void gk_row_scale_f64(double *io, int64_t n, double c, double threshold, int64_t *cand,
                             int *ncand) {
    for (int64_t i = 0; i < n; ++i) {
        if (io[i] >= threshold) gk_candidate(cand, ncand, i);
        io[i] *= c;
    }
}

static void gk_row_one_hot_f64(double *out, int64_t n, int64_t arg) {
    memset(out, 0, (size_t)n * sizeof *out);
    out[arg] = 1;
}

static void gk_fence_f64(void) {}

static double gk_row_dot_f64(const double *a, const double *b, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
}

static void gk_row_softmax_grad_f64(const double *g, const double *y, double *out, int64_t n,
                                double s, double inv_tau) {
    for (int64_t i = 0; i < n; ++i) out[i] = y[i] * (g[i] - s) * inv_tau;
}

static void gk_row_concrete_f64(const double *x, const double *tau, double *io, int64_t n, int mode,
                            double gamma, double span) {
    for (int64_t i = 0; i < n; ++i) {
        double y = 1.0 / (1.0 + exp(-((x[i] + io[i]) / tau[i])));
        if (mode == 1) y = y > 0.5 ? 1.0 : 0.0;
        else if (mode == 2) y = fmin(fmax(y * span + gamma, 0.0), 1.0);
        io[i] = y;
    }
}

/* The float64 soft path forms the exact noise (fill, then zpass). */
static void gk_row_soft_zpass_f64(const double *x, double *io, int64_t n, uint64_t seed,
                                  uint64_t key, uint32_t stream, int64_t col0, double inv_tau,
                                  double *best, int *bad) {
    int64_t arg = -1;
    gk_fill_gumbel_f64(seed, key, stream, col0, n, io);
    gk_row_zpass_f64(x, io, n, inv_tau, 1, col0, best, &arg, bad);
}

typedef struct {
    void (*soft_zpass)(const double *, double *, int64_t, uint64_t, uint64_t, uint32_t, int64_t,
                       double, double *, int *);
    void (*gumbel_argmax)(const double *, int64_t, uint64_t, uint64_t, uint32_t, int64_t,
                          double *, int64_t *, int *);
    int (*race_ready)(const double *, int64_t, double *, int *);
    double (*race)(const double *, double *, int64_t, uint64_t, uint64_t, uint32_t, double,
                   double *);
    double (*expsum)(double *, int64_t, double, double, int64_t *, int *);
    void (*scale)(double *, int64_t, double, double, int64_t *, int *);
    void (*one_hot)(double *, int64_t, int64_t);
    void (*fence)(void);
    double (*dot)(const double *, const double *, int64_t);
    void (*softmax_grad)(const double *, const double *, double *, int64_t, double, double);
    void (*concrete)(const double *, const double *, double *, int64_t, int, double, double);
    int width;
    void (*lanes)(const double *, int64_t, const uint64_t *, const uint64_t *, uint32_t,
                  const double *, double *, int64_t *, int *, int);
} gk_ops_f64;

static const gk_ops_f64 gk_f64_ops = {
    .soft_zpass = gk_row_soft_zpass_f64,
    .race_ready = NULL, /* float64 keeps the exact noise throughout */
    .race = NULL,
    .gumbel_argmax = gk_row_gumbel_argmax_f64,
    .expsum = gk_row_expsum_f64,
    .scale = gk_row_scale_f64,
    .one_hot = gk_row_one_hot_f64,
    .fence = gk_fence_f64,
    .dot = gk_row_dot_f64,
    .softmax_grad = gk_row_softmax_grad_f64,
    .concrete = gk_row_concrete_f64,
    .width = 1,
    .lanes = NULL, /* float64 rows run one at a time, short or not */
};

static void gk_fill_f32(int kind, uint64_t seed, uint64_t key, uint32_t stream, int64_t col0,
                        int64_t n, float *out) {
    gk_ops()->fill[kind](seed, key, stream, col0, n, out);
}

static void gk_fill_f64(int kind, uint64_t seed, uint64_t key, uint32_t stream, int64_t col0,
                        int64_t n, double *out) {
    if (kind == GK_NOISE_GUMBEL) gk_fill_gumbel_f64(seed, key, stream, col0, n, out);
    else if (kind == GK_NOISE_EXPONENTIAL) gk_fill_exponential_f64(seed, key, stream, col0, n, out);
    else gk_fill_logistic_f64(seed, key, stream, col0, n, out);
}

/* A row's state (also the lanes primitive's): fine, NaN/+inf logits, all -inf,
 * max (x + G) / tau beyond the compute dtype's range. */
enum { GK_ROW_OK = 0, GK_ROW_BAD = 1, GK_ROW_EMPTY = 2, GK_ROW_OVERFLOW = 3 };

/* Rows per scheduling chunk: 4, or enough for about 8192 elements when rows are
 * short (a chunk costs an atomic, about what a row of 8 columns costs itself). */
static int64_t gk_rows_per_chunk(int64_t cols) {
    return cols >= 2048 || cols < 1 ? 4 : 8192 / cols;
}

/* The same for the elementwise (Concrete) kernels, which hand out pieces of at
 * most GK_CHUNK columns of a row, so that one long row (a 1-D gate vector)
 * still spreads over the threads: 4 pieces, or whole short rows as above. */
static int64_t gk_pieces_per_chunk(int64_t cols) {
    return cols > GK_CHUNK ? 4 : gk_rows_per_chunk(cols);
}

#define GK_SEED(r) ((uint64_t)seeds[(r) * seed_stride])
#define GK_KEY(r) (keys == NULL ? (uint64_t)(r) : (uint64_t)keys[(r) * key_stride])

/* ----------------------------------------------------------- the kernels */

#define GK_DEFINE_KERNELS(T, SUF, OPS, NATIVE)                                               \
    /* The first argmax of z = x + G over one row, G the exact noise (noise.h), among   */  \
    /* the candidate columns (increasing); -1 when the list overflowed.                  */  \
    static int64_t gk_exact_argmax_##SUF(const char *xrow, int xdtype, int64_t xcs,          \
                                         const int64_t *cand, int ncand, uint64_t seed,      \
                                         uint64_t key, uint32_t stream) {                    \
        if (ncand > GK_CANDIDATES) return -1;                                                \
        T top = -INFINITY;                                                                   \
        int64_t arg = -1;                                                                    \
        for (int j = 0; j < ncand; ++j) {                                                    \
            T xi;                                                                            \
            gk_load_##T(xrow, xdtype, xcs, cand[j], 1, &xi);                                 \
            T z = xi + gk_gumbel_##SUF(gk_word(seed, key, (uint64_t)cand[j], stream));       \
            if (z > top) {                                                                   \
                top = z;                                                                     \
                arg = cand[j];                                                               \
            }                                                                                \
        }                                                                                    \
        return arg;                                                                          \
    }                                                                                        \
                                                                                             \
    /* The first argmax of x + G over a whole row, with the exact noise; *top (if not   */  \
    /* NULL) gets the maximum.                                                           */  \
    static int gk_argmax_row_##SUF(const char *xrow, int xdtype, int64_t xcs, int direct,    \
                                   T *xbuf, int64_t cols, uint64_t seed, uint64_t key,       \
                                   uint32_t stream, int64_t *arg, T *top) {                  \
        T best = -INFINITY;                                                                  \
        int bad = 0;                                                                         \
        *arg = -1;                                                                           \
        for (int64_t c0 = 0; c0 < cols; c0 += GK_CHUNK) {                                    \
            int64_t n = cols - c0 < GK_CHUNK ? cols - c0 : GK_CHUNK;                         \
            const T *xc = direct ? (const T *)xrow + c0 : xbuf;                              \
            if (!direct) gk_load_##T(xrow, xdtype, xcs, c0, n, xbuf);                        \
            (OPS)->gumbel_argmax(xc, n, seed, key, stream, c0, &best, arg, &bad);            \
        }                                                                                    \
        if (top) *top = best;                                                                \
        return bad ? GK_ROW_BAD : *arg < 0 ? GK_ROW_EMPTY : GK_ROW_OK;                       \
    }                                                                                        \
                                                                                             \
    /* A row's relaxed sample softmax((x + G) / tau) into srow, and, if arg is not NULL, */  \
    /* the first argmax of x + G decided on the exact noise. The float32 soft pass uses  */  \
    /* float32-accurate noise G~, |z~ - z| < eps = 2^-16 + 2^-21 |z| for z = x + G, so   */  \
    /* the exact argmax is among the columns with z~ >= max z~ - 2 eps: few, listed     */  \
    /* while forming exp (or scaling, for the race) and decided on the exact noise.     */  \
    static int gk_soft_row_##SUF(const char *xrow, int xdtype, int64_t xcs, int direct,      \
                                 T *xbuf, int64_t cols, T tau, uint64_t seed, uint64_t key,  \
                                 uint32_t stream, T *srow, int64_t *arg) {                   \
        int64_t cand[GK_CANDIDATES];                                                         \
        int ncand = 0, bad = 0;                                                              \
        T best = -INFINITY, vmax, threshold = INFINITY;                                      \
        if ((OPS)->race && tau == 1 && direct &&                                             \
            (OPS)->race_ready((const T *)xrow, cols, &best, &bad)) {                         \
            T sum = (OPS)->race((const T *)xrow, srow, cols, seed, key, stream, best, &vmax);\
            if (arg) /* |z| <= |max x| + 80 + 23 */                                          \
                threshold = vmax * (T)exp(-(0x1p-15 + 0x1p-20 * (fabs((double)best) + 103)));\
            (OPS)->scale(srow, cols, (T)1 / sum, threshold, cand, &ncand);                   \
        } else {                                                                             \
            T inv = (T)1 / tau;                                                              \
            best = -INFINITY;                                                                \
            bad = 0;                                                                         \
            for (int64_t c0 = 0; c0 < cols; c0 += GK_CHUNK) {                                \
                int64_t n = cols - c0 < GK_CHUNK ? cols - c0 : GK_CHUNK;                     \
                const T *xc = direct ? (const T *)xrow + c0 : xbuf;                          \
                if (!direct) gk_load_##T(xrow, xdtype, xcs, c0, n, xbuf);                    \
                (OPS)->soft_zpass(xc, srow + c0, n, seed, key, stream, c0, inv, &best, &bad);\
            }                                                                                \
            if (bad) return GK_ROW_BAD;                                                      \
            if (best == -INFINITY) return GK_ROW_EMPTY;                                      \
            if (!isfinite(best * inv)) return GK_ROW_OVERFLOW; /* exp would give NaN */      \
            if (arg) threshold = (best - ((T)0x1p-15 + (T)fabs((double)best) * (T)0x1p-20)) * inv; \
            T sum = (OPS)->expsum(srow, cols, best * inv, threshold, cand, &ncand);          \
            (OPS)->scale(srow, cols, (T)1 / sum, INFINITY, cand, &ncand);                    \
        }                                                                                    \
        if (arg) {                                                                           \
            *arg = gk_exact_argmax_##SUF(xrow, xdtype, xcs, cand, ncand, seed, key, stream); \
            if (*arg < 0)                                                                    \
                return gk_argmax_row_##SUF(xrow, xdtype, xcs, direct, xbuf, cols, seed, key, \
                                           stream, arg, NULL);                               \
        }                                                                                    \
        return GK_ROW_OK;                                                                    \
    }                                                                                        \
                                                                                             \
    /* gk_gumbel_softmax for short rows (gk.h, GK_LANE_COLS): W rows at a time, one per  */  \
    /* vector lane (OPS->lanes), transposed in and out of small buffers. Hard samples,   */  \
    /* index and status are those of the row loop; the relaxed sample agrees with it to  */  \
    /* float32 accuracy. One-hot rows are written with plain stores.                     */  \
    static void gk_gumbel_softmax_lanes_##SUF(                                               \
        const void *x, int xdtype, int64_t xrs, int64_t xcs, int64_t rows, int64_t cols,     \
        const T *tau, int64_t tau_stride, const int64_t *seeds, int64_t seed_stride,         \
        const int64_t *keys, int64_t key_stride, uint32_t stream, T *y, T *soft, int hard,   \
        int64_t *index, int nthreads, int64_t *status) {                                     \
        const int width = (OPS)->width, direct = xdtype == NATIVE && xcs == 1;               \
        const int64_t groups = (rows + width - 1) / width;                                   \
        const int64_t per = gk_rows_per_chunk(cols) / width, chunk = per > 1 ? per : 1;      \
        _Pragma("omp parallel num_threads(nthreads)") {                                      \
            T xt[GK_LANE_COLS * GK_MAX_LANES], yt[GK_LANE_COLS * GK_MAX_LANES];              \
            T row[GK_LANE_COLS], inv[GK_MAX_LANES];                                          \
            uint64_t seed[GK_MAX_LANES], key[GK_MAX_LANES];                                  \
            int64_t arg[GK_MAX_LANES];                                                       \
            int state[GK_MAX_LANES];                                                         \
            T *sample = hard && soft == NULL ? NULL : yt;                                    \
            _Pragma("omp for schedule(dynamic, chunk) nowait")                               \
            for (int64_t g = 0; g < groups; ++g) {                                           \
                for (int l = 0; l < width; ++l) {                                            \
                    int64_t r = g * width + l;                                               \
                    const T *xr = row;                                                       \
                    if (r < rows) {                                                          \
                        if (direct) xr = (const T *)gk_row(x, xdtype, xrs, r);               \
                        else gk_load_##T(gk_row(x, xdtype, xrs, r), xdtype, xcs, 0, cols, row); \
                        seed[l] = GK_SEED(r);                                                \
                        key[l] = GK_KEY(r);                                                  \
                        inv[l] = (T)1 / tau[r * tau_stride];                                 \
                    } else { /* lanes past the last row: finite logits, unused */            \
                        memset(row, 0, sizeof row);                                          \
                        seed[l] = key[l] = 0;                                                \
                        inv[l] = 1;                                                          \
                    }                                                                        \
                    for (int64_t c = 0; c < cols; ++c) xt[c * width + l] = xr[c];            \
                }                                                                            \
                (OPS)->lanes(xt, cols, seed, key, stream, inv, sample, arg, state,           \
                             hard || index);                                                 \
                for (int l = 0; l < width && g * width + l < rows; ++l) {                    \
                    int64_t r = g * width + l;                                               \
                    if (state[l] != GK_ROW_OK) {                                             \
                        gk_record_min(&status[state[l] - 1], r);                             \
                        continue;                                                            \
                    }                                                                        \
                    T *out = hard ? (soft ? soft + r * cols : NULL) : y + r * cols;          \
                    if (out)                                                                 \
                        for (int64_t c = 0; c < cols; ++c) out[c] = yt[c * width + l];       \
                    if (hard && y)                                                           \
                        for (int64_t c = 0; c < cols; ++c) y[r * cols + c] = c == arg[l];    \
                    if (index) index[r] = arg[l];                                            \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    /* hard = 0: y = softmax((x + G) / tau). hard = 1: y = one-hot(argmax(x + G)), and   */  \
    /* soft (if not NULL) = the softmax. index (if not NULL): the argmax per row.        */  \
    void gk_gumbel_softmax_##SUF(const void *x, int xdtype, int64_t xrs, int64_t xcs,        \
                                 int64_t rows, int64_t cols, const T *tau, int64_t tau_stride, \
                                 const int64_t *seeds, int64_t seed_stride, const int64_t *keys, \
                                 int64_t key_stride, uint32_t stream, T *y, T *soft, int hard, \
                                 int64_t *index, int nthreads, int64_t *status) {            \
        status[0] = status[1] = status[2] = -1;                                              \
        const int64_t lane_cols = hard && soft == NULL ? GK_LANE_COLS : GK_LANE_SOFT_COLS;   \
        if ((OPS)->lanes && cols >= 1 && cols <= lane_cols) {                                \
            gk_gumbel_softmax_lanes_##SUF(x, xdtype, xrs, xcs, rows, cols, tau, tau_stride,  \
                                          seeds, seed_stride, keys, key_stride, stream, y,   \
                                          soft, hard, index, nthreads, status);              \
            return;                                                                          \
        }                                                                                    \
        int direct = xdtype == NATIVE && xcs == 1;                                           \
        const int64_t chunk = gk_rows_per_chunk(cols);                                       \
        _Pragma("omp parallel num_threads(nthreads)") {                                      \
            T xbuf[GK_CHUNK];                                                                \
            _Pragma("omp for schedule(dynamic, chunk) nowait")                               \
            for (int64_t r = 0; r < rows; ++r) {                                             \
                const char *xrow = gk_row(x, xdtype, xrs, r);                                \
                T *srow = hard ? (soft ? soft + r * cols : NULL) : y + r * cols;             \
                int64_t arg = -1;                                                            \
                T top = 0;                                                                   \
                int state = srow ? gk_soft_row_##SUF(xrow, xdtype, xcs, direct, xbuf, cols,  \
                                                     tau[r * tau_stride], GK_SEED(r),        \
                                                     GK_KEY(r), stream, srow,                \
                                                     hard || index ? &arg : NULL)            \
                                 : gk_argmax_row_##SUF(xrow, xdtype, xcs, direct, xbuf, cols,\
                                                       GK_SEED(r), GK_KEY(r), stream, &arg,  \
                                                       &top);                                \
                /* a one-hot without its relaxed sample: the same overflow check, so */     \
                /* that hard and soft samples are rejected alike                     */     \
                if (!srow && state == GK_ROW_OK && !isfinite(top * ((T)1 / tau[r * tau_stride])))\
                    state = GK_ROW_OVERFLOW;                                                 \
                if (state != GK_ROW_OK) {                                                    \
                    gk_record_min(&status[state - 1], r);                                    \
                    continue;                                                                \
                }                                                                            \
                if (hard && y) (OPS)->one_hot(y + r * cols, cols, arg);                      \
                if (index) index[r] = arg;                                                   \
            }                                                                                \
            (OPS)->fence(); /* the one-hot rows were streamed */                             \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    /* gx = y (g - <g, y>) / tau; gtau (if not NULL) = -sum_i gx_i log y_i per row.     */   \
    void gk_gumbel_softmax_backward_##SUF(const void *g, int gdtype, int64_t grs, int64_t gcs, \
                                          const T *y, int64_t rows, int64_t cols,            \
                                          const T *tau, int64_t tau_stride, T *gx, T *gtau,  \
                                          int nthreads) {                                    \
        const int64_t chunk = gk_rows_per_chunk(cols);                                       \
        _Pragma("omp parallel num_threads(nthreads)") {                                      \
            _Pragma("omp for schedule(dynamic, chunk) nowait")                               \
            for (int64_t r = 0; r < rows; ++r) {                                             \
                T *out = gx + r * cols;                                                      \
                const T *yr = y + r * cols;                                                  \
                const T *gr = out;                                                           \
                if (gdtype == NATIVE && gcs == 1) gr = (const T *)gk_row(g, gdtype, grs, r); \
                else gk_load_##T(gk_row(g, gdtype, grs, r), gdtype, gcs, 0, cols, out);      \
                T inv = (T)1 / tau[r * tau_stride];                                          \
                if (cols <= GK_LANE_SOFT_COLS) { /* short: plain loops, no streaming */      \
                    double d = 0.0;                                                          \
                    for (int64_t i = 0; i < cols; ++i) d += (double)gr[i] * yr[i];           \
                    T s = (T)d;                                                              \
                    for (int64_t i = 0; i < cols; ++i) out[i] = yr[i] * (gr[i] - s) * inv;   \
                } else {                                                                     \
                    (OPS)->softmax_grad(gr, yr, out, cols, (T)(OPS)->dot(gr, yr, cols), inv);\
                }                                                                            \
                if (gtau) {                                                                  \
                    if (cols > GK_LANE_SOFT_COLS) (OPS)->fence(); /* streamed, read back */  \
                    double acc = 0.0;                                                        \
                    for (int64_t i = 0; i < cols; ++i)                                       \
                        if (yr[i] > 0) acc -= (double)out[i] * log((double)yr[i]);           \
                    gtau[r] = (T)acc;                                                        \
                }                                                                            \
            }                                                                                \
            (OPS)->fence(); /* gx was streamed */                                            \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    /* mode 0: y = sigmoid((x + L) / tau); 1: y > 1/2 (soft, if not NULL, gets the     */    \
    /* sigmoid); 2: Hard Concrete clamp(sigmoid(.) span + gamma, 0, 1).                */    \
    void gk_concrete_##SUF(const void *x, int xdtype, int64_t xrs, int64_t xcs, int64_t rows,\
                           int64_t cols, const T *tau, int64_t trs, int64_t tcs,             \
                           const int64_t *seeds, int64_t seed_stride, const int64_t *keys,   \
                           int64_t key_stride, uint32_t stream, T *y, T *soft, int mode,     \
                           double gamma, double span, int nthreads, int64_t *status) {       \
        status[0] = status[1] = -1;                                                          \
        int direct = xdtype == NATIVE && xcs == 1;                                           \
        const int64_t pieces = (cols + GK_CHUNK - 1) / GK_CHUNK;                             \
        const int64_t chunk = gk_pieces_per_chunk(cols);                                     \
        _Pragma("omp parallel num_threads(nthreads)") {                                      \
            T xbuf[GK_CHUNK], tbuf[GK_CHUNK];                                                \
            _Pragma("omp for schedule(dynamic, chunk)")                                      \
            for (int64_t p = 0; p < rows * pieces; ++p) {                                    \
                const int64_t r = p / pieces, c0 = p % pieces * GK_CHUNK;                    \
                const int64_t n = cols - c0 < GK_CHUNK ? cols - c0 : GK_CHUNK;               \
                const char *xrow = gk_row(x, xdtype, xrs, r);                                \
                const T *trow = tau + r * trs;                                               \
                const T *xc = direct ? (const T *)xrow + c0 : xbuf;                          \
                if (!direct) gk_load_##T(xrow, xdtype, xcs, c0, n, xbuf);                    \
                int nan = 0;                                                                 \
                for (int64_t i = 0; i < n; ++i) nan |= xc[i] != xc[i];                       \
                if (nan) {                                                                   \
                    int64_t i = 0;                                                           \
                    while (xc[i] == xc[i]) ++i;                                              \
                    gk_record_min(&status[0], r * cols + c0 + i);                            \
                    continue;                                                                \
                }                                                                            \
                const T *tc = tbuf;                                                          \
                if (tcs == 1) tc = trow + c0;                                                \
                else for (int64_t i = 0; i < n; ++i) tbuf[i] = trow[(c0 + i) * tcs];         \
                T *io = y + r * cols + c0;                                                   \
                gk_fill_##SUF(GK_NOISE_LOGISTIC, GK_SEED(r), GK_KEY(r), stream, c0, n, io);   \
                if (mode == 1 && soft) {                                                     \
                    T *s = soft + r * cols + c0;                                             \
                    memcpy(s, io, (size_t)n * sizeof(T));                                    \
                    (OPS)->concrete(xc, tc, s, n, 0, (T)gamma, (T)span);                     \
                    for (int64_t i = 0; i < n; ++i) io[i] = s[i] > (T)0.5 ? 1 : 0;           \
                } else {                                                                     \
                    (OPS)->concrete(xc, tc, io, n, mode, (T)gamma, (T)span);                 \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    /* Backward from the saved sample s: mode 0, s = sigmoid(v), v = (x + L) / tau;     */   \
    /* mode 2, s = the Hard Concrete gate z (gradient 0 where z is 0 or 1).            */   \
    void gk_concrete_backward_##SUF(const void *g, int gdtype, int64_t grs, int64_t gcs,     \
                                    const T *s, int64_t rows, int64_t cols, const T *tau,    \
                                    int64_t trs, int64_t tcs, int mode, double gamma,        \
                                    double span, T *gx, T *gtau, int nthreads) {             \
        const int64_t pieces = (cols + GK_CHUNK - 1) / GK_CHUNK;                             \
        const int64_t chunk = gk_pieces_per_chunk(cols);                                     \
        _Pragma("omp parallel for schedule(dynamic, chunk) num_threads(nthreads)")           \
        for (int64_t p = 0; p < rows * pieces; ++p) {                                        \
            const int64_t r = p / pieces, c0 = p % pieces * GK_CHUNK;                        \
            const int64_t n = cols - c0 < GK_CHUNK ? cols - c0 : GK_CHUNK;                   \
            T *out = gx + r * cols + c0;                                                     \
            T *gt = gtau ? gtau + r * cols + c0 : NULL;                                      \
            const T *sr = s + r * cols + c0, *tr = tau + r * trs + c0 * tcs;                 \
            gk_load_##T(gk_row(g, gdtype, grs, r), gdtype, gcs, c0, n, out);                 \
            for (int64_t i = 0; i < n; ++i) {                                                \
                T y = sr[i], gy = out[i];                                                    \
                if (mode == 2) {                                                             \
                    if (!(y > 0 && y < 1)) {                                                 \
                        out[i] = 0;                                                          \
                        if (gt) gt[i] = 0;                                                   \
                        continue;                                                            \
                    }                                                                        \
                    y = (T)((y - (T)gamma) / (T)span);                                       \
                    gy = gy * (T)span;                                                       \
                }                                                                            \
                T gv = gy * ((T)1 - y) * y;                                                  \
                T t = tr[i * tcs];                                                           \
                out[i] = gv / t;                                                             \
                if (gt) {                                                                    \
                    T v = (y > 0 && y < 1) ? (T)(log((double)y) - log1p(-(double)y)) : 0;    \
                    gt[i] = -gv * v / t;                                                     \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }

GK_DEFINE_KERNELS(float, f32, gk_ops(), GK_F32)
GK_DEFINE_KERNELS(double, f64, &gk_f64_ops, GK_F64)
