/* Fill a [rows, cols] buffer with noise: the reference kernel for bit-identity tests. */
#include <stdint.h>

#include "noise.h"

enum { GK_EXPONENTIAL = 1, GK_GUMBEL = 2, GK_LOGISTIC = 3 };

/* seeds[r], keys[r]: 64-bit seed and row key of row r; out is row-major [rows, cols]. */
void gk_noise_fill_f32(float *out, const int64_t *seeds, const int64_t *keys, int64_t rows,
                       int64_t cols, uint32_t stream, int kind) {
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t r = 0; r < rows; ++r) {
        uint64_t seed = (uint64_t)seeds[r], key = (uint64_t)keys[r];
        float *row = out + r * cols;
        if (kind == GK_EXPONENTIAL)
            gk_fill_exponential_f32(seed, key, stream, 0, cols, row);
        else if (kind == GK_GUMBEL)
            gk_fill_gumbel_f32(seed, key, stream, 0, cols, row);
        else
            gk_fill_logistic_f32(seed, key, stream, 0, cols, row);
    }
}

void gk_noise_fill_f64(double *out, const int64_t *seeds, const int64_t *keys, int64_t rows,
                       int64_t cols, uint32_t stream, int kind) {
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t r = 0; r < rows; ++r) {
        uint64_t seed = (uint64_t)seeds[r], key = (uint64_t)keys[r];
        double *row = out + r * cols;
        if (kind == GK_EXPONENTIAL)
            gk_fill_exponential_f64(seed, key, stream, 0, cols, row);
        else if (kind == GK_GUMBEL)
            gk_fill_gumbel_f64(seed, key, stream, 0, cols, row);
        else
            gk_fill_logistic_f64(seed, key, stream, 0, cols, row);
    }
}
