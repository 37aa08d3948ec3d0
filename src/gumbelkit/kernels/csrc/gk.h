/* The float32 row primitives every kernel is built from, one table per
 * instruction set (simd.c), chosen once at load time from the CPU's features. */
#ifndef GK_GK_H
#define GK_GK_H

#include <stdint.h>

#define GK_STR2(x) #x
#define GK_STR(x) GK_STR2(x)

enum { GK_ISA_PORTABLE = 0, GK_ISA_AVX2 = 1, GK_ISA_AVX512 = 2 };

/* At most this many candidate columns are listed for a hard sample's exact
 * argmax (see gk_gumbel_softmax); more, and the row is decided in full. */
enum { GK_CANDIDATES = 64 };

/* Append column c to a candidate list (counting past its capacity). */
static inline void gk_candidate(int64_t *cand, int *ncand, int64_t c) {
    if (*ncand < GK_CANDIDATES) cand[*ncand] = c;
    ++*ncand;
}

/* Rows of at most GK_LANE_COLS columns (GK_LANE_SOFT_COLS when a relaxed
 * sample is formed) run W at a time, one row per vector lane
 * (gk_ops_f32.lanes): per-row costs then fall on W rows at once. Above these
 * widths the row kernels were faster in side-by-side timings. */
enum { GK_LANE_COLS = 32, GK_LANE_SOFT_COLS = 16, GK_MAX_LANES = 16 };

typedef void (*gk_fill_f32_fn)(uint64_t seed, uint64_t key, uint32_t stream, int64_t col0,
                               int64_t n, float *out);

typedef struct {
    const char *name;
    gk_fill_f32_fn fill[3]; /* indexed by enum gk_noise_kind (noise.h) */
    /* the raw Philox words of columns [col0, col0 + n), col0 a multiple of 4 */
    void (*words)(uint64_t seed, uint64_t key, uint32_t stream, int64_t col0, int64_t n,
                  uint32_t *out);
    void (*gumbel_argmax)(const float *x, int64_t n, uint64_t seed, uint64_t key,
                          uint32_t stream, int64_t col0, float *best, int64_t *arg, int *bad);
    void (*soft_zpass)(const float *x, float *io, int64_t n, uint64_t seed, uint64_t key,
                       uint32_t stream, int64_t col0, float inv_tau, float *best, int *bad);
    int (*race_ready)(const float *x, int64_t n, float *m, int *bad);
    float (*race)(const float *x, float *io, int64_t n, uint64_t seed, uint64_t key,
                  uint32_t stream, float m, float *vmax);
    float (*expsum)(float *io, int64_t n, float m, float threshold, int64_t *cand, int *ncand);
    void (*scale)(float *io, int64_t n, float c, float threshold, int64_t *cand, int *ncand);
    void (*one_hot)(float *out, int64_t n, int64_t arg);
    void (*fence)(void);
    void (*exp)(const float *x, float *out, int64_t n);
    double (*dot)(const float *a, const float *b, int64_t n);
    void (*softmax_grad)(const float *g, const float *y, float *out, int64_t n, float s,
                         float inv_tau);
    void (*concrete)(const float *x, const float *tau, float *io, int64_t n, int mode,
                     float gamma, float span);
    int width; /* W, the float lanes of a vector */
    void (*lanes)(const float *xt, int64_t n, const uint64_t *seed, const uint64_t *key,
                  uint32_t stream, const float *inv_tau, float *yt, int64_t *arg, int *state,
                  int exact);
} gk_ops_f32;

/* The active table (never NULL after the library has loaded) and its instruction set
 * (GK_ISA_*): the CPU's best, capped by GUMBELKIT_SIMD, or what gk_set_isa chose. Every
 * kernel, the token sampler's included, dispatches on these. */
const gk_ops_f32 *gk_ops(void);
int gk_isa(void);

#endif
