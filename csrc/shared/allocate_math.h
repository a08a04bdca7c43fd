// Per-element formulas of stages 3-6 (three scores, opponent balancing, temporal blending,
// token allocation, gathering), called by csrc/cpu/allocate_cpu.cpp and
// csrc/cuda/allocate_cuda.cu. The float64 reference is arrcoc_rt.reference.allocate_tokens /
// glimpses / gather_features; docs/ARCHITECTURE.md states the algorithm.
#pragma once

#include <math.h>

#include "arrcoc/allocate.h"
#include "hd.h"

namespace arrcoc::math {

constexpr int kPatch = 16;           // pixels per patch side (= one level-4 texel)
constexpr int kHidden1 = 128;
constexpr int kHidden2 = 64;
constexpr float kLayerNormEps = 1e-5f;
constexpr int kNumLods = 5;

// Balancer parameters as the kernels read them: the public struct (csrc/include/arrcoc/allocate.h)
// plus W2 transposed (k-major), so the 128 -> 64 layer is 128 updates of 64 independent sums
// (vector lanes on the CPU) while each sum still adds its terms in the order k = 0..127.
struct BalanceWeightsData {
  ::arrcoc::BalanceWeights w;
  float W2T[kHidden1 * kHidden2];  // W2T[k * kHidden2 + j] = w.W2[j * kHidden1 + k]
};

inline void pack_balance_weights(const ::arrcoc::BalanceWeights& w, BalanceWeightsData* out) {
  out->w = w;
  for (int j = 0; j < kHidden2; ++j)
    for (int k = 0; k < kHidden1; ++k) out->W2T[k * kHidden2 + j] = w.W2[j * kHidden1 + k];
}

ARRCOC_HD float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

// The budget curve's exponent (saccade_budget): kappa = 4 sigmoid(steepness) + 0.5, in [0.5, 4.5].
ARRCOC_HD float budget_kappa(float steepness) { return 4.0f * sigmoidf(steepness) + 0.5f; }

// Index of the q-th "percentile" in a sorted list of n: floor(q * (n - 1)) for q = 1/10, 9/10.
ARRCOC_HD int low_index(int n) { return (n - 1) / 10; }
ARRCOC_HD int high_index(int n) { return (9 * (n - 1)) / 10; }

// Robust min-max: (x - lo) / (hi - lo) clamped to [0, 1]; 0.5 when the spread is zero.
ARRCOC_HD float robust_unit(float x, float lo, float hi) {
  if (!(hi > lo)) return 0.5f;
  return minf(1.0f, maxf(0.0f, (x - lo) / (hi - lo)));
}

// Layer-1 pre-activation of hidden unit k: recomputed where needed (3 inputs), never stored.
// The balancer's multiply-adds are explicit fmaf: a compiler's contraction of a * b + c differs with
// the code around it (the Chunk, vector or scalar code), explicit fused operations do not.
ARRCOC_HD float balance_hidden1(const ::arrcoc::BalanceWeights& w, int k, float info, float sal, float query) {
  return fmaf(w.W1[3 * k + 2], query, fmaf(w.W1[3 * k + 1], sal, w.W1[3 * k] * info)) + w.b1[k];
}

// raw = sigmoid(W3 ReLU(LN2(W2 ReLU(LN1(W1 x + b1)) + b2)) + b3) for x = (info, salience, query)
// (seed 004: LayerNorm after both hidden layers; its dropout acts in training only).
// The CPU (Chunk = 64) stores both layers, computed once in vector lanes. A GPU thread (64
// registers under 1024 threads) keeps no array in local memory: it recomputes layer 1 (3 inputs)
// where it reads it, and layer 2 in chunks of Chunk outputs, three times (its mean, its variance,
// then the output sum). Every sum adds its terms in the same order (k = 0..127, j = 0..63) whatever
// Chunk is: the same values.
template <int Chunk = kHidden2>
ARRCOC_HD float balance_mlp(const BalanceWeightsData& d, float info, float sal, float query) {
  static_assert(kHidden2 % Chunk == 0, "Chunk divides the second layer");
  constexpr bool kStored = Chunk == kHidden2;
  const ::arrcoc::BalanceWeights& w = d.w;
  float h1[kStored ? kHidden1 : 1];
  if constexpr (kStored)
    for (int k = 0; k < kHidden1; ++k) h1[k] = balance_hidden1(w, k, info, sal, query);
  auto hidden1 = [&](int k) {
    if constexpr (kStored) return h1[k];
    else return balance_hidden1(w, k, info, sal, query);
  };
  float mean = 0.0f;
  for (int k = 0; k < kHidden1; ++k) mean += hidden1(k);
  mean /= static_cast<float>(kHidden1);
  float var = 0.0f;
  for (int k = 0; k < kHidden1; ++k) {
    const float c = hidden1(k) - mean;
    var = fmaf(c, c, var);
  }
  const float inv = 1.0f / sqrtf(var / static_cast<float>(kHidden1) + kLayerNormEps);
  auto relu_norm = [&](float h, int k) { return maxf(0.0f, fmaf((h - mean) * inv, w.ln_gamma[k], w.ln_beta[k])); };
  if constexpr (kStored)
    for (int k = 0; k < kHidden1; ++k) h1[k] = relu_norm(h1[k], k);
  // Layer 2's pre-activations j0 .. j0 + Chunk - 1 into a.
  auto layer2 = [&](int j0, float* a) {
    ARRCOC_DEVICE_UNROLL
    for (int j = 0; j < Chunk; ++j) a[j] = w.b2[j0 + j];
    for (int k = 0; k < kHidden1; ++k) {
      const float h = kStored ? h1[k] : relu_norm(balance_hidden1(w, k, info, sal, query), k);
      const float* col = d.W2T + k * kHidden2 + j0;
      ARRCOC_DEVICE_UNROLL
      for (int j = 0; j < Chunk; ++j) a[j] = fmaf(col[j], h, a[j]);
    }
  };
  float a[Chunk];
  float mean2 = 0.0f;
  for (int j0 = 0; j0 < kHidden2; j0 += Chunk) {
    layer2(j0, a);
    ARRCOC_DEVICE_UNROLL
    for (int j = 0; j < Chunk; ++j) mean2 += a[j];
  }
  mean2 /= static_cast<float>(kHidden2);
  float var2 = 0.0f;
  for (int j0 = 0; j0 < kHidden2; j0 += Chunk) {
    if constexpr (!kStored) layer2(j0, a);
    ARRCOC_DEVICE_UNROLL
    for (int j = 0; j < Chunk; ++j) {
      const float c = a[j] - mean2;
      var2 = fmaf(c, c, var2);
    }
  }
  const float inv2 = 1.0f / sqrtf(var2 / static_cast<float>(kHidden2) + kLayerNormEps);
  float out = w.b3;
  for (int j0 = 0; j0 < kHidden2; j0 += Chunk) {
    if constexpr (!kStored) layer2(j0, a);
    ARRCOC_DEVICE_UNROLL
    for (int j = 0; j < Chunk; ++j)
      out = fmaf(w.W3[j0 + j], maxf(0.0f, fmaf((a[j] - mean2) * inv2, w.ln2_gamma[j0 + j], w.ln2_beta[j0 + j])), out);
  }
  return sigmoidf(out);
}

// How much a patch looks like text: sharp edges (high_pass, ch 9) between few grey levels (low
// entropy, ch 14), as ink on a sign or a page. Busy texture has edges and high entropy; a smooth
// region or a lone outline has little high-pass energy.
ARRCOC_HD float text_likeness(float high_pass, float entropy) {
  const float flat = 1.0f - entropy;
  return high_pass * flat * flat;
}

// The smallest key whose budget (saccade_budget) reaches `budget`: 1 when unreachable.
ARRCOC_HD float key_for_budget(float budget, float steepness, float offset) {
  const float v = (budget - 64.0f) / 336.0f - offset;
  if (!(v > 0.0f)) return 0.0f;
  return v >= 1.0f ? 1.0f : powf(v, 1.0f / budget_kappa(steepness));
}

// The context network's weights w of the three scores from its inputs x (kContextInputs):
// softmax(W2 ReLU(W1 x + b1) + b2), in three steps a GPU block runs on many threads (one per hidden
// unit, one per logit) with the same bits: each sum adds in index order.
ARRCOC_HD float context_hidden(const ::arrcoc::BalanceWeights& w, const float* x, int j) {
  float h = w.ctx_b1[j];
  for (int k = 0; k < ::arrcoc::kContextInputs; ++k) h = fmaf(w.ctx_W1[j * ::arrcoc::kContextInputs + k], x[k], h);
  return maxf(0.0f, h);
}
ARRCOC_HD float context_logit(const ::arrcoc::BalanceWeights& w, const float* hidden, int c) {
  float z = w.ctx_b2[c];
  for (int j = 0; j < ::arrcoc::kContextHidden; ++j) z = fmaf(w.ctx_W2[c * ::arrcoc::kContextHidden + j], hidden[j], z);
  return z;
}
ARRCOC_HD void context_softmax(const float z[3], float out[3]) {
  const float top = maxf(z[0], maxf(z[1], z[2]));
  float e[3], sum = 0.0f;
  for (int c = 0; c < 3; ++c) {
    e[c] = expf(z[c] - top);
    sum += e[c];
  }
  for (int c = 0; c < 3; ++c) out[c] = e[c] / sum;
}
ARRCOC_HD void context_weights(const ::arrcoc::BalanceWeights& w, const float* x, float out[3]) {
  float hidden[::arrcoc::kContextHidden], z[3];
  for (int j = 0; j < ::arrcoc::kContextHidden; ++j) hidden[j] = context_hidden(w, x, j);
  for (int c = 0; c < 3; ++c) z[c] = context_logit(w, hidden, c);
  context_softmax(z, out);
}

// Number of best candidates the spatial diversity is measured against.
ARRCOC_HD int diversity_k(int n) {
  const int k = n / 5 < 50 ? n / 5 : 50;
  return k < 1 ? 1 : k;
}

// Opponent processing: compress/particularize (T1), exploit/explore (T2), focus/diversify (T3),
// mixed. `diversity` is already divided by the frame's largest value.
ARRCOC_HD float opponent_mix(const ::arrcoc::BalanceWeights& w, float info, float sal, float query, float raw,
                             float diversity) {
  const float l1 = sigmoidf(w.lambda_logits[0]), l2 = sigmoidf(w.lambda_logits[1]), l3 = sigmoidf(w.lambda_logits[2]);
  const float t1 = l1 * info + (1.0f - l1) * query;
  const float t2 = l2 * sal + (1.0f - l2) * (1.0f - sal);
  const float t3 = raw + (1.0f - l3) * 0.3f * diversity;
  return w.mix[0] * t1 + w.mix[1] * t2 + w.mix[2] * t3;
}

// Temporal blending of one candidate's balanced score with the warped previous relevance,
// plus the motion boost; clamped to [0, 1]. `has_prev` is false at a scene cut or without history.
ARRCOC_HD float blend_relevance(float balanced, float cached, bool has_prev, bool cut, float motion, float decay,
                                float boost, float motion_threshold) {
  float r = has_prev ? decay * cached + (1.0f - decay) * balanced : balanced;
  if (!cut && motion > motion_threshold) r += boost;
  return minf(1.0f, maxf(0.0f, r));
}

// Source patch of patch (bi, bj) when content moved by (mx, my) pixels: nearest, edge-clamped. The
// motion is clamped to +-2^20 pixels (NaN to 0) first: a caller's texture may hold anything, and the
// conversion to int must stay defined (the result is the same edge either way).
ARRCOC_HD int warp_source(int bi, int bj, float mx, float my, int w4, int h4) {
  mx = clamp_or_zero(mx, -1048576.0f, 1048576.0f);
  my = clamp_or_zero(my, -1048576.0f, 1048576.0f);
  const int si = clampi(static_cast<int>(floorf(static_cast<float>(bi) - my / kPatch + 0.5f)), 0, h4 - 1);
  const int sj = clampi(static_cast<int>(floorf(static_cast<float>(bj) - mx / kPatch + 0.5f)), 0, w4 - 1);
  return si * w4 + sj;
}

// Uniform [0, 1) per (seed, frame, patch) for the 'random' strategy (32-bit integer hash).
ARRCOC_HD float hash_unit(uint32_t seed, uint32_t frame, uint32_t patch) {
  uint32_t x = patch * 0x9E3779B1u + seed * 0x85EBCA77u + frame * 0xC2B2AE3Du;
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return static_cast<float>(x >> 8) * (1.0f / 16777216.0f);
}

// b = 64 + 336 clamp(s^kappa + offset, 0, 1), kappa = 4 sigmoid(steepness) + 0.5.
ARRCOC_HD float saccade_budget(float s, float steepness, float offset) {
  const float v = powf(minf(1.0f, maxf(0.0f, s)), budget_kappa(steepness)) + offset;
  return 64.0f + 336.0f * minf(1.0f, maxf(0.0f, v));
}

// Motion against the background's (in patches) as a salience term on a fixed scale: 0.5 where a
// patch moves with the frame's mean motion (a still camera included), 1 where it moves a patch or
// more against it. Not normalized over the candidates: a lone mover is the point, and a robust
// per-frame range would put it beyond the 90th percentile and flatten it.
ARRCOC_HD float relative_motion_unit(float patches) { return minf(1.0f, 0.5f + 0.5f * patches); }

// Largest level of detail in {64, 128, 256, 384, 400} not above b.
ARRCOC_HD int quantize_lod(float b) {
  return b >= 400.0f ? 400 : b >= 384.0f ? 384 : b >= 256.0f ? 256 : b >= 128.0f ? 128 : 64;
}

// Level of detail of a saccade whose content held `held` (0: none) in the previous frame: `held`
// while the budget stays within `band` of held's interval [held, next level), else quantize_lod.
ARRCOC_HD int quantize_lod_held(float b, int held, float band) {
  const int q = quantize_lod(b);
  if (held <= 0 || q == held) return q;
  const float next = held >= 400 ? 1.0e30f : held >= 384 ? 400.0f : held >= 256 ? 384.0f : held >= 128 ? 256.0f : 128.0f;
  return b >= static_cast<float>(held) - band && b < next + band ? held : q;
}

// Mip level of a level of detail, seed 004's thresholds: >= 300 -> 0 (400, 384), >= 200 -> 1 (256),
// >= 100 -> 2 (128), else 3 (64).
ARRCOC_HD int lod_level(int lod) { return lod >= 300 ? 0 : lod >= 200 ? 1 : lod >= 100 ? 2 : 3; }

// Centre of the existing part of patch p (edge patches are partial), in pixels.
ARRCOC_HD void patch_centre(int p, int w4, int width, int height, float* x, float* y) {
  const int bi = p / w4, bj = p % w4;
  const int x0 = kPatch * bj, y0 = kPatch * bi;
  const int x1 = x0 + kPatch < width ? x0 + kPatch : width;
  const int y1 = y0 + kPatch < height ? y0 + kPatch : height;
  *x = 0.5f * static_cast<float>(x0 + x1);
  *y = 0.5f * static_cast<float>(y0 + y1);
}

// Centre of gestalt token t of a gx x gy grid over the frame (row-major).
ARRCOC_HD void gestalt_centre(int t, int gx, int gy, int width, int height, float* x, float* y) {
  *x = (static_cast<float>(t % gx) + 0.5f) * static_cast<float>(width) / static_cast<float>(gx);
  *y = (static_cast<float>(t / gx) + 0.5f) * static_cast<float>(height) / static_cast<float>(gy);
}

// Patch containing pixel position (x, y).
ARRCOC_HD int patch_of(float x, float y, int w4, int h4) {
  return clampi(static_cast<int>(y) / kPatch, 0, h4 - 1) * w4 + clampi(static_cast<int>(x) / kPatch, 0, w4 - 1);
}

// Level-`level` texel coordinate of glimpse sample u (0..P-1) around a centre at `c` pixels.
ARRCOC_HD float glimpse_coord(float c, int u, int size, int level) {
  const float scale = static_cast<float>(1 << level);
  return (c + (static_cast<float>(u) + 0.5f - 0.5f * static_cast<float>(size)) * scale) / scale - 0.5f;
}

// Window of a token in a dense [C, h, w] feature map over a width x height frame: the
// 2^level x 2^level cells around the token's cell, clamped to the map. Returns the side n.
ARRCOC_HD int feature_window(float x, float y, int level, int width, int height, int h, int w, int* i0, int* j0) {
  int n = 1 << level;
  n = n < h ? n : h;
  const int nw = (1 << level) < w ? (1 << level) : w;
  const int ci = clampi(static_cast<int>(y * static_cast<float>(h) / static_cast<float>(height)), 0, h - 1);
  const int cj = clampi(static_cast<int>(x * static_cast<float>(w) / static_cast<float>(width)), 0, w - 1);
  *i0 = clampi(ci - (1 << level) / 2, 0, h - n);
  *j0 = clampi(cj - (1 << level) / 2, 0, w - nw);
  return n * 65536 + nw;  // rows in the high half, columns in the low half
}

// Mean of feature channel c over token (x, y, level)'s window; 0 for padding (level < 0).
ARRCOC_HD float gather_feature(const float* features, int c, int h, int w, float x, float y, int level, int width,
                               int height) {
  if (level < 0) return 0.0f;
  int i0, j0;
  const int packed = feature_window(x, y, level, width, height, h, w, &i0, &j0);
  const int nr = packed >> 16, nc = packed & 0xffff;
  const float* plane = features + static_cast<int64_t>(c) * h * w;
  float s = 0.0f;
  for (int i = i0; i < i0 + nr; ++i)
    for (int j = j0; j < j0 + nc; ++j) s += plane[static_cast<int64_t>(i) * w + j];
  return s / static_cast<float>(nr * nc);
}

}  // namespace arrcoc::math
