// IEEE binary16 storage without depending on cuda_fp16.h on the host, so the CPU backend
// builds without CUDA. Conversion rounds to nearest even, bit-identical to NumPy's
// float16 cast and to __float2half_rn (checked in tests/test_half.py).
#pragma once

#include "hd.h"

#if defined(__CUDA_ARCH__)
#include <cuda_fp16.h>
#elif defined(__F16C__)
#include <immintrin.h>  // the CPU backend is built for x86-64-v3: hardware conversions
#endif

namespace arrcoc::math {

ARRCOC_HD uint16_t float_to_half_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __half_as_ushort(__float2half_rn(f));
#elif defined(__F16C__)
  return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
#else
  // F. Giesen's float_to_half_fast3_rtne: round-to-nearest-even with one float add for
  // subnormals and an integer rounding bias for normals; few, predictable branches.
  uint32_t u = float_bits(f);
  const uint32_t sign = u & 0x80000000u;
  u ^= sign;
  uint32_t o;
  if (u >= 0x47800000u) {                         // >= 65536 (after rounding: inf) or inf/NaN
    o = u > 0x7f800000u ? 0x7e00u : 0x7c00u;
  } else if (u < 0x38800000u) {                   // result subnormal or zero
    const float denorm_magic = bits_float(((127u - 15u) + (23u - 10u) + 1u) << 23);
    o = float_bits(bits_float(u) + denorm_magic) - float_bits(denorm_magic);
  } else {
    const uint32_t mant_odd = (u >> 13) & 1u;
    u += (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu + mant_odd;
    o = u >> 13;                                  // a carry out of 65504 gives inf, as RNE requires
  }
  return static_cast<uint16_t>(o | (sign >> 16));
#endif
}

ARRCOC_HD float half_bits_to_float(uint16_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));
#elif defined(__F16C__)
  return _cvtsh_ss(h);
#else
  // Giesen's half_to_float: shift exponent/mantissa into place, fix up inf/NaN and
  // renormalize subnormals with one float subtraction.
  const uint32_t shifted_exp = 0x7c00u << 13;
  uint32_t o = (static_cast<uint32_t>(h) & 0x7fffu) << 13;
  const uint32_t exp = shifted_exp & o;
  o += (127u - 15u) << 23;
  if (exp == shifted_exp) {
    o += (128u - 16u) << 23;                      // inf/NaN
  } else if (exp == 0) {
    o += 1u << 23;                                // subnormal: renormalize
    o = float_bits(bits_float(o) - bits_float(113u << 23));
  }
  return bits_float(o | ((static_cast<uint32_t>(h) & 0x8000u) << 16));
#endif
}

// Typed load/store so one kernel body serves float16 and float32 textures.
ARRCOC_HD void store_texel(float* p, float v) { *p = v; }
ARRCOC_HD void store_texel(uint16_t* p, float v) { *p = float_to_half_bits(v); }
ARRCOC_HD float load_texel(const float* p) { return *p; }
ARRCOC_HD float load_texel(const uint16_t* p) { return half_bits_to_float(*p); }

}  // namespace arrcoc::math
