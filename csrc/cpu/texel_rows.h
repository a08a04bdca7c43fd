// Bulk conversions between float rows and stored texels (float32, or float16 bits: 8 per F16C
// instruction when built for x86-64-v3), for the CPU loops that compute in float rows.
#pragma once

#include <cstdint>
#include <cstring>

#include "../shared/half.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace arrcoc::cpu {

inline void store_row(const float* src, float* dst, int n) { std::memcpy(dst, src, sizeof(float) * n); }
__attribute__((always_inline)) inline void store_row(const float* src, uint16_t* dst, int n) {
  int i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
  for (; i < n; ++i) dst[i] = math::float_to_half_bits(src[i]);
}
inline void load_row(const float* src, float* dst, int n) { std::memcpy(dst, src, sizeof(float) * n); }
inline void load_row(const uint16_t* src, float* dst, int n) {
  int i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
#endif
  for (; i < n; ++i) dst[i] = math::half_bits_to_float(src[i]);
}

}  // namespace arrcoc::cpu
