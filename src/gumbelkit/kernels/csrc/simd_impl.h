/* One instruction set's float32 row primitives, written once with GCC vector
 * extensions and compiled three times by simd.c (AVX-512, AVX2, SSE2).
 *
 * The includer defines W (float lanes), SFX (name suffix), GK_MUL_EVEN(a, b)
 * (unsigned 32x32->64 products of the even 32-bit lanes) and the interleave
 * masks GK_ILO / GK_IHI and the even-lane mask GK_EVEN; this file undefines them at its end. Every lane performs the IEEE operations of noise.h in
 * the same order (no FMA: the build passes -ffp-contract=off; divisions are
 * real divisions), so the noise is bit-identical to the scalar twin and to
 * gumbelkit/_rng.py.
 */
#define GK_CAT2(a, b) a##b
#define GK_CAT(a, b) GK_CAT2(a, b)
#define FN(name) GK_CAT(name##_, SFX)

#define vf FN(gk_vf)
#define vi FN(gk_vi)
#define vu FN(gk_vu)
#define vq FN(gk_vq)
typedef float vf __attribute__((vector_size(4 * W)));
typedef int32_t vi __attribute__((vector_size(4 * W)));
typedef uint32_t vu __attribute__((vector_size(4 * W)));
typedef uint64_t vq __attribute__((vector_size(4 * W)));

static inline vf FN(load)(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void FN(store)(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf FN(sel)(vi m, vf a, vf b) { return (vf)((m & (vi)a) | (~m & (vi)b)); }
static inline vf FN(splat)(float s) { return (vf){} + s; }

/* -------------------------------------------------------------- Philox */

/* One Philox round on W/2 counters held in the low halves of 64-bit lanes
 * (the high halves carry garbage that never reaches a low half: the multiply
 * reads only the low 32 bits, shifts move the true high product down). */
#define GK_PHILOX_ROUND(c0, c1, c2, c3, k0, k1)                                             \
    do {                                                                                    \
        vq p0 = GK_MUL_EVEN(c0, m0), p1 = GK_MUL_EVEN(c2, m1);                              \
        c0 = (p1 >> 32) ^ c1 ^ k0;                                                          \
        c2 = (p0 >> 32) ^ c3 ^ k1;                                                          \
        c1 = p1;                                                                            \
        c3 = p0;                                                                            \
    } while (0)

/* Words for the 4W columns of blocks [block0, block0 + W), in column order. */
static inline void FN(words)(uint64_t seed, uint64_t key, uint32_t stream, uint32_t block0,
                             vu out[4]) {
    const vq m0 = (vq){} + (uint64_t)GK_PHILOX_M0, m1 = (vq){} + (uint64_t)GK_PHILOX_M1;
    vq a0, b0; /* blocks block0 + [0, W/2) and block0 + [W/2, W) */
    for (int j = 0; j < W / 2; ++j) {
        a0[j] = (uint32_t)(block0 + (uint32_t)j);
        b0[j] = (uint32_t)(block0 + (uint32_t)(j + W / 2));
    }
    vq a1 = (vq){} + (uint64_t)stream, a2 = (vq){} + (uint64_t)(uint32_t)key;
    vq a3 = (vq){} + (key >> 32);
    vq b1 = a1, b2 = a2, b3 = a3;
    vq k0 = (vq){} + (uint64_t)(uint32_t)seed, k1 = (vq){} + (seed >> 32);
    for (int r = 0; r < 10; ++r) {
        if (r > 0) { /* low halves wrap mod 2^32; carries go to the unused high halves */
            k0 += GK_PHILOX_W0;
            k1 += GK_PHILOX_W1;
        }
        GK_PHILOX_ROUND(a0, a1, a2, a3, k0, k1);
        GK_PHILOX_ROUND(b0, b1, b2, b3, k0, k1);
    }
    /* low halves of (a, b) -> W 32-bit lanes, blocks in order */
    const vi even = GK_EVEN;
    vu c0 = __builtin_shuffle((vu)a0, (vu)b0, even), c1 = __builtin_shuffle((vu)a1, (vu)b1, even);
    vu c2 = __builtin_shuffle((vu)a2, (vu)b2, even), c3 = __builtin_shuffle((vu)a3, (vu)b3, even);
    /* 4 x W (word-major) -> W x 4 (column-major): two rounds of interleaving. */
    const vi lo = GK_ILO, hi = GK_IHI;
    vu ac_lo = __builtin_shuffle(c0, c2, lo), ac_hi = __builtin_shuffle(c0, c2, hi);
    vu bd_lo = __builtin_shuffle(c1, c3, lo), bd_hi = __builtin_shuffle(c1, c3, hi);
    out[0] = __builtin_shuffle(ac_lo, bd_lo, lo);
    out[1] = __builtin_shuffle(ac_lo, bd_lo, hi);
    out[2] = __builtin_shuffle(ac_hi, bd_hi, lo);
    out[3] = __builtin_shuffle(ac_hi, bd_hi, hi);
}

/* ---------------------------------------------------- log / exp (float32) */

/* gk_log_f32, lane by lane. */
static inline vf FN(log)(vf x) {
    vi ix = (vi)x + (0x3F800000 - 0x3F3504F3);
    vi k = (ix >> 23) - 0x7F;
    vf m = (vf)((ix & 0x007FFFFF) + 0x3F3504F3);
    vf f = m - 1.0f;
    vf s = f / (f + 2.0f);
    vf z = s * s;
    vf w = z * z;
    vf t1 = w * (0.40000972152f + w * 0.24279078841f);
    vf t2 = z * (0.66666662693f + w * 0.28498786688f);
    vf r = t2 + t1;
    vf hfsq = 0.5f * f * f;
    vf dk = __builtin_convertvector(k, vf);
    return s * (hfsq + r) + dk * 9.0580006145e-06f - hfsq + f + dk * 6.9313812256e-01f;
}

/* exp(x), within 2 ulp of the float64 exp; exp(-inf) = 0 exactly, exp(+inf) = inf,
 * subnormal results rounded once (two-step scaling), NaN propagates. */
static inline vf FN(exp)(vf x) {
    x = FN(sel)(x < -110.0f, FN(splat)(-110.0f), x);
    x = FN(sel)(x > 89.0f, FN(splat)(89.0f), x);
    vf t = x * 1.44269504088896341f + 12582912.0f;
    vf n = t - 12582912.0f;
    vi ni = (vi)t - 0x4B400000;
    vf r = x - n * 0.693359375f - n * -2.12194440e-4f;
    vf p = 1.9875691500e-4f * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    vi n1 = ni >> 1, n2 = ni - n1;
    return p * (vf)((n1 + 127) << 23) * (vf)((n2 + 127) << 23);
}

/* ------------------------------------------------------- words -> noise */

/* gk_small_side_f32: up = (u >= 1/2), returns a, the small side of u. */
static inline vf FN(small)(vu w, vi *up) {
    *up = (vi)w < 0;
    vi r = (*up & (vi)~w) | (~*up & (vi)w);
    return (__builtin_convertvector(r, vf) + 0.5f) * 0x1p-32f;
}

/* The small side and the pieces of gk_log1m_f32: 1 - a and the bits that
 * 1 - a rounded away. */
static inline vi FN(small_side)(vu w, vf *a, vf *one_minus, vf *correction) {
    vi up;
    *a = FN(small)(w, &up);
    *one_minus = 1.0f - *a;
    *correction = (1.0f - *one_minus) - *a;
    return up;
}

/* -(upper ? log1m(a) : log(a)) with a the small side of the word (noise.h). */
static inline vf FN(exponential)(vu w) {
    vf a, one_minus, correction;
    vi up = FN(small_side)(w, &a, &one_minus, &correction);
    vf l = FN(log)(FN(sel)(up, one_minus, a));
    return -FN(sel)(up, l + correction / one_minus, l);
}

static inline vf FN(gumbel)(vu w) { return -FN(log)(FN(exponential)(w)); }

static inline vf FN(logistic)(vu w) {
    vf a, one_minus, correction;
    vi up = FN(small_side)(w, &a, &one_minus, &correction);
    vf lower = FN(log)(a) - (FN(log)(one_minus) + correction / one_minus);
    return FN(sel)(up, -lower, lower);
}

#define GK_DEFINE_SIMD_FILL(KIND)                                                           \
    static void FN(fill_##KIND)(uint64_t seed, uint64_t key, uint32_t stream, int64_t col0, \
                                int64_t n, float *out) {                                    \
        int64_t end = col0 + n;                                                             \
        for (int64_t base = col0 & ~(int64_t)3; base < end; base += 4 * W) {                \
            vu w[4];                                                                        \
            FN(words)(seed, key, stream, (uint32_t)(base >> 2), w);                         \
            vf v[4];                                                                        \
            for (int q = 0; q < 4; ++q) v[q] = FN(KIND)(w[q]);                              \
            if (base >= col0 && base + 4 * W <= end) {                                      \
                memcpy(out + (base - col0), v, sizeof v);                                   \
            } else {                                                                        \
                float tmp[4 * W];                                                           \
                memcpy(tmp, v, sizeof v);                                                   \
                int64_t lo = base > col0 ? base : col0;                                     \
                int64_t hi = base + 4 * W < end ? base + 4 * W : end;                       \
                memcpy(out + (lo - col0), tmp + (lo - base), (size_t)(hi - lo) * 4);        \
            }                                                                               \
        }                                                                                   \
    }

GK_DEFINE_SIMD_FILL(gumbel)
GK_DEFINE_SIMD_FILL(exponential)
GK_DEFINE_SIMD_FILL(logistic)

/* ------------------------------------------------------ row primitives */

/* z = x + g (into io), then io = z * inv_tau when store; running max/argmax of z
 * (first index on ties) and *bad when some z is NaN or +inf. Indices from col0. */
static void FN(zpass)(const float *x, float *io, int64_t n, float inv_tau, int store, int64_t col0,
                      float *best, int64_t *arg, int *bad) {
    vf bv = FN(splat)(-__builtin_inff());
    vi bi = (vi){} + 0x7FFFFFFF, idx = (vi){};
    for (int j = 0; j < W; ++j) idx[j] = j;
    vi badv = (vi){};
    const vf inf = FN(splat)(__builtin_inff()), tv = FN(splat)(inv_tau);
    int64_t i = 0;
    for (; i + W <= n; i += W) {
        vf z = FN(load)(x + i) + FN(load)(io + i);
        badv |= ~(z < inf);
        vi gt = z > bv;
        bv = FN(sel)(gt, z, bv);
        bi = (gt & idx) | (~gt & bi);
        idx += W;
        if (store) FN(store)(io + i, z * tv);
    }
    float b = *best;
    int64_t a = *arg;
    for (int j = 0; j < W; ++j) {
        if (badv[j]) *bad = 1;
        if (bi[j] == 0x7FFFFFFF) continue;
        if (bv[j] > b || (bv[j] == b && (a < 0 || col0 + bi[j] < a))) {
            b = bv[j];
            a = col0 + bi[j];
        }
    }
    for (; i < n; ++i) {
        float z = x[i] + io[i];
        if (!(z < __builtin_inff())) *bad = 1;
        if (z > b) {
            b = z;
            a = col0 + i;
        }
        if (store) io[i] = z * inv_tau;
    }
    *best = b;
    *arg = a;
}

/* The running (max, first argmax) of z = x + G over columns [col0, col0 + n)
 * of one row, G the row's Gumbel noise, and *bad when some x is NaN or +inf:
 * what zpass gives on filled noise, without forming G where it cannot matter.
 * G = -log E <= -k log 2 for E = 2^k m (m in [1, 2)), so a vector none of
 * whose x + (-k log 2 + 1e-3) beats the running max skips the second log; the
 * z it does form are exactly those of the reference (x + (-log E)). */
static void FN(gumbel_argmax)(const float *x, int64_t n, uint64_t seed, uint64_t key,
                              uint32_t stream, int64_t col0, float *best, int64_t *arg,
                              int *bad) {
    const vf inf = FN(splat)(__builtin_inff());
    float b = *best;
    int64_t a = *arg, end = col0 + n;
    vi badv = (vi){};
    for (int64_t base = col0 & ~(int64_t)3; base < end; base += 4 * W) {
        vu w[4];
        FN(words)(seed, key, stream, (uint32_t)(base >> 2), w);
        /* A first bound for all 4W columns, tested against the running max
         * once, before any logarithm: with a the small side of u (noise.h),
         * E >= log 2 when u < 1/2, so G <= -log log 2 < 0.3666, and E =
         * -log(1 - a) >= a >= 2^j (j the exponent of a) when u >= 1/2, so
         * G <= -j log 2; 1e-3 covers the rounding of the computed G. Columns
         * outside the range get x = -inf. The max only grows, so a block that
         * none beats now holds no z that would beat it later. */
        vf xv[4];
        vi maybe_any = (vi){};
        const vf bv = FN(splat)(b);
        for (int q = 0; q < 4; ++q) {
            int64_t c = base + (int64_t)q * W;
            if (c >= col0 && c + W <= end) {
                xv[q] = FN(load)(x + (c - col0));
            } else {
                for (int j = 0; j < W; ++j)
                    xv[q][j] = c + j >= col0 && c + j < end ? x[c + j - col0] : -__builtin_inff();
            }
            badv |= ~(xv[q] < inf);
            vi up;
            vf small = FN(small)(w[q], &up);
            vi ja = ((vi)small >> 23) - 127;
            vf upper = __builtin_convertvector(-ja, vf) * 0.693147182f + 1e-3f;
            maybe_any |= xv[q] + FN(sel)(up, upper, FN(splat)(0.3676f)) > bv;
        }
        int any = 0;
        for (int j = 0; j < W; ++j) any |= maybe_any[j];
        if (!any) continue;
        /* Then per vector: the bound from E's own exponent, G = -log E <= -k log 2. */
        for (int q = 0; q < 4; ++q) {
            vf e = FN(exponential)(w[q]);
            vi k = ((vi)e >> 23) - 127;
            vf bound = xv[q] + (__builtin_convertvector(-k, vf) * 0.693147182f + 1e-3f);
            vi maybe = bound > FN(splat)(b);
            any = 0;
            for (int j = 0; j < W; ++j) any |= maybe[j];
            if (!any) continue;
            int64_t c = base + (int64_t)q * W;
            vf z = xv[q] - FN(log)(e);
            for (int j = 0; j < W; ++j) {
                if (z[j] > b) {
                    b = z[j];
                    a = c + j;
                }
            }
        }
    }
    for (int j = 0; j < W; ++j)
        if (badv[j]) *bad = 1;
    *best = b;
    *arg = a;
}

/* io = exp(io - m); returns the sum (W partial sums, then in order). */
static float FN(expsum)(float *io, int64_t n, float m) {
    vf acc = (vf){};
    const vf mv = FN(splat)(m);
    int64_t i = 0;
    for (; i + W <= n; i += W) {
        vf e = FN(exp)(FN(load)(io + i) - mv);
        FN(store)(io + i, e);
        acc += e;
    }
    if (i < n) {
        float tmp[W] = {0};
        memcpy(tmp, io + i, (size_t)(n - i) * 4);
        vf e = FN(exp)(FN(load)(tmp) - mv);
        for (int j = 0; j < n - i; ++j) {
            io[i + j] = e[j];
            acc[j] += e[j];
        }
    }
    float s = 0.0f;
    for (int j = 0; j < W; ++j) s += acc[j];
    return s;
}

/* out = exp(x) elementwise (exposed for the accuracy tests). */
static void FN(exp_array)(const float *x, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i += W) {
        float buf[W] = {0};
        int64_t m = n - i < W ? n - i : W;
        memcpy(buf, x + i, (size_t)m * 4);
        vf e = FN(exp)(FN(load)(buf));
        memcpy(out + i, &e, (size_t)m * 4);
    }
}

static void FN(scale)(float *io, int64_t n, float c) {
    const vf cv = FN(splat)(c);
    int64_t i = 0;
    for (; i + W <= n; i += W) FN(store)(io + i, FN(load)(io + i) * cv);
    for (; i < n; ++i) io[i] *= c;
}

static double FN(dot)(const float *a, const float *b, int64_t n) {
    vf acc = (vf){};
    int64_t i = 0;
    for (; i + W <= n; i += W) acc += FN(load)(a + i) * FN(load)(b + i);
    double s = 0.0;
    for (int j = 0; j < W; ++j) s += acc[j];
    for (; i < n; ++i) s += (double)a[i] * b[i];
    return s;
}

/* out = y (g - s) / tau: the softmax backward divided by the temperature. */
static void FN(softmax_grad)(const float *g, const float *y, float *out, int64_t n, float s,
                             float inv_tau) {
    const vf sv = FN(splat)(s), tv = FN(splat)(inv_tau);
    int64_t i = 0;
    for (; i + W <= n; i += W)
        FN(store)(out + i, FN(load)(y + i) * (FN(load)(g + i) - sv) * tv);
    for (; i < n; ++i) out[i] = y[i] * (g[i] - s) * inv_tau;
}

/* Binary/Hard Concrete forward on one chunk: io holds logistic noise L on
 * entry; y = sigmoid((x + L) / tau); mode 0: soft y, 1: (y > 1/2), 2: Hard
 * Concrete clamp(y span + gamma, 0, 1) with span = zeta - gamma. */
static void FN(concrete)(const float *x, const float *tau, float *io, int64_t n, int mode,
                         float gamma, float span) {
    const vf one = FN(splat)(1.0f), zero = (vf){}, half = FN(splat)(0.5f);
    for (int64_t i = 0; i < n; i += W) {
        int64_t m = n - i < W ? n - i : W;
        float bx[W] = {0}, bt[W], bl[W] = {0};
        vf vx, vt, vl;
        if (m == W) {
            vx = FN(load)(x + i);
            vt = FN(load)(tau + i);
            vl = FN(load)(io + i);
        } else {
            for (int j = 0; j < W; ++j) bt[j] = 1.0f;
            memcpy(bx, x + i, (size_t)m * 4);
            memcpy(bt, tau + i, (size_t)m * 4);
            memcpy(bl, io + i, (size_t)m * 4);
            vx = FN(load)(bx);
            vt = FN(load)(bt);
            vl = FN(load)(bl);
        }
        vf y = one / (one + FN(exp)(-((vx + vl) / vt)));
        if (mode == 1) {
            y = FN(sel)(y > half, one, zero);
        } else if (mode == 2) {
            y = y * span + gamma;
            y = FN(sel)(y < zero, zero, y);
            y = FN(sel)(y > one, one, y);
        }
        if (m == W) {
            FN(store)(io + i, y);
        } else {
            for (int j = 0; j < m; ++j) io[i + j] = y[j];
        }
    }
}

static const gk_ops_f32 FN(gk_ops) = {
    .name = GK_STR(SFX),
    .fill = {FN(fill_gumbel), FN(fill_exponential), FN(fill_logistic)},
    .zpass = FN(zpass),
    .gumbel_argmax = FN(gumbel_argmax),
    .expsum = FN(expsum),
    .scale = FN(scale),
    .exp = FN(exp_array),
    .dot = FN(dot),
    .softmax_grad = FN(softmax_grad),
    .concrete = FN(concrete),
};

#undef vf
#undef vi
#undef vu
#undef vq
#undef FN
#undef GK_DEFINE_SIMD_FILL
#undef W
#undef SFX
#undef GK_MUL_EVEN
#undef GK_ILO
#undef GK_IHI
#undef GK_EVEN
#undef GK_PHILOX_ROUND
