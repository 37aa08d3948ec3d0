/* The row kernels of kernels.c, written once and compiled per compute type:
 * kernels.c includes this file twice, with
 *   T       the compute type (float or double),
 *   SFX     the suffix of the exported names (f32 or f64),
 *   OPS     the primitives of that type (gk_ops() for float32: the active
 *           instruction set; &gk_f64_ops for float64),
 *   NATIVE  the dtype code read in place (GK_F32 or GK_F64).
 * FN(name) is name_SFX; LOAD converts a piece of a row to T. */

#define GK_CAT2(a, b) a##b
#define GK_CAT(a, b) GK_CAT2(a, b)
#define FN(name) GK_CAT(name##_, SFX)
#define LOAD GK_CAT(gk_load_, T)

/* The first argmax of z = x + G over one row, G the exact noise (noise.h), among
 * the candidate columns (increasing); -1 when the list overflowed. */
static int64_t FN(gk_exact_argmax)(const char *xrow, int xdtype, int64_t xcs,
                                   const int64_t *cand, int ncand, uint64_t seed,
                                   uint64_t key, uint32_t stream) {
    if (ncand > GK_CANDIDATES) return -1;
    T top = -INFINITY;
    int64_t arg = -1;
    for (int j = 0; j < ncand; ++j) {
        T xi;
        LOAD(xrow, xdtype, xcs, cand[j], 1, &xi);
        T z = xi + FN(gk_gumbel)(gk_word(seed, key, (uint64_t)cand[j], stream));
        if (z > top) {
            top = z;
            arg = cand[j];
        }
    }
    return arg;
}

/* The first argmax of x + G over a whole row, with the exact noise; *top (if not
 * NULL) gets the maximum. */
static int FN(gk_argmax_row)(const char *xrow, int xdtype, int64_t xcs, int direct,
                             T *xbuf, int64_t cols, uint64_t seed, uint64_t key,
                             uint32_t stream, int64_t *arg, T *top) {
    T best = -INFINITY;
    int bad = 0;
    *arg = -1;
    for (int64_t c0 = 0; c0 < cols; c0 += GK_CHUNK) {
        int64_t n = cols - c0 < GK_CHUNK ? cols - c0 : GK_CHUNK;
        const T *xc = direct ? (const T *)xrow + c0 : xbuf;
        if (!direct) LOAD(xrow, xdtype, xcs, c0, n, xbuf);
        (OPS)->gumbel_argmax(xc, n, seed, key, stream, c0, &best, arg, &bad);
    }
    if (top) *top = best;
    return bad ? GK_ROW_BAD : *arg < 0 ? GK_ROW_EMPTY : GK_ROW_OK;
}

/* A row's relaxed sample softmax((x + G) / tau) into srow, and, if arg is not NULL,
 * the first argmax of x + G decided on the exact noise. The float32 soft pass uses
 * float32-accurate noise G~, |z~ - z| < eps = 2^-16 + 2^-21 |z| for z = x + G, so
 * the exact argmax is among the columns with z~ >= max z~ - 2 eps: few, listed
 * while forming exp (or scaling, for the race) and decided on the exact noise. */
static int FN(gk_soft_row)(const char *xrow, int xdtype, int64_t xcs, int direct,
                           T *xbuf, int64_t cols, T tau, uint64_t seed, uint64_t key,
                           uint32_t stream, T *srow, int64_t *arg) {
    int64_t cand[GK_CANDIDATES];
    int ncand = 0, bad = 0;
    T best = -INFINITY, vmax, threshold = INFINITY;
    if ((OPS)->race && tau == 1 && direct &&
        (OPS)->race_ready((const T *)xrow, cols, &best, &bad)) {
        T sum = (OPS)->race((const T *)xrow, srow, cols, seed, key, stream, best, &vmax);
        if (arg) /* |z| <= |max x| + 80 + 23 */
            threshold = vmax * (T)exp(-(0x1p-15 + 0x1p-20 * (fabs((double)best) + 103)));
        (OPS)->scale(srow, cols, (T)1 / sum, threshold, cand, &ncand);
    } else {
        T inv = (T)1 / tau;
        best = -INFINITY;
        bad = 0;
        for (int64_t c0 = 0; c0 < cols; c0 += GK_CHUNK) {
            int64_t n = cols - c0 < GK_CHUNK ? cols - c0 : GK_CHUNK;
            const T *xc = direct ? (const T *)xrow + c0 : xbuf;
            if (!direct) LOAD(xrow, xdtype, xcs, c0, n, xbuf);
            (OPS)->soft_zpass(xc, srow + c0, n, seed, key, stream, c0, inv, &best, &bad);
        }
        if (bad) return GK_ROW_BAD;
        if (best == -INFINITY) return GK_ROW_EMPTY;
        if (!isfinite(best * inv)) return GK_ROW_OVERFLOW; /* exp would give NaN */
        if (arg) threshold = (best - ((T)0x1p-15 + (T)fabs((double)best) * (T)0x1p-20)) * inv;
        T sum = (OPS)->expsum(srow, cols, best * inv, threshold, cand, &ncand);
        (OPS)->scale(srow, cols, (T)1 / sum, INFINITY, cand, &ncand);
    }
    if (arg) {
        *arg = FN(gk_exact_argmax)(xrow, xdtype, xcs, cand, ncand, seed, key, stream);
        if (*arg < 0)
            return FN(gk_argmax_row)(xrow, xdtype, xcs, direct, xbuf, cols, seed, key,
                                       stream, arg, NULL);
    }
    return GK_ROW_OK;
}

/* gk_gumbel_softmax for short rows (gk.h, GK_LANE_COLS): W rows at a time, one per
 * vector lane (OPS->lanes), transposed in and out of small buffers. Hard samples,
 * index and status are those of the row loop; the relaxed sample agrees with it to
 * float32 accuracy. One-hot rows are written with plain stores. */
static void FN(gk_gumbel_softmax_lanes)(const void *x, int xdtype, int64_t xrs, int64_t xcs,
                                        int64_t rows, int64_t cols, const T *tau,
                                        int64_t tau_stride, const int64_t *seeds,
                                        int64_t seed_stride, const int64_t *keys,
                                        int64_t key_stride, uint32_t stream, T *y, T *soft,
                                        int hard, int64_t *index, int nthreads,
                                        int64_t *status) {
    const int width = (OPS)->width, direct = xdtype == NATIVE && xcs == 1;
    const int64_t groups = (rows + width - 1) / width;
    const int64_t per = gk_rows_per_chunk(cols) / width, chunk = per > 1 ? per : 1;
    #pragma omp parallel num_threads(nthreads)
    {
        T xt[GK_LANE_COLS * GK_MAX_LANES], yt[GK_LANE_COLS * GK_MAX_LANES];
        T row[GK_LANE_COLS], inv[GK_MAX_LANES];
        uint64_t seed[GK_MAX_LANES], key[GK_MAX_LANES];
        int64_t arg[GK_MAX_LANES];
        int state[GK_MAX_LANES];
        T *sample = hard && soft == NULL ? NULL : yt;
        #pragma omp for schedule(dynamic, chunk) nowait
        for (int64_t g = 0; g < groups; ++g) {
            for (int l = 0; l < width; ++l) {
                int64_t r = g * width + l;
                const T *xr = row;
                if (r < rows) {
                    if (direct) xr = (const T *)gk_row(x, xdtype, xrs, r);
                    else LOAD(gk_row(x, xdtype, xrs, r), xdtype, xcs, 0, cols, row);
                    seed[l] = GK_SEED(r);
                    key[l] = GK_KEY(r);
                    inv[l] = (T)1 / tau[r * tau_stride];
                } else { /* lanes past the last row: finite logits, unused */
                    memset(row, 0, sizeof row);
                    seed[l] = key[l] = 0;
                    inv[l] = 1;
                }
                for (int64_t c = 0; c < cols; ++c) xt[c * width + l] = xr[c];
            }
            (OPS)->lanes(xt, cols, seed, key, stream, inv, sample, arg, state,
                         hard || index);
            for (int l = 0; l < width && g * width + l < rows; ++l) {
                int64_t r = g * width + l;
                if (state[l] != GK_ROW_OK) {
                    gk_record_min(&status[state[l] - 1], r);
                    continue;
                }
                T *out = hard ? (soft ? soft + r * cols : NULL) : y + r * cols;
                if (out)
                    for (int64_t c = 0; c < cols; ++c) out[c] = yt[c * width + l];
                if (hard && y)
                    for (int64_t c = 0; c < cols; ++c) y[r * cols + c] = c == arg[l];
                if (index) index[r] = arg[l];
            }
        }
    }
}

/* hard = 0: y = softmax((x + G) / tau). hard = 1: y = one-hot(argmax(x + G)), and
 * soft (if not NULL) = the softmax. index (if not NULL): the argmax per row. */
void FN(gk_gumbel_softmax)(const void *x, int xdtype, int64_t xrs, int64_t xcs,
                           int64_t rows, int64_t cols, const T *tau, int64_t tau_stride,
                           const int64_t *seeds, int64_t seed_stride, const int64_t *keys,
                           int64_t key_stride, uint32_t stream, T *y, T *soft, int hard,
                           int64_t *index, int nthreads, int64_t *status) {
    status[0] = status[1] = status[2] = -1;
    const int64_t lane_cols = hard && soft == NULL ? GK_LANE_COLS : GK_LANE_SOFT_COLS;
    if ((OPS)->lanes && cols >= 1 && cols <= lane_cols) {
        FN(gk_gumbel_softmax_lanes)(x, xdtype, xrs, xcs, rows, cols, tau, tau_stride,
                                      seeds, seed_stride, keys, key_stride, stream, y,
                                      soft, hard, index, nthreads, status);
        return;
    }
    int direct = xdtype == NATIVE && xcs == 1;
    const int64_t chunk = gk_rows_per_chunk(cols);
    #pragma omp parallel num_threads(nthreads)
    {
        T xbuf[GK_CHUNK];
        #pragma omp for schedule(dynamic, chunk) nowait
        for (int64_t r = 0; r < rows; ++r) {
            const char *xrow = gk_row(x, xdtype, xrs, r);
            T *srow = hard ? (soft ? soft + r * cols : NULL) : y + r * cols;
            int64_t arg = -1;
            T top = 0;
            int state = srow ? FN(gk_soft_row)(xrow, xdtype, xcs, direct, xbuf, cols,
                                                 tau[r * tau_stride], GK_SEED(r),
                                                 GK_KEY(r), stream, srow,
                                                 hard || index ? &arg : NULL)
                             : FN(gk_argmax_row)(xrow, xdtype, xcs, direct, xbuf, cols,
                                                   GK_SEED(r), GK_KEY(r), stream, &arg,
                                                   &top);
            /* a one-hot without its relaxed sample: the same overflow check, so
             * that hard and soft samples are rejected alike */
            if (!srow && state == GK_ROW_OK && !isfinite(top * ((T)1 / tau[r * tau_stride])))
                state = GK_ROW_OVERFLOW;
            if (state != GK_ROW_OK) {
                gk_record_min(&status[state - 1], r);
                continue;
            }
            if (hard && y) (OPS)->one_hot(y + r * cols, cols, arg);
            if (index) index[r] = arg;
        }
        (OPS)->fence(); /* the one-hot rows were streamed */
    }
}

/* gx = y (g - <g, y>) / tau; gtau (if not NULL) = -sum_i gx_i log y_i per row. */
void FN(gk_gumbel_softmax_backward)(const void *g, int gdtype, int64_t grs, int64_t gcs,
                                    const T *y, int64_t rows, int64_t cols,
                                    const T *tau, int64_t tau_stride, T *gx, T *gtau,
                                    int nthreads) {
    const int64_t chunk = gk_rows_per_chunk(cols);
    #pragma omp parallel num_threads(nthreads)
    {
        #pragma omp for schedule(dynamic, chunk) nowait
        for (int64_t r = 0; r < rows; ++r) {
            T *out = gx + r * cols;
            const T *yr = y + r * cols;
            const T *gr = out;
            if (gdtype == NATIVE && gcs == 1) gr = (const T *)gk_row(g, gdtype, grs, r);
            else LOAD(gk_row(g, gdtype, grs, r), gdtype, gcs, 0, cols, out);
            T inv = (T)1 / tau[r * tau_stride];
            if (cols <= GK_LANE_SOFT_COLS) { /* short: plain loops, no streaming */
                double d = 0.0;
                for (int64_t i = 0; i < cols; ++i) d += (double)gr[i] * yr[i];
                T s = (T)d;
                for (int64_t i = 0; i < cols; ++i) out[i] = yr[i] * (gr[i] - s) * inv;
            } else {
                (OPS)->softmax_grad(gr, yr, out, cols, (T)(OPS)->dot(gr, yr, cols), inv);
            }
            if (gtau) {
                if (cols > GK_LANE_SOFT_COLS) (OPS)->fence(); /* streamed, read back */
                double acc = 0.0;
                for (int64_t i = 0; i < cols; ++i)
                    if (yr[i] > 0) acc -= (double)out[i] * log((double)yr[i]);
                gtau[r] = (T)acc;
            }
        }
        (OPS)->fence(); /* gx was streamed */
    }
}

/* mode 0: y = sigmoid((x + L) / tau); 1: y > 1/2 (soft, if not NULL, gets the
 * sigmoid); 2: Hard Concrete clamp(sigmoid(.) span + gamma, 0, 1). */
void FN(gk_concrete)(const void *x, int xdtype, int64_t xrs, int64_t xcs, int64_t rows,
                     int64_t cols, const T *tau, int64_t trs, int64_t tcs,
                     const int64_t *seeds, int64_t seed_stride, const int64_t *keys,
                     int64_t key_stride, uint32_t stream, T *y, T *soft, int mode,
                     double gamma, double span, int nthreads, int64_t *status) {
    status[0] = status[1] = -1;
    int direct = xdtype == NATIVE && xcs == 1;
    const int64_t pieces = (cols + GK_CHUNK - 1) / GK_CHUNK;
    const int64_t chunk = gk_pieces_per_chunk(cols);
    #pragma omp parallel num_threads(nthreads)
    {
        T xbuf[GK_CHUNK], tbuf[GK_CHUNK];
        #pragma omp for schedule(dynamic, chunk)
        for (int64_t p = 0; p < rows * pieces; ++p) {
            const int64_t r = p / pieces, c0 = p % pieces * GK_CHUNK;
            const int64_t n = cols - c0 < GK_CHUNK ? cols - c0 : GK_CHUNK;
            const char *xrow = gk_row(x, xdtype, xrs, r);
            const T *trow = tau + r * trs;
            const T *xc = direct ? (const T *)xrow + c0 : xbuf;
            if (!direct) LOAD(xrow, xdtype, xcs, c0, n, xbuf);
            int nan = 0;
            for (int64_t i = 0; i < n; ++i) nan |= xc[i] != xc[i];
            if (nan) {
                int64_t i = 0;
                while (xc[i] == xc[i]) ++i;
                gk_record_min(&status[0], r * cols + c0 + i);
                continue;
            }
            const T *tc = tbuf;
            if (tcs == 1) tc = trow + c0;
            else for (int64_t i = 0; i < n; ++i) tbuf[i] = trow[(c0 + i) * tcs];
            T *io = y + r * cols + c0;
            FN(gk_fill)(GK_NOISE_LOGISTIC, GK_SEED(r), GK_KEY(r), stream, c0, n, io);
            if (mode == 1 && soft) {
                T *s = soft + r * cols + c0;
                memcpy(s, io, (size_t)n * sizeof(T));
                (OPS)->concrete(xc, tc, s, n, 0, (T)gamma, (T)span);
                for (int64_t i = 0; i < n; ++i) io[i] = s[i] > (T)0.5 ? 1 : 0;
            } else {
                (OPS)->concrete(xc, tc, io, n, mode, (T)gamma, (T)span);
            }
        }
    }
}

/* Backward from the saved sample s: mode 0, s = sigmoid(v), v = (x + L) / tau;
 * mode 2, s = the Hard Concrete gate z (gradient 0 where z is 0 or 1). */
void FN(gk_concrete_backward)(const void *g, int gdtype, int64_t grs, int64_t gcs,
                              const T *s, int64_t rows, int64_t cols, const T *tau,
                              int64_t trs, int64_t tcs, int mode, double gamma,
                              double span, T *gx, T *gtau, int nthreads) {
    const int64_t pieces = (cols + GK_CHUNK - 1) / GK_CHUNK;
    const int64_t chunk = gk_pieces_per_chunk(cols);
    #pragma omp parallel for schedule(dynamic, chunk) num_threads(nthreads)
    for (int64_t p = 0; p < rows * pieces; ++p) {
        const int64_t r = p / pieces, c0 = p % pieces * GK_CHUNK;
        const int64_t n = cols - c0 < GK_CHUNK ? cols - c0 : GK_CHUNK;
        T *out = gx + r * cols + c0;
        T *gt = gtau ? gtau + r * cols + c0 : NULL;
        const T *sr = s + r * cols + c0, *tr = tau + r * trs + c0 * tcs;
        LOAD(gk_row(g, gdtype, grs, r), gdtype, gcs, c0, n, out);
        for (int64_t i = 0; i < n; ++i) {
            T y = sr[i], gy = out[i];
            if (mode == 2) {
                if (!(y > 0 && y < 1)) {
                    out[i] = 0;
                    if (gt) gt[i] = 0;
                    continue;
                }
                y = (T)((y - (T)gamma) / (T)span);
                gy = gy * (T)span;
            }
            T gv = gy * ((T)1 - y) * y;
            T t = tr[i * tcs];
            out[i] = gv / t;
            if (gt) {
                T v = (y > 0 && y < 1) ? (T)(log((double)y) - log1p(-(double)y)) : 0;
                gt[i] = -gv * v / t;
            }
        }
    }
}

#undef FN
#undef LOAD
#undef GK_CAT
#undef GK_CAT2
