/* Fill a [rows, cols] buffer with noise: the reference kernel for bit-identity tests. */
#include <stdint.h>

#include "noise.h"

/* seeds[r], keys[r]: 64-bit seed and row key of row r; out is row-major [rows, cols]. */
#define GK_DEFINE_NOISE_FILL(SUF, T)                                                        \
    void gk_noise_fill_##SUF(T *out, const int64_t *seeds, const int64_t *keys, int64_t rows, \
                             int64_t cols, uint32_t stream, int kind) {                     \
        _Pragma("omp parallel for schedule(static)") for (int64_t r = 0; r < rows; ++r) {   \
            uint64_t seed = (uint64_t)seeds[r], key = (uint64_t)keys[r];                    \
            T *row = out + r * cols;                                                        \
            if (kind == GK_NOISE_EXPONENTIAL)                                               \
                gk_fill_exponential_##SUF(seed, key, stream, 0, cols, row);                 \
            else if (kind == GK_NOISE_GUMBEL)                                               \
                gk_fill_gumbel_##SUF(seed, key, stream, 0, cols, row);                      \
            else                                                                            \
                gk_fill_logistic_##SUF(seed, key, stream, 0, cols, row);                    \
        }                                                                                   \
    }

GK_DEFINE_NOISE_FILL(f32, float)
GK_DEFINE_NOISE_FILL(f64, double)
