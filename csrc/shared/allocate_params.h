// Parameter block of stages 3-6, filled by csrc/core/allocate.cpp and read by both backends,
// plus the per-candidate and per-token steps both backends call. Only ordering statistics
// (percentiles, top-k, sums) are computed differently: nth_element/sort on the CPU, rank
// counting and block reductions on CUDA; they give the same values.
#pragma once

#include "allocate_math.h"
#include "arrcoc/allocate.h"
#include "half.h"
#include "texture_math.h"

namespace arrcoc {

// Features of a candidate: texture planes at level 4 (kFeatureChannel), then ones computed here.
enum Feature {
  kFeatEcc = 0, kFeatHighPass, kFeatMotion, kFeatSaliency, kFeatEdge, kFeatEntropy, kFeatQuery, kFeatSobel, kNumPlaneFeat,
  kFeatRelMotion = kNumPlaneFeat,  // |motion vector - the frame's mean| in patches: motion against the background's
  kNumFeat
};
constexpr int kFeatureChannel[kNumPlaneFeat] = {5, 9, 10, 11, 12, 14, 33, 8};
constexpr int kMotionFeature = 2;  // feat4[2]: channel 10 (motion, the frame difference) at level 4
// A token's cached keys/values may be reused only where the frame difference (channel 10 at level 4:
// each patch's mean of box5(|L - L_prev|)) is at most one grey level on every patch its glimpse
// samples: the motion vectors read 0 under pans slower than their 4-px step, so "nothing moved" is
// not enough. The bound holds along the whole reuse chain, not per link: each token carries the sum
// of its chain's changes (drift), and a chain whose sum passes it starts again (a slow fade of half
// a grey level a frame would otherwise be reused for ever).
constexpr float kReuseChange = 1.0f / 255.0f;
// Components with a normalization (ecc enters as 1 - ecc): index into lohi pairs. Robust (ranks
// low_index / high_index) except the Sobel key, min-max (ranks 0 and n - 1) as the seed's top-k of
// pooled edge magnitudes: its best patches must stay ordered, not tie at 1; and the query score,
// from low_index to the best match (rank n - 1): an object smaller than a tenth of the candidates
// would otherwise tie at 1 with the background's best look-alikes (docs/EVALUATION.md).
enum Component { kCompEntropy = 0, kCompEdge, kCompHighPass, kCompSaliency, kCompQuery, kCompSobel, kNumComp };
ARRCOC_HD int component_feature(int c) {
  switch (c) {
    case kCompEntropy: return kFeatEntropy;
    case kCompEdge: return kFeatEdge;
    case kCompHighPass: return kFeatHighPass;
    case kCompSaliency: return kFeatSaliency;
    case kCompSobel: return kFeatSobel;
    default: return kFeatQuery;
  }
}
ARRCOC_HD int component_low_rank(int c, int n) { return c == kCompSobel ? 0 : math::low_index(n); }
ARRCOC_HD int component_high_rank(int c, int n) {
  return c == kCompSobel || c == kCompQuery ? n - 1 : math::high_index(n);
}
// Only the sobel strategy reads the Sobel bounds (the others skip ranking it; its bounds read 0).
ARRCOC_HD bool component_needed(const AllocatorConfig& cfg, int c) {
  return c != kCompSobel || cfg.strategy == SaccadeStrategy::kSobel;
}

// The context network's gestalt: level-4 channels 17..32 (semantic), then 0..3 (colour, luminance).
constexpr int kGestaltChannels = 20;
ARRCOC_HD int gestalt_channel(int k) { return k < 16 ? 17 + k : k - 16; }

struct AllocateParams {
  DType dtype;                          // texture element type
  const void* gestalt4[kGestaltChannels];  // level-4 planes of gestalt_channel(k)
  const void* feat4[kNumPlaneFeat];     // level-4 planes of the features (kFeatureChannel)
  const void* mvx4;                     // ch 35 at level 4
  const void* mvy4;                     // ch 36 at level 4
  const void* motion0;                  // ch 10 at level 0 (scene cut)
  const void* lum4;                     // ch 3 at level 4 (scene cut: structure)
  const float* prev_lum;                // [w4*h4] the previous frame's lum4 (with has_history)
  float* new_lum;                       // [w4*h4] this frame's, for the next
  unsigned long long* structure_sums;   // [kAllSums] see structure_terms, then the gestalt sums
  int32_t* row_counts;                  // CPU: [max_height] moving pixels per row of motion0
  void* out_cached4;                    // ch 34 at level 4 (written)
  void* out_info4;                      // ch 37 at level 4 (written)
  void* out_sal4;                       // ch 38 at level 4 (written)
  void* out_rel4;                       // ch 39 at level 4 (written)
  const void* rgb[kNumLevels][3];       // ch 0..2 at every level (glimpses)
  int32_t lw[kNumLevels], lh[kNumLevels];
  int32_t width, height, w4, h4;
  const int32_t* slots;                 // cascade candidates, capacity entries, -1 padding
  const float* patch_contrast;          // cascade: [w4*h4] contrast of each patch's cluster
  int32_t capacity;
  bool has_query, motion_valid;
  uint32_t frame_index;
  const math::BalanceWeightsData* weights;  // on the backend's device
  bool context_on;                      // the weights' context network is not all zero (strategy balanced)
  float query_embedding[kQueryEmbeddingDims];  // set_query_embedding (zeros: none)
  float* context;                       // [3] the context network's weights of the three scores
  AllocatorConfig cfg;                  // knobs (the device fields are unused here)
  int32_t num_gestalt;                  // gestalt_x * gestalt_y
  int32_t num_tokens;                   // num_gestalt + saccades
  int32_t room;                         // total_budget - num_gestalt * gestalt_lod

  const float* prev_rel;                // [w4*h4] relevance of the previous frame (valid when has_history)
  bool has_history;                     // previous frame exists with the same patch grid
  // Cached keys/values may apply: the previous frame had this very size (a few pixels less move every
  // gestalt centre and change the model's image) and the frame difference that checks the pixels is
  // valid (motion_valid).
  bool reuse_valid;
  float* new_rel;                       // [w4*h4] relevance carried to the next frame
  float* cached;                        // [w4*h4] warped previous relevance
  const int32_t* prev_token;            // [w4*h4] saccade token per patch in the previous frame, -1
  const int32_t* prev_budget;           // [w4*h4] its level of detail
  int32_t* held_token;                  // [w4*h4] prev_token warped along the motion (-1 at cuts)
  int32_t* held_budget;                 // [w4*h4] prev_budget warped the same way
  int32_t* new_token;                   // [w4*h4] this frame's saccade token per patch (next frame's prev)
  int32_t* new_budget;                  // [w4*h4]
  const float* prev_drift;              // [w4*h4] reuse-chain drift of the previous frame's saccade per patch
  float* held_drift;                    // [w4*h4] prev_drift warped along the motion (0 where none is held)
  float* new_drift;                     // [w4*h4] this frame's saccade's drift per patch (next frame's prev)
  const float* prev_gdrift;             // [num_gestalt] reuse-chain drift of each gestalt token, previous frame
  float* new_gdrift;                    // [num_gestalt] this frame's
  int32_t* is_candidate;                // [w4*h4] scratch: 1 where the patch is a candidate
  int32_t* is_text;                     // [w4*h4] 1 where the patch looks like text (cfg.text_threshold)

  // per candidate (compacted order), capacity entries each
  int32_t* cand;                        // patch id
  int32_t* slot_of;                     // cascade slot (-1: a held patch the cascade did not propose)
  float* feat[kNumFeat];                // raw feature values
  float* info; float* sal; float* query; float* raw; float* div; float* bal; float* rel; float* key;
  float* rank_key;                      // key + hysteresis for held content: what saccades are ranked by
  int32_t* eligible;                    // 1 if the candidate may become a saccade
  int32_t* ranked;                      // CPU: candidate indices being ranked (scratch)
  float* lohi;                          // [2 * kNumComp] robust normalization bounds
  int32_t* counters;                    // [0] n, [1] scene cut, [2] saccades kept, [3] level-0 motion count
  int32_t* kbest;                       // [50] candidates with the best raw
  int32_t* order;                       // [saccades] selected candidates, best first
  float* budget;                        // [saccades] budgets after scaling
  int32_t* lod;                         // [saccades] quantized levels of detail

  // per-slot outputs (capacity entries)
  float *slot_info, *slot_sal, *slot_query, *slot_raw, *slot_bal, *slot_rel;
  int32_t* slot_cand;                   // the cascade's candidate per slot, copied: the pack's own
  // token pack (num_tokens entries; glimpses num_tokens * 3 * P * P)
  float* positions; int32_t* levels; int32_t* budgets; int32_t* kinds; int32_t* patches; float* scores;
  int32_t* previous; int32_t* reuse;    // see TokenPack
  float* reuse_drift;                   // [num_tokens] see TokenPack
  float* glimpses;
  float* homunculus;                    // [w4*h4]
  int32_t num_threads;
};

template <typename T>
ARRCOC_HD float plane_value(const void* plane, int64_t i) {
  return math::load_texel(static_cast<const T*>(plane) + i);
}

// Scene cut of a frame: more than cut_share of the level-0 pixels move by more than cut_motion,
// and the structure changed (structure_correlation below cut_correlation; without a previous
// frame of this grid, motion alone decides).
// structure_sums: [0..1] the motion vectors' sums (whole pixels), then [2..6] sums of x, y, x^2,
// y^2, xy in 2^-20 units (two's complement; exact in any order).
constexpr int kMotionSums = 2;
constexpr int kStructureSums = kMotionSums + 5;
constexpr int kAllSums = kStructureSums + kGestaltChannels;  // then the gestalt's sums (2^-20 units)

// |v| <= kMaxStatTexel (callers clamp): at most 2^34 in these units, so sums over the 2^20 patches
// of the largest frame stay exact.
ARRCOC_HD int64_t structure_fixed(float v) { return static_cast<int64_t>(rintf(v * 1048576.0f)); }

// A texel read as a statistic: a caller's texture may hold anything (hd.h: clamp_or_zero).
template <typename T>
ARRCOC_HD float stat_value(const void* plane, int64_t i) {
  return math::stat_texel(plane_value<T>(plane, i));
}

// Pass 1, patch q: its motion vector, for the frame's mean (the camera's motion).
template <typename T>
ARRCOC_HD void motion_terms(const AllocateParams& p, int q, unsigned long long out[kMotionSums]) {
  out[0] = static_cast<unsigned long long>(static_cast<int64_t>(rintf(stat_value<T>(p.mvx4, q))));
  out[1] = static_cast<unsigned long long>(static_cast<int64_t>(rintf(stat_value<T>(p.mvy4, q))));
}

ARRCOC_HD float mean_motion(const unsigned long long* sums, int which, int64_t n) {
  return static_cast<float>(static_cast<double>(static_cast<int64_t>(sums[which])) / static_cast<double>(n));
}

// Pass 2, patch q: x = its level-4 luminance, y = the previous frame's at the patch the frame's
// mean motion brings there (0 without history). One global shift, not each patch's own vector: at a
// cut, block matching still finds each block a best-looking source, and those would make unrelated
// frames correlate; a pan or shake moves everything alike.
template <typename T>
ARRCOC_HD void structure_terms(const AllocateParams& p, int q, unsigned long long out[kStructureSums - kMotionSums]) {
  // luminance lies in [0, 1]; clamped to [-2, 2] (NaN to 0), x^2 < 2^42 and its sum over 2^20
  // patches fits int64 whatever a caller's texture holds (kept clamped for the next frame too)
  const float lx = math::clamp_or_zero(plane_value<T>(p.lum4, q), -2.0f, 2.0f);
  p.new_lum[q] = lx;
  int64_t x = 0, y = 0;
  if (p.has_history) {
    const int64_t n = static_cast<int64_t>(p.w4) * p.h4;
    const float mx = mean_motion(p.structure_sums, 0, n), my = mean_motion(p.structure_sums, 1, n);
    x = structure_fixed(lx);
    y = structure_fixed(p.prev_lum[math::warp_source(q / p.w4, q % p.w4, mx, my, p.w4, p.h4)]);
  }
  const int64_t t[kStructureSums - kMotionSums] = {x, y, x * x, y * y, x * y};
  for (int k = 0; k < kStructureSums - kMotionSums; ++k) out[k] = static_cast<unsigned long long>(t[k]);
}

// Pearson correlation from the exact sums over n patches (double arithmetic on exact integers:
// the same bits everywhere, unless a compiler fuses it); 1 (no structural change) when either
// frame is flat.
ARRCOC_HD double structure_correlation(const unsigned long long* all_sums, int64_t n) {
  const unsigned long long* sums = all_sums + kMotionSums;
  const double s = 1.0 / 1048576.0, n_d = static_cast<double>(n);
  const double sx = static_cast<double>(static_cast<int64_t>(sums[0])) * s;
  const double sy = static_cast<double>(static_cast<int64_t>(sums[1])) * s;
  const double sxx = static_cast<double>(static_cast<int64_t>(sums[2])) * s * s;
  const double syy = static_cast<double>(static_cast<int64_t>(sums[3])) * s * s;
  const double sxy = static_cast<double>(static_cast<int64_t>(sums[4])) * s * s;
  const double vx = n_d * sxx - sx * sx, vy = n_d * syy - sy * sy;
  if (!(vx > 1e-12 * n_d * n_d) || !(vy > 1e-12 * n_d * n_d)) return 1.0;
  return (n_d * sxy - sx * sy) / sqrt(vx * vy);
}

// Patch q's gestalt term k: its level-4 value of gestalt channel k in 2^-20 units (integers: the
// sums are exact in any order, so every backend gets the same means).
template <typename T>
ARRCOC_HD unsigned long long gestalt_term(const AllocateParams& p, int q, int k) {
  return static_cast<unsigned long long>(structure_fixed(stat_value<T>(p.gestalt4[k], q)));
}

// Candidate i's terms of the context network's three score means (information with the frame's
// repetition gain, as the balancer sees it; salience; query): exact sums, the same in any order.
ARRCOC_HD void context_score_terms(const AllocateParams& p, int i, float info_gain, unsigned long long out[3]) {
  out[0] = math::exact_sum_term(math::exact_sum_value(p.info[i] * info_gain));
  out[1] = math::exact_sum_term(math::exact_sum_value(p.sal[i]));
  out[2] = math::exact_sum_term(math::exact_sum_value(p.query[i]));
}

// The context network's inputs (kContextInputs; see arrcoc/allocate.h) once the gestalt sums and the
// n candidates' score sums (context_score_terms) are known.
ARRCOC_HD void context_inputs(const AllocateParams& p, int n, const unsigned long long score_sums[3], float* x) {
  for (int k = 0; k < kQueryEmbeddingDims; ++k) x[k] = p.query_embedding[k];
  x[kQueryEmbeddingDims] = p.has_query ? 1.0f : 0.0f;
  const double npatch = static_cast<double>(p.w4) * p.h4;
  for (int k = 0; k < kGestaltChannels; ++k)
    x[kQueryEmbeddingDims + 1 + k] = static_cast<float>(
        static_cast<double>(static_cast<int64_t>(p.structure_sums[kStructureSums + k])) / 1048576.0 / npatch);
  for (int c = 0; c < 3; ++c) x[kContextInputs - 3 + c] = math::exact_sum_mean(score_sums[c], n);
}

// The context step on one thread (the CPU; the CUDA kernel runs the same steps on many):
// p.context = the network's weights, or 1/3 each when it is off.
inline void context_step(const AllocateParams& p, int n, float info_gain) {
  if (!p.context_on) {
    for (int c = 0; c < 3; ++c) p.context[c] = 1.0f / 3.0f;
    return;
  }
  unsigned long long sums[3] = {0, 0, 0};
  for (int i = 0; i < n; ++i) {
    unsigned long long t[3];
    context_score_terms(p, i, info_gain, t);
    for (int c = 0; c < 3; ++c) sums[c] += t[c];
  }
  float x[kContextInputs];
  context_inputs(p, n, sums, x);
  math::context_weights(p.weights->w, x, p.context);
}

ARRCOC_HD bool is_scene_cut(const AllocateParams& p, int64_t count) {
  if (!(p.motion_valid && static_cast<double>(count) > static_cast<double>(p.cfg.cut_share) * p.width * p.height))
    return false;
  return !p.has_history ||
         structure_correlation(p.structure_sums, static_cast<int64_t>(p.w4) * p.h4) < static_cast<double>(p.cfg.cut_correlation);
}

// Per patch: the warped previous relevance (ch 34) and the decayed carry-over of new_rel.
template <typename T>
ARRCOC_HD void carry_patch(const AllocateParams& p, int q, bool cut) {
  const bool has_prev = p.has_history && !cut;
  float c = 0.0f;
  int32_t held = -1, held_budget = 0;
  float held_drift = 0.0f;
  if (has_prev) {
    const float mx = plane_value<T>(p.mvx4, q), my = plane_value<T>(p.mvy4, q);
    const int src = math::warp_source(q / p.w4, q % p.w4, mx, my, p.w4, p.h4);
    c = p.prev_rel[src];
    held = p.prev_token[src];
    held_budget = held >= 0 ? p.prev_budget[src] : 0;
    held_drift = held >= 0 ? p.prev_drift[src] : 0.0f;
  }
  p.cached[q] = c;
  p.held_token[q] = held;
  p.held_budget[q] = held_budget;
  p.held_drift[q] = held_drift;
  p.new_token[q] = -1;
  p.new_budget[q] = 0;
  p.new_drift[q] = 0.0f;
  p.is_candidate[q] = 0;
  p.is_text[q] = p.cfg.text_floor > 0 &&
                 math::text_likeness(stat_value<T>(p.feat4[kFeatHighPass], q), stat_value<T>(p.feat4[kFeatEntropy], q)) >=
                     p.cfg.text_threshold;
  p.new_rel[q] = has_prev ? p.cfg.decay * c : 0.0f;
  math::store_texel(static_cast<T*>(p.out_cached4) + q, c);
  math::store_texel(static_cast<T*>(p.out_info4) + q, 0.0f);
  math::store_texel(static_cast<T*>(p.out_sal4) + q, 0.0f);
  p.homunculus[q] = 0.0f;
}

// Candidates: the cascade's slots in slot order (padding skipped), then, in patch order, the
// patches whose content held a saccade last frame that the cascade did not propose (so a saccade
// can stay on its content: hysteresis), then the patches that look like text (the guardrail), up
// to max_candidates. Returns their number. (The CUDA backend runs this as a block-wide scan with
// the same result: allocate_cuda.cu, compact_candidates_block.)
// A caller's CascadeView may hold anything: patches outside the grid are skipped (and repeats,
// below).
ARRCOC_HD bool slot_in_grid(const AllocateParams& p, int s) { return p.slots[s] >= 0 && p.slots[s] < p.w4 * p.h4; }
ARRCOC_HD bool held_a_saccade(const AllocateParams& p, int q) { return p.held_token[q] >= 0; }
ARRCOC_HD bool looks_like_text(const AllocateParams& p, int q) { return p.is_text[q] != 0; }
ARRCOC_HD int compact_candidates(const AllocateParams& p) {
  int n = 0;
  for (int s = 0; s < p.capacity; ++s)
    if (slot_in_grid(p, s) && !p.is_candidate[p.slots[s]]) {
      p.cand[n] = p.slots[s];
      p.slot_of[n] = s;
      p.is_candidate[p.slots[s]] = 1;
      ++n;
    }
  if (p.cfg.strategy == SaccadeStrategy::kRandom) return n;
  const int npatch = p.w4 * p.h4;
  for (int q = 0; q < npatch && n < p.cfg.max_candidates; ++q)
    if (held_a_saccade(p, q) && !p.is_candidate[q]) {
      p.cand[n] = q;
      p.slot_of[n] = -1;
      p.is_candidate[q] = 1;
      ++n;
    }
  for (int q = 0; q < npatch && n < p.cfg.max_candidates; ++q)
    if (looks_like_text(p, q) && !p.is_candidate[q]) {
      p.cand[n] = q;
      p.slot_of[n] = -1;
      p.is_candidate[q] = 1;
      ++n;
    }
  return n;
}

template <typename T>
ARRCOC_HD void load_features(const AllocateParams& p, int i) {
  const int q = p.cand[i];
  for (int f = 0; f < kNumPlaneFeat; ++f) p.feat[f][i] = stat_value<T>(p.feat4[f], q);
  // Motion that counts for salience is motion against the background's: in a pan everything
  // moves, and what moves differently stands out (the mean comes from the scene-cut pass).
  const int64_t n = static_cast<int64_t>(p.w4) * p.h4;
  const float dx = stat_value<T>(p.mvx4, q) - mean_motion(p.structure_sums, 0, n);
  const float dy = stat_value<T>(p.mvy4, q) - mean_motion(p.structure_sums, 1, n);
  p.feat[kFeatRelMotion][i] = sqrtf(dx * dx + dy * dy) / static_cast<float>(math::kPatch);
}

// Does a gestalt centre fall inside patch q?
ARRCOC_HD bool patch_has_gestalt(const AllocateParams& p, int q) {
  const int bi = q / p.w4, bj = q % p.w4;
  bool col = false, row = false;
  for (int a = 0; a < p.cfg.gestalt_x; ++a) {
    float x, y;
    math::gestalt_centre(a, p.cfg.gestalt_x, p.cfg.gestalt_y, p.width, p.height, &x, &y);
    col = col || math::patch_of(x, 0.0f, p.w4, p.h4) % p.w4 == bj;
  }
  for (int b = 0; b < p.cfg.gestalt_y; ++b) {
    float x, y;
    math::gestalt_centre(b * p.cfg.gestalt_x, p.cfg.gestalt_x, p.cfg.gestalt_y, p.width, p.height, &x, &y);
    row = row || math::patch_of(0.0f, y, p.w4, p.h4) / p.w4 == bi;
  }
  return col && row;
}

// The three ways of knowing of candidate i (lohi holds the frame's robust bounds); the
// information score is final only after info_gain_and_raw.
ARRCOC_HD void three_scores(const AllocateParams& p, int i) {
  auto unit = [&](int comp) {
    return math::robust_unit(p.feat[component_feature(comp)][i], p.lohi[2 * comp], p.lohi[2 * comp + 1]);
  };
  p.info[i] = (unit(kCompEntropy) + unit(kCompEdge) + unit(kCompHighPass)) / 3.0f;
  // Salience: what stands out -- locally (centre-surround) or as a region whose colour or texture is rare in
  // the frame (its cluster's contrast, which holds a large smooth object whose interior
  // has no centre-surround response) -- plus the fovea and motion.
  // a caller's CascadeView may hold anything: contrast lies in [0, 1]
  const float stands_out = math::maxf(unit(kCompSaliency), math::clamp_or_zero(p.patch_contrast[p.cand[i]], 0.0f, 1.0f));
  p.sal[i] = (stands_out + (1.0f - p.feat[kFeatEcc][i]) + math::relative_motion_unit(p.feat[kFeatRelMotion][i])) / 3.0f;
  p.query[i] = p.has_query ? unit(kCompQuery) : 0.5f;
}

// The information score scaled by the frame's repetition gain of information (a frame where every
// candidate is busy texture leaves the choice to salience and query: texture must not take the
// saccades from the subject), then the MLP's raw score (Chunk: see balance_mlp).
// With the context network on, the scores are then weighted by 3 w (the seeds' weighted sum of
// the three scores; 1 each at uniform weights) before the balancer sees them.
template <int Chunk = math::kHidden2>
ARRCOC_HD void info_gain_and_raw(const AllocateParams& p, int i, float info_gain) {
  p.info[i] *= info_gain;
  if (p.context_on) {
    p.info[i] *= 3.0f * p.context[0];
    p.sal[i] *= 3.0f * p.context[1];
    p.query[i] *= 3.0f * p.context[2];
  }
  p.raw[i] = math::balance_mlp<Chunk>(*p.weights, p.info[i], p.sal[i], p.query[i]);
}

// Distance (patch units) from candidate i to the nearest of the k best by raw.
ARRCOC_HD float nearest_best_distance(const AllocateParams& p, int i, int k) {
  const int q = p.cand[i];
  const float x = static_cast<float>(q % p.w4), y = static_cast<float>(q / p.w4);
  float best = 3.0e38f;
  for (int m = 0; m < k; ++m) {
    const int o = p.cand[p.kbest[m]];
    const float dx = x - static_cast<float>(o % p.w4), dy = y - static_cast<float>(o / p.w4);
    best = math::minf(best, sqrtf(dx * dx + dy * dy));
  }
  return best;
}

// Does the text guardrail hold candidate i (it looks like text; not for the random baseline)?
ARRCOC_HD bool text_guarded(const AllocateParams& p, int i) {
  return p.cfg.strategy != SaccadeStrategy::kRandom && p.is_text[p.cand[i]];
}

// The least budget of saccade s: text_floor on text, else 0 (scaling keeps 64 anyway).
ARRCOC_HD float saccade_floor(const AllocateParams& p, int s) {
  return text_guarded(p, p.order[s]) ? static_cast<float>(p.cfg.text_floor) : 0.0f;
}

// Budget of saccade s before scaling: from its key, not below its floor.
ARRCOC_HD float saccade_raw_budget(const AllocateParams& p, int s) {
  return math::maxf(math::saccade_budget(p.key[p.order[s]], p.cfg.steepness, p.cfg.offset), saccade_floor(p, s));
}

// Budget of saccade s after scaling by `scale` (<= 1): not below 64, nor below its floor.
ARRCOC_HD float saccade_scaled_budget(const AllocateParams& p, int s, float scale) {
  const float b = scale < 1.0f ? math::maxf(64.0f, p.budget[s] * scale) : p.budget[s];
  return math::maxf(b, saccade_floor(p, s));
}

// Relevance after temporal blending, and the strategy's selection key, of candidate i.
template <typename T>
ARRCOC_HD void relevance_and_key(const AllocateParams& p, int i, bool cut) {
  const int q = p.cand[i];
  p.rel[i] = math::blend_relevance(p.bal[i], p.cached[q], p.has_history && !cut, cut, p.feat[kFeatMotion][i],
                                   p.cfg.decay, p.cfg.motion_boost, p.cfg.motion_threshold);
  switch (p.cfg.strategy) {
    case SaccadeStrategy::kRandom: p.key[i] = math::hash_unit(p.cfg.seed, p.frame_index, static_cast<uint32_t>(q)); break;
    case SaccadeStrategy::kSaliency: p.key[i] = p.sal[i]; break;
    case SaccadeStrategy::kQuery: p.key[i] = p.query[i]; break;
    case SaccadeStrategy::kSobel:
      p.key[i] = math::robust_unit(p.feat[kFeatSobel][i], p.lohi[2 * kCompSobel], p.lohi[2 * kCompSobel + 1]);
      break;
    default: p.key[i] = p.rel[i]; break;
  }
  // Random selection has nothing to hold on to; every other strategy keeps held content unless a
  // newcomer beats it by the margin.
  const bool held = p.cfg.strategy != SaccadeStrategy::kRandom && p.held_token[q] >= 0;
  float rank = p.key[i];
  if (text_guarded(p, i)) rank = math::maxf(rank, math::key_for_budget(static_cast<float>(p.cfg.text_floor), p.cfg.steepness, p.cfg.offset));
  p.rank_key[i] = rank + (held ? p.cfg.hysteresis : 0.0f);
  p.eligible[i] = (p.cfg.gestalt_overlap || !patch_has_gestalt(p, q)) ? 1 : 0;
}

// True when candidate a comes before candidate b in a ranking by value (desc, then index).
ARRCOC_HD bool ranks_before(float va, int a, float vb, int b) { return va > vb || (va == vb && a < b); }

// Clears cascade slot s of the per-slot outputs (slots without a candidate read 0).
// The slot's candidate is copied into the pack (the cascade's memory changes at its next run).
ARRCOC_HD void clear_slot(const AllocateParams& p, int s) {
  p.slot_info[s] = p.slot_sal[s] = p.slot_query[s] = p.slot_raw[s] = p.slot_bal[s] = p.slot_rel[s] = 0.0f;
  p.slot_cand[s] = p.slots[s];
}

// Publishes candidate i: its scores in its cascade slot, its relevance in the carried map, and
// texture channels 37 and 38 at its patch.
template <typename T>
ARRCOC_HD void publish_candidate(const AllocateParams& p, int i) {
  const int s = p.slot_of[i], q = p.cand[i];
  if (s >= 0) {
    p.slot_info[s] = p.info[i];
    p.slot_sal[s] = p.sal[i];
    p.slot_query[s] = p.query[i];
    p.slot_raw[s] = p.raw[i];
    p.slot_bal[s] = p.bal[i];
    p.slot_rel[s] = p.rel[i];
  }
  p.new_rel[q] = p.rel[i];
  math::store_texel(static_cast<T*>(p.out_info4) + q, p.info[i]);
  math::store_texel(static_cast<T*>(p.out_sal4) + q, p.sal[i]);
}

// Level of detail of saccade s (selected candidate order[s]) with its budget after scaling.
ARRCOC_HD int saccade_lod(const AllocateParams& p, int s) {
  return math::quantize_lod_held(p.budget[s], p.held_budget[p.cand[p.order[s]]], p.cfg.lod_band);
}

// How much the pixels a glimpse at (x, y) and `level` samples changed since the previous frame:
// the largest frame difference on the patches they touch, its centre +- (glimpse_size / 2 + 1)
// texels of its level (the +1: the bilinear taps), up to 4.5 patches each way for a 16-sample
// glimpse at level 3 (read as every stage reads a statistic: NaN as 0, clamped).
template <typename T>
ARRCOC_HD float glimpse_change(const AllocateParams& p, float x, float y, int level) {
  const float r = (0.5f * static_cast<float>(p.cfg.glimpse_size) + 1.0f) * static_cast<float>(1 << level);
  const float patch = static_cast<float>(math::kPatch);
  const int j0 = math::clampi(static_cast<int>(floorf((x - r) / patch)), 0, p.w4 - 1);
  const int j1 = math::clampi(static_cast<int>(floorf((x + r) / patch)), 0, p.w4 - 1);
  const int i0 = math::clampi(static_cast<int>(floorf((y - r) / patch)), 0, p.h4 - 1);
  const int i1 = math::clampi(static_cast<int>(floorf((y + r) / patch)), 0, p.h4 - 1);
  float change = 0.0f;
  for (int i = i0; i <= i1; ++i)
    for (int j = j0; j <= j1; ++j) {
      const float v = stat_value<T>(p.feat4[kMotionFeature], i * p.w4 + j);
      change = math::maxf(change, v);
    }
  return change;
}

// Writes token t of the pack (gestalt tokens first, then saccade slot t - G). `carried`: the
// previous frame's state applies (history of this patch grid, no scene cut).
template <typename T>
ARRCOC_HD void write_token(const AllocateParams& p, int t, int kept, bool carried) {
  const int G = p.num_gestalt;
  float x = -1.0f, y = -1.0f, score = 0.0f;
  float drift = 0.0f;  // the reuse chain's content change so far (0: a fresh token, or a new chain)
  int level = -1, budget = 0, kind = -1, patch = -1, previous = -1, reuse = -1;
  if (t < G) {
    math::gestalt_centre(t, p.cfg.gestalt_x, p.cfg.gestalt_y, p.width, p.height, &x, &y);
    level = math::lod_level(p.cfg.gestalt_lod);
    budget = p.cfg.gestalt_lod;
    kind = 0;
    patch = math::patch_of(x, y, p.w4, p.h4);
    // A gestalt cell shows the same content when nothing moved under it.
    if (carried && plane_value<T>(p.mvx4, patch) == 0.0f && plane_value<T>(p.mvy4, patch) == 0.0f) {
      previous = t;
      reuse = p.reuse_valid ? t : -1;
      drift = p.prev_gdrift[t];
    }
  } else if (t - G < kept) {
    const int s = t - G, i = p.order[s];
    patch = p.cand[i];
    math::patch_centre(patch, p.w4, p.width, p.height, &x, &y);
    budget = p.lod[s];
    level = math::lod_level(budget);
    kind = 1;
    score = p.rank_key[i];  // what it was ranked by (the key, plus the hold bonus)
    previous = p.held_token[patch];
    // Reused only where it stayed on its patch: the pixel check below compares this frame with the
    // last at the same place, which says nothing of a token carried in from another patch (a
    // spurious motion vector on a brightening scene carried one 16 px with 54 grey levels between).
    const bool stayed = math::warp_source(patch / p.w4, patch % p.w4, plane_value<T>(p.mvx4, patch),
                                          plane_value<T>(p.mvy4, patch), p.w4, p.h4) == patch;
    reuse = previous >= 0 && stayed && p.reuse_valid && p.held_budget[patch] == budget ? previous : -1;
    drift = p.held_drift[patch];
    p.new_token[patch] = t;  // saccades are on distinct patches
    p.new_budget[patch] = budget;
  }
  if (reuse >= 0) {  // its pixels may have changed, since the previous frame or along the chain
    drift += glimpse_change<T>(p, x, y, level);
    if (!(drift <= kReuseChange)) reuse = -1;
  }
  if (reuse < 0) drift = 0.0f;  // what this token shows now starts a chain
  if (kind == 0) p.new_gdrift[t] = drift;
  if (kind == 1) p.new_drift[patch] = drift;
  p.reuse_drift[t] = drift;
  p.previous[t] = previous;
  p.reuse[t] = reuse;
  p.positions[2 * t] = x;
  p.positions[2 * t + 1] = y;
  p.levels[t] = level;
  p.budgets[t] = budget;
  p.kinds[t] = kind;
  p.patches[t] = patch;
  p.scores[t] = score;
}

// One axis of token t's glimpse sample u: the texel taps along x (axis 0) or y (axis 1) at the
// token's level (which must be >= 0). Separable, so the CPU computes 2P taps per token, not P^2.
ARRCOC_HD math::BilinearTap glimpse_tap(const AllocateParams& p, int t, int axis, int u) {
  const int level = p.levels[t];
  const float coord = math::glimpse_coord(p.positions[2 * t + axis], u, p.cfg.glimpse_size, level);
  return math::bilinear_tap(coord, axis ? p.lh[level] : p.lw[level]);
}

// One glimpse sample: token t, colour c, row v, column u (0 for padding).
template <typename T>
ARRCOC_HD float glimpse_sample(const AllocateParams& p, int t, int c, int v, int u) {
  if (p.levels[t] < 0) return 0.0f;
  const math::BilinearTap tx = glimpse_tap(p, t, 0, u), ty = glimpse_tap(p, t, 1, v);
  return math::sample_taps(static_cast<const T*>(p.rgb[p.levels[t]][c]), p.lw[p.levels[t]], tx, ty);
}

}  // namespace arrcoc
