/* One instruction set's float32 row primitives, written once with GCC vector
 * extensions and compiled three times by simd.c (AVX-512, AVX2, SSE2).
 *
 * The includer defines W (float lanes), SFX (name suffix), GK_MUL_EVEN(a, b)
 * (unsigned 32x32->64 products of the even 32-bit lanes), GK_FMA(a, b, c)
 * (a * b + c, fused where the instruction set has it), GK_ANY(m) (whether
 * some lane of the mask m is set), GK_STREAM(p, v) (store the vector v at p,
 * 4W-byte aligned, bypassing the caches) and the shuffle masks of the word
 * transposition, GK_PAIR (even 32-bit lanes of two vectors, interleaved) and
 * GK_QLO / GK_QHI (even / odd 64-bit lanes of two vectors, per 128-bit lane),
 * optionally GK_MAX(a, b) / GK_MAXI(a, b) (a > b ? a : b lane by lane, float /
 * int32 lanes: x86's max instructions; a compare and a select when undefined);
 * this file undefines them at its end. The noise primitives perform, lane by
 * lane, the IEEE operations of noise.h in the same order (no FMA: the build
 * passes -ffp-contract=off; divisions are real divisions), so the noise is
 * bit-identical to the scalar twin and to gumbelkit/_rng.py. Only the soft
 * path's own arithmetic ("fast noise" below) and exp use GK_FMA: their results
 * are float32-accurate, not bit-identical across instruction sets.
 */
#define GK_CAT2(a, b) a##b
#define GK_CAT(a, b) GK_CAT2(a, b)
#define FN(name) GK_CAT(name##_, SFX)

#define vf FN(gk_vf)
#define vi FN(gk_vi)
#define vu FN(gk_vu)
#define vq FN(gk_vq)
#define vl FN(gk_vl)
typedef float vf __attribute__((vector_size(4 * W)));
typedef int32_t vi __attribute__((vector_size(4 * W)));
typedef uint32_t vu __attribute__((vector_size(4 * W)));
typedef uint64_t vq __attribute__((vector_size(4 * W)));
typedef int64_t vl __attribute__((vector_size(4 * W)));

static inline vf FN(load)(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void FN(store)(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf FN(sel)(vi m, vf a, vf b) { return (vf)((m & (vi)a) | (~m & (vi)b)); }
static inline vf FN(splat)(float s) { return (vf){} + s; }
static inline vf FN(fma)(vf a, vf b, vf c) { return GK_FMA(a, b, c); }
#ifndef GK_MAX
#define GK_MAX(a, b) FN(sel)((a) > (b), (a), (b))
#endif
#ifndef GK_MAXI
#define GK_MAXI(a, b) ((((a) > (b)) & (a)) | (~((a) > (b)) & (b)))
#endif

/* -------------------------------------------------------------- Philox */

/* Philox4x32-10 on W/2 counters held in the low halves of 64-bit lanes (the
 * high halves carry garbage that never reaches a low half: the multiply reads
 * only the low 32 bits, shifts move the true high product down). Within a row
 * only the first counter word (the block index col / 4) varies; the others
 * are (stream, key_lo, key_hi). So the first two rounds are folded into a
 * row's constants: round 1 multiplies only c0 and round 2 only c2, and the
 * round keys are formed once per row. */
typedef struct {
    vq d2, e0, e2, f2;     /* the folded constants (low halves) */
    vq k0[10], k1[10];     /* round keys */
} FN(philox_key);

static inline void FN(philox_key_init)(FN(philox_key) *pk, uint64_t seed, uint64_t key,
                                       uint32_t stream) {
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; ++r) {
        pk->k0[r] = (vq){} + (uint64_t)(uint32_t)(k0 + (uint32_t)r * GK_PHILOX_W0);
        pk->k1[r] = (vq){} + (uint64_t)(uint32_t)(k1 + (uint32_t)r * GK_PHILOX_W1);
    }
    /* round 1: c0 and c1 come out constant; round 2: c3 does */
    uint64_t p1 = (uint64_t)GK_PHILOX_M1 * (uint32_t)key;
    uint32_t a0 = (uint32_t)(p1 >> 32) ^ stream ^ k0, a1 = (uint32_t)p1;
    uint64_t p0 = (uint64_t)GK_PHILOX_M0 * a0;
    uint32_t e3 = (uint32_t)p0;
    pk->d2 = (vq){} + (uint64_t)((uint32_t)(key >> 32) ^ k1);
    pk->e0 = (vq){} + (uint64_t)(a1 ^ (uint32_t)(k0 + GK_PHILOX_W0));
    pk->e2 = (vq){} + (uint64_t)((uint32_t)(p0 >> 32) ^ (uint32_t)(k1 + GK_PHILOX_W1));
    pk->f2 = (vq){} + (uint64_t)(e3 ^ (uint32_t)(k1 + 2u * GK_PHILOX_W1));
}

/* Words for the 2W * chains columns of blocks [block0, block0 + W * chains / 2),
 * in column order, into out[0 .. 2 * chains); chains is 1, 2 or 4, a constant
 * after inlining: the counter vectors run their rounds in lockstep. */
static inline void FN(words)(const FN(philox_key) *pk, uint32_t block0, vu *out, int chains) {
    const vq m0 = (vq){} + (uint64_t)GK_PHILOX_M0, m1 = (vq){} + (uint64_t)GK_PHILOX_M1;
    vq c0[4], c1[4], c2[4], c3[4];
    /* 64-bit lane l of chain h holds block block0 + h W/2 + l/2 (l even) or
     * + W/4 + l/2 (l odd): then the transposition below is two shuffles. */
    vq lanes = (vq){};
    for (int l = 0; l < W / 2; ++l) lanes[l] = (uint32_t)((l % 2 ? W / 4 : 0) + l / 2);
    for (int h = 0; h < chains; ++h) c0[h] = lanes + (uint64_t)(block0 + (uint32_t)(h * (W / 2)));
    for (int h = 0; h < chains; ++h) { /* round 1 */
        vq p = GK_MUL_EVEN(c0[h], m0);
        c2[h] = (p >> 32) ^ pk->d2;
        c3[h] = p;
    }
    for (int h = 0; h < chains; ++h) { /* round 2; its c3 is the row's constant e3 */
        vq p = GK_MUL_EVEN(c2[h], m1);
        c0[h] = (p >> 32) ^ pk->e0;
        c1[h] = p;
        c2[h] = c3[h] ^ pk->e2;
    }
    for (int h = 0; h < chains; ++h) { /* round 3 */
        vq p0 = GK_MUL_EVEN(c0[h], m0), p1 = GK_MUL_EVEN(c2[h], m1);
        c0[h] = (p1 >> 32) ^ c1[h] ^ pk->k0[2];
        c2[h] = (p0 >> 32) ^ pk->f2;
        c1[h] = p1;
        c3[h] = p0;
    }
    for (int r = 3; r < 10; ++r) {
        for (int h = 0; h < chains; ++h) {
            vq p0 = GK_MUL_EVEN(c0[h], m0), p1 = GK_MUL_EVEN(c2[h], m1);
            c0[h] = (p1 >> 32) ^ c1[h] ^ pk->k0[r];
            c2[h] = (p0 >> 32) ^ c3[h] ^ pk->k1[r];
            c1[h] = p1;
            c3[h] = p0;
        }
    }
    /* (w0, w1) and (w2, w3) of each counter side by side, then the counters of
     * even and of odd lanes: W consecutive columns each. */
    const vi pair = GK_PAIR;
    const vl qlo = GK_QLO, qhi = GK_QHI;
    for (int h = 0; h < chains; ++h) {
        vq w01 = (vq)__builtin_shuffle((vu)c0[h], (vu)c1[h], pair);
        vq w23 = (vq)__builtin_shuffle((vu)c2[h], (vu)c3[h], pair);
        out[2 * h] = (vu)__builtin_shuffle(w01, w23, qlo);
        out[2 * h + 1] = (vu)__builtin_shuffle(w01, w23, qhi);
    }
}

/* ---------------------------------------------------- log / exp (float32) */

/* out[q] = gk_log_f32(x[q]) lane by lane, for q < count (1 to 4, a constant
 * after inlining): each step runs on every vector before the next, so the
 * vectors' dependency chains overlap (same operations, same order per lane). */
static inline void FN(logn)(const vf *x, vf *out, int count) {
    vf f[4], s[4], z[4], w[4], r[4], hfsq[4], dk[4];
    for (int q = 0; q < count; ++q) {
        vi ix = (vi)x[q] + (0x3F800000 - 0x3F3504F3);
        dk[q] = __builtin_convertvector((ix >> 23) - 0x7F, vf);
        f[q] = (vf)((ix & 0x007FFFFF) + 0x3F3504F3) - 1.0f;
    }
    for (int q = 0; q < count; ++q) s[q] = f[q] / (f[q] + 2.0f);
    for (int q = 0; q < count; ++q) z[q] = s[q] * s[q];
    for (int q = 0; q < count; ++q) w[q] = z[q] * z[q];
    for (int q = 0; q < count; ++q)
        r[q] = z[q] * (0.66666662693f + w[q] * 0.28498786688f)
               + w[q] * (0.40000972152f + w[q] * 0.24279078841f);
    for (int q = 0; q < count; ++q) hfsq[q] = 0.5f * f[q] * f[q];
    for (int q = 0; q < count; ++q)
        out[q] = s[q] * (hfsq[q] + r[q]) + dk[q] * 9.0580006145e-06f - hfsq[q] + f[q]
                 + dk[q] * 6.9313812256e-01f;
}

static inline vf FN(log)(vf x) {
    vf out;
    FN(logn)(&x, &out, 1);
    return out;
}

/* r + r^2 P(r) = exp(r) - 1 for |r| <= log(2) / 2, P the degree-5 polynomial of
 * Cephes expf, in Estrin's scheme (three independent pairs, then two steps in
 * r^2): half the dependency chain of Horner's, the same operation count. */
static inline vf FN(expm1_reduced)(vf r) {
    static const float P[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                               4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
    vf r2 = r * r;
    vf a = FN(fma)(FN(splat)(P[0]), r, FN(splat)(P[1]));
    vf b = FN(fma)(FN(splat)(P[2]), r, FN(splat)(P[3]));
    vf c = FN(fma)(FN(splat)(P[4]), r, FN(splat)(P[5]));
    vf p = FN(fma)(FN(fma)(a, r2, b), r2, c);
    return FN(fma)(p, r2, r);
}

static inline vf FN(exp_reduced)(vf r) { return FN(expm1_reduced)(r) + 1.0f; }

/* x = n log 2 + r, |r| <= log(2) / 2; returns r, *t holds n + 1.5 2^23 (n in its
 * low mantissa bits). log 2 split in two so that r is exact. */
static inline vf FN(exp_split)(vf x, vf *t) {
    *t = FN(fma)(x, FN(splat)(1.44269504088896341f), FN(splat)(12582912.0f));
    vf n = *t - 12582912.0f;
    return FN(fma)(n, FN(splat)(2.12194440e-4f), FN(fma)(n, FN(splat)(-0.693359375f), x));
}

/* v[q] = exp(v[q]) for q < count, in lockstep (count is a constant after
 * inlining, the loops unroll): within 2 ulp of the float64 exp; exp(-inf) = 0
 * exactly, exp(+inf) = inf, subnormal results rounded once (two-step
 * scaling), NaN propagates. */
static inline void FN(expn)(vf *v, int count) {
    for (int q = 0; q < count; ++q) {
        vf x = FN(sel)(v[q] < -110.0f, FN(splat)(-110.0f), v[q]), t;
        x = FN(sel)(x > 89.0f, FN(splat)(89.0f), x);
        vf p = FN(exp_reduced)(FN(exp_split)(x, &t));
        vi ni = (vi)t - 0x4B400000, n1 = ni >> 1, n2 = ni - n1;
        v[q] = p * (vf)((n1 + 127) << 23) * (vf)((n2 + 127) << 23);
    }
}

static inline vf FN(exp)(vf x) {
    FN(expn)(&x, 1);
    return x;
}

/* v[q] = exp(v[q]) for the nv vectors of a race block, whose lanes are in
 * [-80, 0] or -inf (never NaN): expn's values there, without its clamp from
 * above and its two-step scaling, which this range never needs (2^n is normal
 * for n >= -116; -inf is raised to -104, where the biased exponent n + 127 <= 0
 * becomes a zero scale). */
static inline void FN(exp_race)(vf v[8], int nv) {
    for (int q = 0; q < nv; ++q) {
        vf t, p = FN(expm1_reduced)(FN(exp_split)(GK_MAX(v[q], FN(splat)(-104.0f)), &t));
        vi biased = (vi)t - (0x4B400000 - 127);
        vf scale = (vf)(GK_MAXI(biased, (vi){}) << 23);
        v[q] = FN(fma)(p, scale, scale); /* (p + 1) scale, one rounding as expn's */
    }
}

/* ------------------------------------------------------- words -> noise */

/* gk_small_side_f32: up = (u >= 1/2), returns a, the small side of u. */
static inline vf FN(small)(vu w, vi *up) {
    *up = (vi)w >> 31;
    vi r = (vi)w ^ *up;
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

/* -(upper ? log1m(a) : log(a)) with a the small side of the word (noise.h),
 * for count words in lockstep (as logn). */
static inline void FN(exponentialn)(const vu *w, vf *out, int count) {
    vf a[4], one_minus[4], correction[4], l[4];
    vi up[4];
    for (int q = 0; q < count; ++q)
        up[q] = FN(small_side)(w[q], &a[q], &one_minus[q], &correction[q]);
    for (int q = 0; q < count; ++q) l[q] = FN(sel)(up[q], one_minus[q], a[q]);
    FN(logn)(l, l, count);
    for (int q = 0; q < count; ++q)
        out[q] = -FN(sel)(up[q], l[q] + correction[q] / one_minus[q], l[q]);
}

static inline vf FN(exponential)(vu w) {
    vf e;
    FN(exponentialn)(&w, &e, 1);
    return e;
}

static inline void FN(gumbeln)(const vu *w, vf *out, int count) {
    FN(exponentialn)(w, out, count);
    FN(logn)(out, out, count);
    for (int q = 0; q < count; ++q) out[q] = -out[q];
}

static inline void FN(logisticn)(const vu *w, vf *out, int count) {
    vf a[4], one_minus[4], correction[4], la[4], lb[4];
    vi up[4];
    for (int q = 0; q < count; ++q)
        up[q] = FN(small_side)(w[q], &a[q], &one_minus[q], &correction[q]);
    FN(logn)(a, la, count);
    FN(logn)(one_minus, lb, count);
    for (int q = 0; q < count; ++q) {
        vf lower = la[q] - (lb[q] + correction[q] / one_minus[q]);
        out[q] = FN(sel)(up[q], -lower, lower);
    }
}

/* ------------------------------------------------ fast noise (soft path) */

/* The relaxed sample softmax((x + G) / tau) needs G to float32 accuracy, not
 * bit for bit: its argmax is never taken from it (hard samples decide the
 * argmax on the exact noise, see gk_gumbel_softmax). So the soft path forms G
 * from the same Philox words with division-free logarithms and fused
 * multiply-adds, about half the instructions of the exact noise. */

/* The functions below work on nv vectors in lockstep (nv = 8, or 4 or 2 for a
 * row's last columns; a constant after inlining, each step a loop over q that
 * the compiler unrolls): their long dependency chains (two polynomials per
 * value) then overlap, instead of waiting on one another. */
#define GK_EACH for (int q = 0; q < nv; ++q)

static inline vf FN(max2)(vf a, vf b) { return GK_MAX(a, b); }

/* The max of nv vectors as a balanced tree: a running max then waits on one
 * operation per block, not on nv. */
static inline vf FN(maxn)(const vf v[8], int nv) {
    vf m[8];
    GK_EACH m[q] = v[q];
    for (int half = nv / 2; half > 0; half /= 2)
        for (int q = 0; q < half; ++q) m[q] = FN(max2)(m[q], m[q + half]);
    return m[0];
}

/* The nv W floats of a row from x (left of them in the row; fewer than nv W:
 * the rest -inf) and back (only the first left). */
static inline void FN(load_block)(const float *x, int64_t left, vf v[8], int nv) {
    if (left >= nv * W) {
        GK_EACH v[q] = FN(load)(x + q * W);
        return;
    }
    float xs[8 * W];
    for (int j = 0; j < nv * W; ++j) xs[j] = -__builtin_inff();
    memcpy(xs, x, (size_t)left * 4);
    GK_EACH v[q] = FN(load)(xs + q * W);
}

static inline void FN(store_block)(float *io, int64_t left, const vf v[8], int nv) {
    if (left >= nv * W) {
        GK_EACH FN(store)(io + q * W, v[q]);
    } else {
        memcpy(io, v, (size_t)left * 4);
    }
}

/* x = 2^k (1 + f) with 1 + f in [sqrt(1/2), sqrt(2)), x positive, normal, finite. */
static inline void FN(reduce)(const vf x[8], vi k[8], vf f[8], int nv) {
    vi ix[8];
    GK_EACH ix[q] = (vi)x[q] + (0x3F800000 - 0x3F3504F3);
    GK_EACH k[q] = (ix[q] >> 23) - 0x7F;
    GK_EACH f[q] = (vf)((ix[q] & 0x007FFFFF) + 0x3F3504F3) - 1.0f;
}

/* sign log(2^k (1 + f)), log = k log 2 + f - f^2/2 + f^3 P(f) for f in
 * [sqrt(1/2) - 1, sqrt(2) - 1], P the degree-8 polynomial of Cephes logf
 * (Moshier, 1992), log 2 split in two: within 1 float32 ulp of the float64 log.
 * sign is 1 or -1, a constant after inlining: -log costs no extra operation
 * (every coefficient flips, and each step is exactly the negation of the
 * step for sign 1, but for the sign of an exact zero). */
static inline void FN(log_reduced)(const vi k[8], const vf f[8], vf out[8], int nv,
                                   float sign) {
    static const float P[9] = {7.0376836292e-2f,  -1.1514610310e-1f, 1.1676998740e-1f,
                               -1.2420140846e-1f, 1.4249322787e-1f,  -1.6668057665e-1f,
                               2.0000714765e-1f,  -2.4999993993e-1f, 3.3333331174e-1f};
    vf p[8], f2[8], dk[8];
    GK_EACH p[q] = FN(splat)(sign * P[0]);
    for (int i = 1; i < 9; ++i) GK_EACH p[q] = FN(fma)(p[q], f[q], FN(splat)(sign * P[i]));
    GK_EACH f2[q] = f[q] * f[q];
    GK_EACH dk[q] = __builtin_convertvector(k[q], vf);
    GK_EACH p[q] = FN(fma)(dk[q], FN(splat)(sign * -2.12194440e-4f), p[q] * f[q] * f2[q]);
    GK_EACH p[q] = FN(fma)(f2[q], FN(splat)(sign * -0.5f), p[q]);
    GK_EACH out[q] = FN(fma)(dk[q], FN(splat)(sign * 0.693359375f),
                             sign > 0 ? f[q] + p[q] : p[q] - f[q]);
}

/* sign log u for the words' uniforms u (sign 1 or -1: -log u = E), to float32
 * accuracy. With a the small
 * side (noise.h): log u = log a when u < 1/2; when u >= 1/2, log(1 - a) is
 * reduced without rounding 1 - a: 1 - a = 1 + f with f = -a, or, when
 * 1 - a < sqrt(1/2), 2^-1 (1 + f) with f = 1 - 2a; both f are exact. */
static inline void FN(log_uniform_fast)(const vu w[8], vf out[8], int nv, float sign) {
    vi up[8], k[8], halved[8];
    vf a[8], f[8];
    GK_EACH up[q] = (vi)w[q] >> 31; /* FN(small), (r + 1/2) 2^-32 in one rounding */
    GK_EACH a[q] = FN(fma)(__builtin_convertvector((vi)w[q] ^ up[q], vf), FN(splat)(0x1p-32f),
                           FN(splat)(0x1p-33f));
    FN(reduce)(a, k, f, nv);
    GK_EACH halved[q] = a[q] > 0.29289321881f; /* 1 - sqrt(1/2); all ones: k = -1 */
    GK_EACH f[q] = FN(sel)(up[q], FN(sel)(halved[q], 1.0f - (a[q] + a[q]), -a[q]), f[q]);
    GK_EACH k[q] = (up[q] & halved[q]) | (~up[q] & k[q]);
    FN(log_reduced)(k, f, out, nv, sign);
}

/* G = -log(-log u) for the words of nv W columns, to float32 accuracy. */
static inline void FN(gumbel_fast)(const vu w[8], vf g[8], int nv) {
    vf e[8], f[8];
    vi k[8];
    FN(log_uniform_fast)(w, e, nv, -1.0f);
    FN(reduce)(e, k, f, nv);
    FN(log_reduced)(k, f, g, nv, -1.0f);
}

/* One block of soft_zpass: the nv W columns at x and io, left of them in the row. */
static inline void FN(zpass_block)(const FN(philox_key) *pk, const float *x, float *io,
                                   int64_t left, int64_t col, vf tv, vf *bv, vi *badv, int nv) {
    const vf inf = FN(splat)(__builtin_inff());
    vu w[8];
    vf z[8], xv[8];
    FN(words)(pk, (uint32_t)(col >> 2), w, nv / 2);
    FN(gumbel_fast)(w, z, nv);
    FN(load_block)(x, left, xv, nv);
    GK_EACH z[q] += xv[q];
    GK_EACH *badv |= ~(z[q] < inf);
    *bv = FN(max2)(FN(maxn)(z, nv), *bv);
    GK_EACH z[q] *= tv;
    FN(store_block)(io, left, z, nv);
}

/* The soft path's row pass over columns [col0, col0 + n) (col0 a multiple of
 * 8W): io = z * inv_tau for z = x + G, G the fast noise of the row's words;
 * the running max of z, and *bad when some z is NaN or +inf. The last columns
 * take the smallest block that holds them. */
static void FN(soft_zpass)(const float *x, float *io, int64_t n, uint64_t seed, uint64_t key,
                           uint32_t stream, int64_t col0, float inv_tau, float *best, int *bad) {
    const vf tv = FN(splat)(inv_tau);
    vf bv = FN(splat)(-__builtin_inff());
    vi badv = (vi){};
    FN(philox_key) pk;
    FN(philox_key_init)(&pk, seed, key, stream);
    int64_t i = 0;
    for (; i + 8 * W <= n; i += 8 * W)
        FN(zpass_block)(&pk, x + i, io + i, 8 * W, col0 + i, tv, &bv, &badv, 8);
    if (n - i > 4 * W)
        FN(zpass_block)(&pk, x + i, io + i, n - i, col0 + i, tv, &bv, &badv, 8);
    else if (n - i > 2 * W)
        FN(zpass_block)(&pk, x + i, io + i, n - i, col0 + i, tv, &bv, &badv, 4);
    else if (n > i)
        FN(zpass_block)(&pk, x + i, io + i, n - i, col0 + i, tv, &bv, &badv, 2);
    for (int j = 0; j < W; ++j) {
        if (badv[j]) *bad = 1;
        if (bv[j] > *best) *best = bv[j];
    }
}

/* The exponential race, the soft pass for tau = 1: exp(x + G - m) = exp(x - m) / E
 * with G = -log E, so one logarithm (E's) per element suffices. race_ready
 * sets *m to the max of x and says whether the race applies: every finite x
 * within 80 of m (so exp(x - m) is never subnormal) and |m| <= 64, *bad when
 * some x is NaN or +inf. The bound on |m|: the race never rounds x + G to
 * float32, the reference does, and for |x + G| near 2^7 or more that rounding
 * (ulp / 2 relative in the sample) would part the two by more than float32
 * noise; below it they agree as closely as the general pass does. */
static int FN(race_ready)(const float *x, int64_t n, float *m, int *bad) {
    const vf inf = FN(splat)(__builtin_inff());
    vf hi[4] = {-inf, -inf, -inf, -inf}, lo[4] = {inf, inf, inf, inf};
    vi badv = (vi){};
    int64_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) { /* four running extremes: short dependency chains */
        for (int q = 0; q < 4; ++q) {
            vf v = FN(load)(x + i + q * W);
            badv |= ~(v < inf);
            hi[q] = FN(max2)(v, hi[q]);
            lo[q] = FN(sel)((v < lo[q]) & (v > -inf), v, lo[q]);
        }
    }
    float top = -__builtin_inff(), low = __builtin_inff();
    for (int q = 0; q < 4; ++q) {
        for (int j = 0; j < W; ++j) {
            *bad |= badv[j] != 0;
            top = hi[q][j] > top ? hi[q][j] : top;
            low = lo[q][j] < low ? lo[q][j] : low;
        }
    }
    for (; i < n; ++i) {
        *bad |= !(x[i] < __builtin_inff());
        top = x[i] > top ? x[i] : top;
        low = x[i] < low && x[i] > -__builtin_inff() ? x[i] : low;
    }
    *m = top;
    return !*bad && top >= -64.0f && top <= 64.0f && top - low <= 80.0f;
}

/* One block of the race: the nv W columns at x and io, left of them in the row. */
static inline void FN(race_block)(const FN(philox_key) *pk, const float *x, float *io,
                                  int64_t left, int64_t col, vf mv, vf *acc, vf *top, int nv) {
    vu w[8];
    vf e[8], v[8];
    FN(words)(pk, (uint32_t)(col >> 2), w, nv / 2);
    FN(log_uniform_fast)(w, e, nv, -1.0f);
    FN(load_block)(x, left, v, nv);
    GK_EACH v[q] -= mv;
    FN(exp_race)(v, nv);
    GK_EACH v[q] = v[q] / e[q];
    GK_EACH *acc += v[q];
    GK_EACH *top = FN(max2)(v[q], *top);
    FN(store_block)(io, left, v, nv);
}

/* io = exp(x - m) / E over a row of n columns; returns the sum, *vmax the max. */
static float FN(race)(const float *x, float *io, int64_t n, uint64_t seed, uint64_t key,
                      uint32_t stream, float m, float *vmax) {
    FN(philox_key) pk;
    FN(philox_key_init)(&pk, seed, key, stream);
    const vf mv = FN(splat)(m);
    vf acc = (vf){}, top = (vf){};
    int64_t i = 0;
    for (; i + 8 * W <= n; i += 8 * W)
        FN(race_block)(&pk, x + i, io + i, 8 * W, i, mv, &acc, &top, 8);
    if (n - i > 4 * W)
        FN(race_block)(&pk, x + i, io + i, n - i, i, mv, &acc, &top, 8);
    else if (n - i > 2 * W)
        FN(race_block)(&pk, x + i, io + i, n - i, i, mv, &acc, &top, 4);
    else if (n > i)
        FN(race_block)(&pk, x + i, io + i, n - i, i, mv, &acc, &top, 2);
    float s = 0.0f, t = 0.0f;
    for (int j = 0; j < W; ++j) {
        s += acc[j];
        t = top[j] > t ? top[j] : t;
    }
    *vmax = t;
    return s;
}

#define GK_DEFINE_SIMD_FILL(KIND)                                                           \
    static void FN(fill_##KIND)(uint64_t seed, uint64_t key, uint32_t stream, int64_t col0, \
                                int64_t n, float *out) {                                    \
        int64_t end = col0 + n;                                                             \
        if (n <= 0) return;                                                                 \
        FN(philox_key) pk;                                                                  \
        FN(philox_key_init)(&pk, seed, key, stream);                                        \
        for (int64_t base = col0 & ~(int64_t)3; base < end; base += 4 * W) {                \
            vu w[4];                                                                        \
            FN(words)(&pk, (uint32_t)(base >> 2), w, 2);                                    \
            vf v[4];                                                                        \
            FN(KIND##n)(w, v, 4);                                                           \
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
    FN(philox_key) pk;
    FN(philox_key_init)(&pk, seed, key, stream);
    for (int64_t base = col0 & ~(int64_t)3; base < end; base += 4 * W) {
        vu w[4];
        FN(words)(&pk, (uint32_t)(base >> 2), w, 2);
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
        if (!GK_ANY(maybe_any)) continue;
        /* Then per vector: the bound from E's own exponent, G = -log E <= -k log 2. */
        for (int q = 0; q < 4; ++q) {
            vf e = FN(exponential)(w[q]);
            vi k = ((vi)e >> 23) - 127;
            vf bound = xv[q] + (__builtin_convertvector(-k, vf) * 0.693147182f + 1e-3f);
            vi maybe = bound > FN(splat)(b);
            if (!GK_ANY(maybe)) continue;
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

/* io = exp(io - m); returns the sum (W partial sums, then in order). The
 * columns whose io was >= threshold on entry go to the candidate list. */
static float FN(expsum)(float *io, int64_t n, float m, float threshold, int64_t *cand,
                        int *ncand) {
    vf acc = (vf){}, e[4];
    const vf mv = FN(splat)(m), th = FN(splat)(threshold);
    int64_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
        vi hit = (vi){};
        for (int q = 0; q < 4; ++q) {
            e[q] = FN(load)(io + i + q * W);
            hit |= e[q] >= th;
        }
        if (GK_ANY(hit))
            for (int j = 0; j < 4 * W; ++j)
                if (io[i + j] >= threshold) gk_candidate(cand, ncand, i + j);
        for (int q = 0; q < 4; ++q) e[q] -= mv;
        FN(expn)(e, 4);
        for (int q = 0; q < 4; ++q) {
            FN(store)(io + i + q * W, e[q]);
            acc += e[q];
        }
    }
    for (; i < n; i += W) {
        float tmp[W] = {0};
        int64_t left = n - i < W ? n - i : W;
        for (int j = 0; j < left; ++j)
            if (io[i + j] >= threshold) gk_candidate(cand, ncand, i + j);
        memcpy(tmp, io + i, (size_t)left * 4);
        vf x = FN(exp)(FN(load)(tmp) - mv);
        for (int j = 0; j < left; ++j) {
            io[i + j] = x[j];
            acc[j] += x[j];
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

/* io *= c; the columns whose io was >= threshold go to the candidate list (none
 * when threshold is +inf: the plain loop). */
static void FN(scale)(float *io, int64_t n, float c, float threshold, int64_t *cand,
                      int *ncand) {
    const vf cv = FN(splat)(c), th = FN(splat)(threshold);
    int64_t i = 0;
    if (threshold == __builtin_inff()) {
        for (; i + W <= n; i += W) FN(store)(io + i, FN(load)(io + i) * cv);
    } else {
        for (; i + W <= n; i += W) {
            vf v = FN(load)(io + i);
            vi hit = v >= th;
            if (GK_ANY(hit))
                for (int j = 0; j < W; ++j)
                    if (io[i + j] >= threshold) gk_candidate(cand, ncand, i + j);
            FN(store)(io + i, v * cv);
        }
    }
    for (; i < n; ++i) {
        if (io[i] >= threshold) gk_candidate(cand, ncand, i);
        io[i] *= c;
    }
}

/* out[0 .. n) = the one-hot row of arg, with streaming stores: a hard sample's
 * row is written once and not read back, so it need not be read into the
 * cache first. The caller calls fence once its rows are written. */
static void FN(one_hot)(float *out, int64_t n, int64_t arg) {
    int64_t i = 0;
    for (; i < n && ((uintptr_t)(out + i) & (4 * W - 1)) != 0; ++i) out[i] = i == arg;
    for (; i + W <= n; i += W) {
        vf v = (vf){};
        if (arg >= i && arg < i + W) v[arg - i] = 1.0f;
        GK_STREAM(out + i, v);
    }
    for (; i < n; ++i) out[i] = i == arg;
}

/* Orders this thread's streaming stores before its later stores. */
static void FN(fence)(void) { GK_FENCE(); }

/* sum_i a_i b_i, in four running sums (short dependency chains). */
static double FN(dot)(const float *a, const float *b, int64_t n) {
    vf acc[4] = {{0}, {0}, {0}, {0}};
    int64_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W)
        for (int q = 0; q < 4; ++q) acc[q] += FN(load)(a + i + q * W) * FN(load)(b + i + q * W);
    for (; i + W <= n; i += W) acc[0] += FN(load)(a + i) * FN(load)(b + i);
    vf total = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    double s = 0.0;
    for (int j = 0; j < W; ++j) s += total[j];
    for (; i < n; ++i) s += (double)a[i] * b[i];
    return s;
}

/* out = y (g - s) / tau: the softmax backward divided by the temperature,
 * streamed like one_hot (out is the logits' gradient, not read back here; g
 * may be out itself, each vector read before it is written). */
static void FN(softmax_grad)(const float *g, const float *y, float *out, int64_t n, float s,
                             float inv_tau) {
    const vf sv = FN(splat)(s), tv = FN(splat)(inv_tau);
    int64_t i = 0;
    for (; i < n && ((uintptr_t)(out + i) & (4 * W - 1)) != 0; ++i)
        out[i] = y[i] * (g[i] - s) * inv_tau;
    for (; i + W <= n; i += W)
        GK_STREAM(out + i, FN(load)(y + i) * (FN(load)(g + i) - sv) * tv);
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

/* ------------------------------------------- short rows: one row per lane */

/* a m as 64-bit products, lane by lane: their low and high 32-bit halves. */
static inline void FN(mul_wide)(vu a, uint32_t m, vu *lo, vu *hi) {
    const vq mv = (vq){} + (uint64_t)m, low = (vq){} + (uint64_t)0xFFFFFFFFu;
    vq even = GK_MUL_EVEN((vq)a, mv), odd = GK_MUL_EVEN((vq)a >> 32, mv);
    *lo = (vu)((even & low) | (odd << 32));
    *hi = (vu)((even >> 32) | (odd & ~low));
}

/* Philox4x32-10 with its own counter (c0, c1, c2, c3) and key (k0, k1) in
 * every lane: gk_philox4x32_10 lane by lane; out[j] holds the words j. */
static inline void FN(philox_lanes)(vu c0, vu c1, vu c2, vu c3, vu k0, vu k1, vu out[4]) {
    for (int r = 0; r < 10; ++r) {
        if (r > 0) {
            k0 += GK_PHILOX_W0;
            k1 += GK_PHILOX_W1;
        }
        vu lo0, hi0, lo1, hi1;
        FN(mul_wide)(c0, GK_PHILOX_M0, &lo0, &hi0);
        FN(mul_wide)(c2, GK_PHILOX_M1, &lo1, &hi1);
        c0 = hi1 ^ c1 ^ k0;
        c2 = hi0 ^ c3 ^ k1;
        c1 = lo1;
        c3 = lo0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* W rows at once, row l in lane l, n <= GK_LANE_COLS columns: xt[c W + l] is
 * column c of row l, whose noise is (seed[l], key[l], stream). With z = x + G,
 * as the row kernels: arg[l] = the first argmax of z (-1 if every z is -inf),
 * and, if yt is not NULL, yt[c W + l] = softmax(z inv_tau[l]) (z inv_tau, its
 * max subtracted, exp, scaled by 1 / sum). G is the exact noise (gumbeln,
 * bit-identical to noise.h) when exact is set, else the fast noise of the soft
 * path (then arg is only float32-accurate and unused by the caller). state[l]
 * = 1 if some x is NaN or +inf, 2 if all are -inf, 3 if max z * inv_tau[l]
 * overflows float32 (the softmax would be NaN), else 0. */
_Static_assert(W <= GK_MAX_LANES, "the lanes buffers hold GK_MAX_LANES rows");

static void FN(lanes)(const float *xt, int64_t n, const uint64_t *seed, const uint64_t *key,
                      uint32_t stream, const float *inv_tau, float *yt, int64_t *arg,
                      int *state, int exact) {
    vu k0, k1, key_lo, key_hi;
    vf inv;
    for (int l = 0; l < W; ++l) {
        k0[l] = (uint32_t)seed[l];
        k1[l] = (uint32_t)(seed[l] >> 32);
        key_lo[l] = (uint32_t)key[l];
        key_hi[l] = (uint32_t)(key[l] >> 32);
        inv[l] = inv_tau[l];
    }
    const vf inf = FN(splat)(__builtin_inff());
    vf best = -inf, z[GK_LANE_COLS];
    vi top = (vi){} - 1, badv = (vi){};
    for (int64_t c0 = 0; c0 < n; c0 += 4) {
        vu w[8]; /* the first 4 used: gumbel_fast takes blocks of up to 8 */
        vf g[8];
        FN(philox_lanes)((vu){} + (uint32_t)(c0 >> 2), (vu){} + stream, key_lo, key_hi, k0, k1,
                         w);
        if (exact) FN(gumbeln)(w, g, 4);
        else FN(gumbel_fast)(w, g, 4);
        for (int j = 0; j < 4 && c0 + j < n; ++j) {
            int64_t c = c0 + j;
            z[c] = FN(load)(xt + c * W) + g[j];
            badv |= ~(z[c] < inf);
            vi beats = z[c] > best;
            best = FN(sel)(beats, z[c], best);
            top = (beats & ((vi){} + (int32_t)c)) | (~beats & top);
        }
    }
    for (int l = 0; l < W; ++l) {
        arg[l] = top[l];
        state[l] = badv[l] ? 1 : best[l] == -__builtin_inff() ? 2
                   : __builtin_isfinite(best[l] * inv_tau[l]) ? 0 : 3;
    }
    if (yt == NULL) return;
    const vf m = best * inv;
    vf sum = (vf){};
    for (int64_t c = 0; c < n; ++c) {
        z[c] = FN(exp)(z[c] * inv - m);
        sum += z[c];
    }
    const vf scale = 1.0f / sum;
    for (int64_t c = 0; c < n; ++c) FN(store)(yt + c * W, z[c] * scale);
}

/* The Philox words of columns [col0, col0 + n) of one row (col0 a multiple of 4), in
 * column order: 8W columns per step of FN(words), the last ones a block at a time. */
static void FN(fill_words)(uint64_t seed, uint64_t key, uint32_t stream, int64_t col0,
                           int64_t n, uint32_t *out) {
    FN(philox_key) pk;
    FN(philox_key_init)(&pk, seed, key, stream);
    int64_t c = 0;
    for (; c + 8 * W <= n; c += 8 * W) {
        vu w[8];
        FN(words)(&pk, (uint32_t)((col0 + c) / 4), w, 4);
        memcpy(out + c, w, sizeof w);
    }
    for (; c < n; c += 4) {
        uint32_t block[4];
        gk_philox4x32_10((uint32_t)((col0 + c) / 4), stream, (uint32_t)key, (uint32_t)(key >> 32),
                         (uint32_t)seed, (uint32_t)(seed >> 32), block);
        memcpy(out + c, block, (size_t)(n - c < 4 ? n - c : 4) * sizeof(uint32_t));
    }
}

static const gk_ops_f32 FN(gk_ops) = {
    .name = GK_STR(SFX),
    .fill = {FN(fill_gumbel), FN(fill_exponential), FN(fill_logistic)},
    .words = FN(fill_words),
    .soft_zpass = FN(soft_zpass),
    .race_ready = FN(race_ready),
    .race = FN(race),
    .gumbel_argmax = FN(gumbel_argmax),
    .expsum = FN(expsum),
    .scale = FN(scale),
    .one_hot = FN(one_hot),
    .fence = FN(fence),
    .exp = FN(exp_array),
    .dot = FN(dot),
    .softmax_grad = FN(softmax_grad),
    .concrete = FN(concrete),
    .width = W,
    .lanes = FN(lanes),
};

#undef vf
#undef vi
#undef vu
#undef vq
#undef vl
#undef FN
#undef GK_DEFINE_SIMD_FILL
#undef W
#undef SFX
#undef GK_MUL_EVEN
#undef GK_FMA
#undef GK_ANY
#undef GK_STREAM
#undef GK_PAIR
#undef GK_QLO
#undef GK_QHI
#undef GK_EACH
#undef GK_MAX
#undef GK_MAXI
