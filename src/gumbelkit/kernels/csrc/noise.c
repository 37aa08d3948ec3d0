/* Block noise fills. The float32 fills run the vectorized Philox and log of
 * the active instruction set (simd.c), bit-identical to the scalar twin in
 * noise.h; the float64 fills are the scalar twin, four columns per Philox call. */
#include "gk.h"
#include "noise.h"

void gk_fill_gumbel_f32(uint64_t seed, uint64_t row_key, uint32_t stream, int64_t col0,
                        int64_t n, float *out) {
    gk_ops()->fill[GK_NOISE_GUMBEL](seed, row_key, stream, col0, n, out);
}

void gk_fill_exponential_f32(uint64_t seed, uint64_t row_key, uint32_t stream, int64_t col0,
                             int64_t n, float *out) {
    gk_ops()->fill[GK_NOISE_EXPONENTIAL](seed, row_key, stream, col0, n, out);
}

void gk_fill_logistic_f32(uint64_t seed, uint64_t row_key, uint32_t stream, int64_t col0,
                          int64_t n, float *out) {
    gk_ops()->fill[GK_NOISE_LOGISTIC](seed, row_key, stream, col0, n, out);
}

#define GK_DEFINE_FILL(NAME, TYPE, TRANSFORM)                                                   \
    void NAME(uint64_t seed, uint64_t row_key, uint32_t stream, int64_t col0, int64_t n,       \
              TYPE *out) {                                                                      \
        uint32_t words[4];                                                                      \
        for (int64_t i = 0; i < n; ++i) {                                                       \
            uint64_t col = (uint64_t)(col0 + i);                                                \
            if (i == 0 || (col & 3) == 0)                                                       \
                gk_philox4x32_10((uint32_t)(col >> 2), stream, (uint32_t)row_key,               \
                                 (uint32_t)(row_key >> 32), (uint32_t)seed,                     \
                                 (uint32_t)(seed >> 32), words);                                \
            out[i] = TRANSFORM(words[col & 3]);                                                 \
        }                                                                                       \
    }

GK_DEFINE_FILL(gk_fill_gumbel_f64, double, gk_gumbel_f64)
GK_DEFINE_FILL(gk_fill_exponential_f64, double, gk_exponential_f64)
GK_DEFINE_FILL(gk_fill_logistic_f64, double, gk_logistic_f64)
