/* Counter-based noise, the C twin of gumbelkit/_rng.py.
 *
 * Every function here performs exactly the operations of its Python
 * counterpart, in the same order, with IEEE rounding and no fused
 * multiply-add (the build passes -ffp-contract=off), so the kernels produce
 * bit-identical noise to the pure-PyTorch path. Change both files together.
 */
#ifndef GK_NOISE_H
#define GK_NOISE_H

#include <stdint.h>
#include <string.h>

/* Noise kinds: one numbering for the C code (the index into gk_ops()->fill)
 * and for Python (_lib.KINDS mirrors it; a test reads this enum). */
enum gk_noise_kind { GK_NOISE_GUMBEL = 0, GK_NOISE_EXPONENTIAL = 1, GK_NOISE_LOGISTIC = 2 };

#define GK_PHILOX_M0 0xD2511F53u
#define GK_PHILOX_M1 0xCD9E8D57u
#define GK_PHILOX_W0 0x9E3779B9u
#define GK_PHILOX_W1 0xBB67AE85u

/* Philox4x32-10: counter (c0..c3), key (k0, k1) -> four words in out[]. */
static inline void gk_philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                    uint32_t k0, uint32_t k1, uint32_t out[4]) {
    for (int r = 0; r < 10; ++r) {
        if (r > 0) {
            k0 += GK_PHILOX_W0;
            k1 += GK_PHILOX_W1;
        }
        uint64_t p0 = (uint64_t)GK_PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)GK_PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* The word for (seed, row key, column, stream): counter (col/4, stream, key_lo, key_hi). */
static inline uint32_t gk_word(uint64_t seed, uint64_t row_key, uint64_t col, uint32_t stream) {
    uint32_t out[4];
    gk_philox4x32_10((uint32_t)(col >> 2), stream, (uint32_t)row_key, (uint32_t)(row_key >> 32),
                     (uint32_t)seed, (uint32_t)(seed >> 32), out);
    return out[col & 3];
}

/* fdlibm-style log of a positive, normal, finite float (see _rng.det_log). */
static inline float gk_log_f32(float x) {
    int32_t ix;
    memcpy(&ix, &x, 4);
    ix += 0x3F800000 - 0x3F3504F3;
    int32_t k = (ix >> 23) - 0x7F;
    int32_t im = (ix & 0x007FFFFF) + 0x3F3504F3;
    float m;
    memcpy(&m, &im, 4);
    float f = m - 1.0f;
    float s = f / (f + 2.0f);
    float z = s * s;
    float w = z * z;
    float t1 = w * (0.40000972152f + w * 0.24279078841f);
    float t2 = z * (0.66666662693f + w * 0.28498786688f);
    float r = t2 + t1;
    float hfsq = 0.5f * f * f;
    float dk = (float)k;
    return s * (hfsq + r) + dk * 9.0580006145e-06f - hfsq + f + dk * 6.9313812256e-01f;
}

static inline double gk_log_f64(double x) {
    int64_t ix;
    memcpy(&ix, &x, 8);
    ix += INT64_C(0x3FF0000000000000) - INT64_C(0x3FE6A09E667F3BCD);
    int64_t k = (ix >> 52) - 0x3FF;
    int64_t im = (ix & INT64_C(0x000FFFFFFFFFFFFF)) + INT64_C(0x3FE6A09E667F3BCD);
    double m;
    memcpy(&m, &im, 8);
    double f = m - 1.0;
    double s = f / (f + 2.0);
    double z = s * s;
    double w = z * z;
    double t1 = w * (3.999999999940941908e-01 + w * (2.222219843214978396e-01
                + w * 1.531383769920937332e-01));
    double t2 = z * (6.666666666666735130e-01 + w * (2.857142874366239149e-01
                + w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)));
    double r = t2 + t1;
    double hfsq = 0.5 * f * f;
    double dk = (double)k;
    return s * (hfsq + r) + dk * 1.90821492927058770002e-10 - hfsq + f
           + dk * 6.93147180369123816490e-01;
}

/* log(1 - a) for a in (0, 1/2], keeping the bits 1 - a rounds away. */
static inline float gk_log1m_f32(float a) {
    float one_minus = 1.0f - a;
    float correction = (1.0f - one_minus) - a;
    return gk_log_f32(one_minus) + correction / one_minus;
}

static inline double gk_log1m_f64(double a) {
    double one_minus = 1.0 - a;
    double correction = (1.0 - one_minus) - a;
    return gk_log_f64(one_minus) + correction / one_minus;
}

/* The small side of u = (w + 1/2) 2^-32: a = u (w < 2^31) or 1 - u. */
static inline float gk_small_side_f32(uint32_t w, int *upper) {
    *upper = w >= 0x80000000u;
    int32_t r = (int32_t)(*upper ? 0xFFFFFFFFu - w : w);
    return ((float)r + 0.5f) * 0x1p-32f;
}

static inline double gk_small_side_f64(uint32_t w, int *upper) {
    *upper = w >= 0x80000000u;
    int32_t r = (int32_t)(*upper ? 0xFFFFFFFFu - w : w);
    return ((double)r + 0.5) * 0x1p-32;
}

static inline float gk_exponential_f32(uint32_t w) {
    int upper;
    float a = gk_small_side_f32(w, &upper);
    return -(upper ? gk_log1m_f32(a) : gk_log_f32(a));
}

static inline double gk_exponential_f64(uint32_t w) {
    int upper;
    double a = gk_small_side_f64(w, &upper);
    return -(upper ? gk_log1m_f64(a) : gk_log_f64(a));
}

static inline float gk_gumbel_f32(uint32_t w) { return -gk_log_f32(gk_exponential_f32(w)); }
static inline double gk_gumbel_f64(uint32_t w) { return -gk_log_f64(gk_exponential_f64(w)); }

static inline float gk_logistic_f32(uint32_t w) {
    int upper;
    float a = gk_small_side_f32(w, &upper);
    float lower_value = gk_log_f32(a) - gk_log1m_f32(a);
    return upper ? -lower_value : lower_value;
}

static inline double gk_logistic_f64(uint32_t w) {
    int upper;
    double a = gk_small_side_f64(w, &upper);
    double lower_value = gk_log_f64(a) - gk_log1m_f64(a);
    return upper ? -lower_value : lower_value;
}

/* Block fills: noise for columns [col0, col0 + n) of one row, into out[0..n).
 * Defined in noise.c; every kernel draws its noise through these, so that one
 * optimized (vectorized) implementation serves them all. */
void gk_fill_gumbel_f32(uint64_t seed, uint64_t row_key, uint32_t stream, int64_t col0,
                        int64_t n, float *out);
void gk_fill_exponential_f32(uint64_t seed, uint64_t row_key, uint32_t stream, int64_t col0,
                             int64_t n, float *out);
void gk_fill_logistic_f32(uint64_t seed, uint64_t row_key, uint32_t stream, int64_t col0,
                          int64_t n, float *out);
void gk_fill_gumbel_f64(uint64_t seed, uint64_t row_key, uint32_t stream, int64_t col0,
                        int64_t n, double *out);
void gk_fill_exponential_f64(uint64_t seed, uint64_t row_key, uint32_t stream, int64_t col0,
                             int64_t n, double *out);
void gk_fill_logistic_f64(uint64_t seed, uint64_t row_key, uint32_t stream, int64_t col0,
                          int64_t n, double *out);

#endif
