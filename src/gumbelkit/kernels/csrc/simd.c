/* The float32 row primitives for AVX-512, AVX2 + FMA and SSE2 (portable x86-64, or
 * plain C elsewhere), and the run-time choice between them: the best the CPU
 * supports, or the one named by GUMBELKIT_SIMD (portable, avx2, avx512). */
#include <stdlib.h>
#include <string.h>

#include "gk.h"
#include "noise.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define GK_FENCE() _mm_sfence() /* after streaming stores */

#pragma GCC push_options
#pragma GCC target("avx512f")
#define W 16
#define SFX avx512
#define GK_MUL_EVEN(a, b) ((vq)_mm512_mul_epu32((__m512i)(a), (__m512i)(b)))
#define GK_FMA(a, b, c) ((vf)_mm512_fmadd_ps((__m512)(a), (__m512)(b), (__m512)(c)))
#define GK_MAX(a, b) ((vf)_mm512_max_ps((__m512)(a), (__m512)(b)))
#define GK_MAXI(a, b) ((vi)_mm512_max_epi32((__m512i)(a), (__m512i)(b)))
#define GK_STREAM(p, v) _mm512_stream_ps(p, (__m512)(v))
#define GK_ANY(m) (_mm512_test_epi32_mask((__m512i)(m), (__m512i)(m)) != 0)
#define GK_PAIR {0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30}
#define GK_QLO {0, 8, 2, 10, 4, 12, 6, 14}
#define GK_QHI {1, 9, 3, 11, 5, 13, 7, 15}
#include "simd_impl.h"
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define W 8
#define SFX avx2
#define GK_MUL_EVEN(a, b) ((vq)_mm256_mul_epu32((__m256i)(a), (__m256i)(b)))
#define GK_FMA(a, b, c) ((vf)_mm256_fmadd_ps((__m256)(a), (__m256)(b), (__m256)(c)))
#define GK_MAX(a, b) ((vf)_mm256_max_ps((__m256)(a), (__m256)(b)))
#define GK_MAXI(a, b) ((vi)_mm256_max_epi32((__m256i)(a), (__m256i)(b)))
#define GK_STREAM(p, v) _mm256_stream_ps(p, (__m256)(v))
#define GK_ANY(m) (!_mm256_testz_si256((__m256i)(m), (__m256i)(m)))
#define GK_PAIR {0, 8, 2, 10, 4, 12, 6, 14}
#define GK_QLO {0, 4, 2, 6}
#define GK_QHI {1, 5, 3, 7}
#include "simd_impl.h"
#pragma GCC pop_options

#define GK_MUL_EVEN(a, b) ((vq)_mm_mul_epu32((__m128i)(a), (__m128i)(b)))
#define GK_STREAM(p, v) _mm_stream_ps(p, (__m128)(v))
#define GK_MAX(a, b) ((vf)_mm_max_ps((__m128)(a), (__m128)(b)))
#define GK_ANY(m) (_mm_movemask_epi8((__m128i)(m)) != 0)
#else
#define GK_FENCE() ((void)0)
#define GK_STREAM(p, v) do { vf stream_ = (v); memcpy(p, &stream_, sizeof stream_); } while (0)
#define GK_ANY(m) ((m)[0] | (m)[1] | (m)[2] | (m)[3])
/* Generic: 64-bit lane products of the low 32 bits (any GCC/Clang target). */
#define GK_MUL_EVEN(a, b) (((a) & 0xFFFFFFFFull) * ((b) & 0xFFFFFFFFull))
#endif

#define GK_FMA(a, b, c) ((a) * (b) + (c))
#define W 4
#define SFX portable
#define GK_PAIR {0, 4, 2, 6}
#define GK_QLO {0, 2}
#define GK_QHI {1, 3}
#include "simd_impl.h"

static const gk_ops_f32 *gk_active = &gk_ops_portable;
static int gk_active_isa = GK_ISA_PORTABLE;

/* Highest instruction set this CPU (and its OS) runs. */
static int gk_isa_supported(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return GK_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return GK_ISA_AVX2;
#endif
    return GK_ISA_PORTABLE;
}

/* Select an instruction set; returns 0 on success, -1 if this CPU lacks it. */
int gk_set_isa(int isa) {
    if (isa < GK_ISA_PORTABLE || isa > gk_isa_supported()) return -1;
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa == GK_ISA_AVX512) gk_active = &gk_ops_avx512;
    else if (isa == GK_ISA_AVX2) gk_active = &gk_ops_avx2;
    else gk_active = &gk_ops_portable;
#else
    gk_active = &gk_ops_portable;
#endif
    gk_active_isa = isa;
    return 0;
}

int gk_isa_max(void) { return gk_isa_supported(); }

int gk_isa(void) { return gk_active_isa; }

const char *gk_isa_name(void) { return gk_active->name; }

const gk_ops_f32 *gk_ops(void) { return gk_active; }

/* exp of the active instruction set, elementwise (for the accuracy tests). */
void gk_exp_f32(const float *x, float *out, int64_t n) { gk_active->exp(x, out, n); }

__attribute__((constructor)) static void gk_choose_isa(void) {
    int isa = gk_isa_supported();
    const char *env = getenv("GUMBELKIT_SIMD");
    if (env != NULL && strcmp(env, "portable") == 0) isa = GK_ISA_PORTABLE;
    else if (env != NULL && strcmp(env, "avx2") == 0 && isa >= GK_ISA_AVX2) isa = GK_ISA_AVX2;
    gk_set_isa(isa);
}
