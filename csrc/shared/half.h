// IEEE binary16 storage without depending on cuda_fp16.h on the host, so the CPU backend
// builds without CUDA. Conversion rounds to nearest even, bit-identical to NumPy's
// float16 cast and to __float2half_rn (checked in tests/test_half.py).
#pragma once

#include "hd.h"

#if defined(__CUDA_ARCH__)
#include <cuda_fp16.h>
#endif

namespace arrcoc::math {

ARRCOC_HD uint16_t float_to_half_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __half_as_ushort(__float2half_rn(f));
#else
  const uint32_t x = float_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) return static_cast<uint16_t>(sign | (a > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (a < 0x38800000u) {                                               // half subnormal or zero
    if (a < 0x33000000u) return static_cast<uint16_t>(sign);          // below 2^-25: zero
    const uint32_t m = (a & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - (a >> 23);                           // 14..24
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (r & 1u))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  uint32_t h = (a - 0x38000000u) >> 13;  // rebias exponent 127 -> 15
  const uint32_t rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // carry may bump the exponent: correct
  return static_cast<uint16_t>(sign | h);
#endif
}

ARRCOC_HD float half_bits_to_float(uint16_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));
#else
  const uint32_t sign = (static_cast<uint32_t>(h) & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu;
  const uint32_t m = h & 0x3ffu;
  if (e == 0) {
    const float v = static_cast<float>(m) * 5.9604644775390625e-8f;  // m * 2^-24, exact
    return sign ? -v : v;
  }
  if (e == 31) return bits_float(sign | 0x7f800000u | (m << 13));
  return bits_float(sign | ((e + 112u) << 23) | (m << 13));
#endif
}

// Typed load/store so one kernel body serves float16 and float32 textures.
ARRCOC_HD void store_texel(float* p, float v) { *p = v; }
ARRCOC_HD void store_texel(uint16_t* p, float v) { *p = float_to_half_bits(v); }
ARRCOC_HD float load_texel(const float* p) { return *p; }
ARRCOC_HD float load_texel(const uint16_t* p) { return half_bits_to_float(*p); }

}  // namespace arrcoc::math
