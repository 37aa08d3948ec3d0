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

#define T float
#define SFX f32
#define OPS gk_ops()
#define NATIVE GK_F32
#include "kernels_impl.h"
#undef T
#undef SFX
#undef OPS
#undef NATIVE

#define T double
#define SFX f64
#define OPS (&gk_f64_ops)
#define NATIVE GK_F64
#include "kernels_impl.h"
#undef T
#undef SFX
#undef OPS
#undef NATIVE
