// Stages 3-6: the three ways of knowing per candidate, opponent-processing balance, temporal
// blending and token allocation (one fused step), and gathering of pixel glimpses.
//
// Output: a fixed-size pack of N = gestalt_x * gestalt_y + saccades tokens (gestalt first,
// missing saccades padded with kind -1), so the CUDA path needs no host synchronization.
#pragma once

#include <cstdint>
#include <memory>

#include "arrcoc/cascade.h"
#include "arrcoc/export.h"
#include "arrcoc/frame.h"
#include "arrcoc/status.h"
#include "arrcoc/texture.h"

namespace arrcoc {

enum class SaccadeStrategy : int32_t {
  kBalanced = 0,  // relevance after balancing and temporal blending (default)
  kRandom = 1,    // seeded uniform order (for running-back experiments)
  kSaliency = 2,  // bottom-up salience score only
  kQuery = 3,     // query relevance only
  kSobel = 4,     // seed 000's saliency baseline: the patch's mean Sobel edge magnitude (channel 8), min-max
};

// The context network (seeds 000/001): per frame, the query embedding and the frame's gestalt ->
// a hidden layer -> softmax weights of the three scores (information, salience, query). Inputs:
// [0, 16) the query's embedding in the texture's semantic space (set_query_embedding), [16] 1 with
// a query, [17, 33) the frame's mean of channels 17..32 and [33, 37) of channels 0..3 over the
// patches (level 4), [37, 40) the candidates' mean information, salience and query scores.
constexpr int kContextInputs = 40;
constexpr int kContextHidden = 256;  // seed 000's width
constexpr int kQueryEmbeddingDims = 16;

// Largest |value| of any balancer parameter: beyond it the MLP's float32 sums can overflow (a
// finite 3.4e38 in W1 made NaN scores, found by fuzzing); set_weights refuses larger ones.
constexpr float kMaxBalanceWeight = 1e6f;

// Balancer parameters; python/arrcoc_rt/weights.py documents them and the file formats.
struct BalanceWeights {
  float W1[128 * 3];
  float b1[128];
  float ln_gamma[128];
  float ln_beta[128];
  float W2[64 * 128];
  float b2[64];
  float ln2_gamma[64];  // LayerNorm after the second hidden layer too (seed 004's balancer)
  float ln2_beta[64];
  float W3[64];
  float b3;
  float lambda_logits[3];
  float mix[3];
  // context network: w = softmax(ctx_W2 ReLU(ctx_W1 x + ctx_b1) + ctx_b2); all zero (the default)
  // is off: the scores are used as they are (with any other values the strategy 'balanced' scales
  // information, salience and query by 3 w).
  float ctx_W1[kContextHidden * kContextInputs];
  float ctx_b1[kContextHidden];
  float ctx_W2[3 * kContextHidden];
  float ctx_b2[3];
};

struct AllocatorConfig {
  int32_t max_width = 1920;          // largest frame, 1..16384
  int32_t max_height = 1080;
  int32_t max_candidates = 500;      // cascade capacity (top_clusters * patches_per_cluster), 1..1024
  int32_t gestalt_x = 16;            // gestalt grid, 1..64 each
  int32_t gestalt_y = 16;
  int32_t gestalt_lod = 64;          // level of detail of gestalt tokens: 64, 128, 256, 384 or 400
  int32_t saccades = 273;            // saccade slots, 0..1024
  int32_t total_budget = 100000;     // all tokens' levels of detail, >= gestalt count * gestalt_lod
  float steepness = 2.0f;            // kappa = 4 sigmoid(steepness) + 0.5 = 4.02 (seed 004's init), [-20, 20]
  float offset = 0.0f;               // budget curve offset, [-0.3, 0.3] (seed 004's range)
  SaccadeStrategy strategy = SaccadeStrategy::kBalanced;
  uint32_t seed = 0;                 // for kRandom
  float decay = 0.8f;                // weight of the carried relevance, [0, 1]
  float motion_boost = 0.8f;         // added where motion > motion_threshold, [0, 1]
  float motion_threshold = 0.2f;     // [0, 1]
  // Scene cut: more than cut_share of the pixels have motion (ch 10) above cut_motion, and the
  // frame's structure changed: the correlation of its level-4 luminance with the previous frame's,
  // moved by the frame's mean motion vector, is below cut_correlation. Measured (2026-11-30, 320x192
  // H.264 in tests/test_stability.py and photo pairs): hard cuts move 28-67 % of the pixels above
  // 0.2 and correlate -0.23..0.35, cuts between shots of matched colour and brightness included;
  // a flash (1.8x brighter, clipped) moves 94 % of the pixels but correlates 0.99; zoom >= 0.93,
  // shake >= 0.89, pans within the motion search (16 px a frame) >= 0.86, 40 px a frame 0.60-0.69.
  // Pans far beyond the search (80 px a frame: 0.3) read as cuts. [0, 1] each.
  float cut_motion = 0.2f;
  float cut_share = 0.25f;
  float cut_correlation = 0.5f;
  bool gestalt_overlap = true;       // false: no saccade on a patch holding a gestalt centre
  // Stability. A candidate whose content (followed along the motion vectors) held a saccade in
  // the previous frame ranks with `hysteresis` added to its key: a newcomer must beat it by that
  // margin. Its level of detail stays while its budget stays within `lod_band` of that level's
  // interval. Both reset at scene cuts and size changes. hysteresis [0, 1], lod_band [0, 336].
  float hysteresis = 0.15f;
  float lod_band = 24.0f;
  // Text guardrail (issue #14): a patch that looks like text -- sharp edges between few grey levels,
  // high_pass (ch 9) * (1 - entropy (ch 14))^2 >= text_threshold at level 4 -- joins the candidates,
  // ranks at least as a key worth text_floor would, and a saccade on it gets at least text_floor.
  // Measured on signs rendered over 9 scikit-image photos (tests/test_text_guardrail.py): 0.02 finds
  // about 90 % of the patches that hold text and flags 0.2 % of the others. text_floor 0 (off) or a
  // level of detail (64, 128, 256, 384, 400); text_threshold (0, 1].
  int32_t text_floor = 256;
  float text_threshold = 0.02f;
  int32_t glimpse_size = 16;         // P: glimpses are P x P, 1..64
  Device device = Device::kCPU;
  int32_t cuda_device = 0;
  int32_t num_threads = 0;
};

// One frame's token pack; pointers into the allocator's memory (host or device per `device`),
// valid until its next run(). Per-candidate arrays follow the cascade's slots.
struct TokenPack {
  Device device = Device::kCPU;
  int32_t cuda_device = 0;           // device ordinal when device == kCUDA
  int32_t num_tokens = 0;            // N = gestalt tokens + saccade slots
  int32_t num_gestalt = 0;
  int32_t glimpse_size = 0;
  int32_t patch_grid_width = 0, patch_grid_height = 0;
  const float* positions = nullptr;  // [N, 2] centre (x, y) in pixels; -1 for padding
  const int32_t* levels = nullptr;   // [N] mip level; -1 for padding
  const int32_t* budgets = nullptr;  // [N] level of detail; 0 for padding
  const int32_t* kinds = nullptr;    // [N] 0 gestalt, 1 saccade, -1 padding
  const int32_t* patches = nullptr;  // [N] patch id; -1 for padding
  const float* scores = nullptr;     // [N] ranking key of saccades (key + hysteresis if held), 0 for gestalt
  // [N] the token of the previous frame whose content (followed along the motion vectors) this
  // token shows, or -1: a new saccade, a cut, a moved gestalt cell, padding. `reuse` is the same
  // where the token's pixels are those of that token (a model may keep its cached keys/values for
  // it): it stayed on its patch, at the same level of detail, in a frame of the same size built
  // right after the previous one, with at most one grey level of change along its chain; else -1.
  const int32_t* previous = nullptr;
  const int32_t* reuse = nullptr;
  // [N] where `reuse` >= 0: how much the token's pixels changed along its whole reuse chain (the
  // largest frame difference under its glimpse, summed over the chain's frames; at most one grey
  // level, 1/255, or the chain starts again); 0 elsewhere.
  const float* reuse_drift = nullptr;
  const float* glimpses = nullptr;   // [N, 3, P, P] RGB in [0, 1] at each token's level; 0 for padding
  const float* relevance = nullptr;  // [h4 * w4] relevance carried to the next frame (= channel 39)
  const float* homunculus = nullptr; // [h4 * w4] levels of detail per patch
  const int32_t* scene_cut = nullptr;  // [1] 1 when this frame was a scene cut
  const int32_t* num_saccades = nullptr;  // [1] saccades placed (<= saccades)
  // per cascade slot (-1 slots hold 0): the three scores, raw MLP output, balanced, relevance
  const float* info = nullptr;
  const float* salience = nullptr;
  const float* query = nullptr;
  const float* raw = nullptr;
  const float* balanced = nullptr;
  const float* candidate_relevance = nullptr;
  const float* context_weights = nullptr;  // [3] the context network's weights of the three scores (1/3 each when off)
  // [capacity] the cascade's candidate patch per slot, -1 padding: a copy in the allocator's memory
  // (valid until its next run, as the rest of the pack, whatever the cascade does meanwhile)
  const int32_t* candidates = nullptr;
  int32_t candidate_capacity = 0;
};

// The untrained default: raw = mean of the three scores (within ~1.5e-3), each opponent dial
// at 0.5, mix (0.4, 0.3, 0.3).
ARRCOC_API BalanceWeights default_balance_weights() noexcept;

class ARRCOC_API TokenAllocator {
 public:
  static Status create(const AllocatorConfig& config, std::unique_ptr<TokenAllocator>* out) noexcept;
  ~TokenAllocator();
  TokenAllocator(const TokenAllocator&) = delete;
  TokenAllocator& operator=(const TokenAllocator&) = delete;

  // Replace the balancer parameters (default, set by create(): default_balance_weights(), the
  // untrained "mean of the three scores" MLP). Rejects NaN/inf and values beyond +-kMaxBalanceWeight.
  Status set_weights(const BalanceWeights& weights) noexcept;

  // The query's embedding for the context network ([kQueryEmbeddingDims] host floats, e.g. the
  // query vector projected like texture channels 17..32), used by the following run()s; nullptr:
  // none (zeros). Rejects NaN/inf.
  Status set_query_embedding(const float* embedding) noexcept;

  // One frame: reads the texture (levels 0, 4 and the colour at every level) and the cascade's
  // candidates, writes texture channels 34, 37, 38, 39 and the token pack.
  Status run(const TextureView& texture, const CascadeView& cascade, bool has_query, TokenPack* out,
             void* cuda_stream = nullptr) noexcept;

  // Running back: each token of the last run() gets the mean of `features` (float32 [C, h, w],
  // row-major, covering the whole frame, on the allocator's device) over the 2^level x 2^level
  // cells around its centre; written to `out` ([N, C], same device). Padding tokens get 0.
  Status gather_features(const float* features, int channels, int height, int width, float* out,
                         void* cuda_stream = nullptr) noexcept;

  // The last run's token pack in host memory. CUDA: copied into page-locked memory the allocator
  // owns (allocated at the first call, then reused), queued on `cuda_stream` after the run, and
  // waited for: one host synchronization. *out views that memory until the next copy_to_host.
  // CPU: *out is the last run's pack.
  Status copy_to_host(TokenPack* out, void* cuda_stream = nullptr) noexcept;
  // CUDA: work queued on `stream` from now on waits for the last run (and gathers); no host wait.
  Status wait_on_stream(void* stream) noexcept;

  // Forget the carried relevance (the next frame starts fresh).
  void reset() noexcept;
  // Block the host until the last run (and gathers) have finished (CUDA; no-op on the CPU).
  Status synchronize() noexcept;
  const AllocatorConfig& config() const noexcept;

  struct Impl;

 private:
  explicit TokenAllocator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace arrcoc
