// Dispatcher of stages 3-6: validation, memory (allocated once), carried relevance, weights,
// backend choice.
#include "arrcoc/allocate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>

#include "../cpu/allocate_cpu.h"
#include "../shared/allocate_params.h"
#include "arena.h"
#include "frame_checks.h"
#include "guard.h"

namespace arrcoc {

BalanceWeights default_balance_weights() noexcept {
  // raw = mean(info, salience, query) within ~1.5e-3: +-m on two first-layer units (LayerNorm 1's
  // mean exactly 0; the small scale keeps it linear), 63 ReLU hinges of the second layer building
  // logit(m) plus one unit that balances their sum (LayerNorm 2's mean 0; a smaller scale keeps
  // it linear too), the final sigmoid undoing it. See python/arrcoc_rt/weights.py.
  BalanceWeights w;
  std::memset(&w, 0, sizeof(w));
  const double scale = 1e-3, scale2 = 1e-5, eps = 1e-5;
  auto g = [&](double m) {
    const double u = scale * m;
    return u / std::sqrt(2.0 * u * u / 128.0 + eps);
  };
  auto logit = [](double m) {
    m = std::min(0.995, std::max(0.005, m));
    return std::log(m / (1.0 - m));
  };
  for (int c = 0; c < 3; ++c) {
    w.W1[c] = static_cast<float>(scale / 3.0);
    w.W1[3 + c] = static_cast<float>(-scale / 3.0);
  }
  for (int k = 0; k < 128; ++k) w.ln_gamma[k] = 1.0f;
  for (int j = 0; j < 64; ++j) w.ln2_gamma[j] = 1.0f;
  constexpr int kKnots = 63;
  double gk[kKnots + 1], target[kKnots + 1], slope_prev = 0.0, knot_sum = 0.0;
  for (int k = 0; k <= kKnots; ++k) {
    const double t = static_cast<double>(k) / kKnots;
    gk[k] = g(t);
    target[k] = logit(t);
  }
  const double unit = scale2 / std::sqrt(eps);  // a hinge's slope in g after LayerNorm 2
  for (int k = 0; k < kKnots; ++k) {
    w.W2[k * 128] = static_cast<float>(scale2);
    w.b2[k] = static_cast<float>(-scale2 * gk[k]);
    knot_sum += static_cast<double>(w.b2[k]);
    const double slope = (target[k + 1] - target[k]) / (gk[k + 1] - gk[k]);
    w.W3[k] = static_cast<float>((slope - slope_prev) / unit);
    slope_prev = slope;
  }
  w.W2[kKnots * 128] = static_cast<float>(-scale2 * kKnots);  // the balancing unit (its W3 is 0)
  w.b2[kKnots] = static_cast<float>(-knot_sum);
  w.b3 = static_cast<float>(target[0]);
  w.mix[0] = 0.4f;
  w.mix[1] = 0.3f;
  w.mix[2] = 0.3f;
  return w;
}

namespace {

Status bad(StatusCode code, const std::string& msg) { return Status(code, msg); }

Status check_config(const AllocatorConfig& c) {
  // whole numbers as integers (the int settings: "saccades 5000", not "5000.000000"), others as %g
  auto number = [](double v) {
    if (std::fabs(v) < 1e15 && v == std::floor(v)) return std::to_string(static_cast<long long>(v));
    char text[32];
    std::snprintf(text, sizeof text, "%g", v);
    return std::string(text);
  };
  auto range = [&number](const char* name, double v, double lo, double hi) {
    return bad(StatusCode::kOutOfRange, std::string(name) + " " + number(v) + " is out of range; expected [" +
                                            number(lo) + ", " + number(hi) + "]");
  };
  if (c.max_width < 1 || c.max_width > 16384) return range("max_width", c.max_width, 1, 16384);
  if (c.max_height < 1 || c.max_height > 16384) return range("max_height", c.max_height, 1, 16384);
  if (c.max_candidates < 1 || c.max_candidates > 1024) return range("max_candidates", c.max_candidates, 1, 1024);
  if (c.gestalt_x < 1 || c.gestalt_x > 64) return range("gestalt_x", c.gestalt_x, 1, 64);
  if (c.gestalt_y < 1 || c.gestalt_y > 64) return range("gestalt_y", c.gestalt_y, 1, 64);
  if (c.gestalt_lod != 64 && c.gestalt_lod != 128 && c.gestalt_lod != 256 && c.gestalt_lod != 384 && c.gestalt_lod != 400)
    return bad(StatusCode::kInvalidArgument, "gestalt_lod " + std::to_string(c.gestalt_lod) +
                                                 " is not a level of detail; expected 64, 128, 256, 384 or 400");
  if (c.saccades < 0 || c.saccades > 1024) return range("saccades", c.saccades, 0, 1024);
  const int64_t gestalt = static_cast<int64_t>(c.gestalt_x) * c.gestalt_y * c.gestalt_lod;
  if (c.total_budget < gestalt || c.total_budget > 10000000)
    return bad(StatusCode::kOutOfRange, "total_budget " + std::to_string(c.total_budget) +
                                            " is out of range; expected at least the gestalt tokens' " +
                                            std::to_string(gestalt) + " and at most 10000000");
  if (!(std::fabs(c.steepness) <= 20.0f)) return range("steepness", c.steepness, -20, 20);
  if (!(std::fabs(c.offset) <= 0.3f)) return range("offset", c.offset, -0.3, 0.3);
  if (static_cast<int>(c.strategy) < 0 || static_cast<int>(c.strategy) > 4)
    return bad(StatusCode::kInvalidArgument, "strategy must be balanced, random, saliency, query or sobel");
  const float unit[] = {c.decay, c.motion_boost, c.motion_threshold, c.cut_motion, c.cut_share, c.cut_correlation};
  const char* names[] = {"decay", "motion_boost", "motion_threshold", "cut_motion", "cut_share", "cut_correlation"};
  for (int i = 0; i < 6; ++i)
    if (!(unit[i] >= 0.0f && unit[i] <= 1.0f)) return range(names[i], unit[i], 0, 1);
  if (c.glimpse_size < 1 || c.glimpse_size > 64) return range("glimpse_size", c.glimpse_size, 1, 64);
  if (!(c.hysteresis >= 0.0f && c.hysteresis <= 1.0f)) return range("hysteresis", c.hysteresis, 0, 1);
  if (!(c.lod_band >= 0.0f && c.lod_band <= 336.0f)) return range("lod_band", c.lod_band, 0, 336);
  if (c.text_floor != 0 && c.text_floor != 64 && c.text_floor != 128 && c.text_floor != 256 && c.text_floor != 384 &&
      c.text_floor != 400)
    return bad(StatusCode::kInvalidArgument, "text_floor " + std::to_string(c.text_floor) +
                                                 " is not a level of detail; expected 0 (off), 64, 128, 256, 384 or 400");
  if (!(c.text_threshold > 0.0f && c.text_threshold <= 1.0f))
    return bad(StatusCode::kOutOfRange, "text_threshold " + std::to_string(c.text_threshold) +
                                            " is out of range; expected (0, 1] (at 0 every patch would count as text)");
  if (c.num_threads < 0 || c.num_threads > 1024) return range("num_threads", c.num_threads, 0, 1024);
  return Status::Ok();
}

}  // namespace

struct TokenAllocator::Impl {
  explicit Impl(const AllocatorConfig& c) : config(c), arena(c.device) {}
  ~Impl() {
    cuda::DeviceGuard on(ordinal());
    cuda::event_destroy(done_event);
    cuda::free_host(host_mirror);
    arena.release();
  }
  int ordinal() const { return guard_ordinal(config.device, config.cuda_device); }

  AllocatorConfig config;
  Arena arena;
  AllocateParams buffers{};
  math::BalanceWeightsData* weights = nullptr;  // on the device
  float* rel[2] = {nullptr, nullptr};  // relevance grids: previous / new, swapped each frame
  int32_t* token_of_patch[2] = {nullptr, nullptr};   // saccade token per patch: previous / new
  int32_t* budget_of_patch[2] = {nullptr, nullptr};  // its level of detail
  float* lum_of_patch[2] = {nullptr, nullptr};       // level-4 luminance: previous / this frame
  float* drift_of_patch[2] = {nullptr, nullptr};     // reuse-chain drift of the saccade per patch
  float* drift_of_gestalt[2] = {nullptr, nullptr};   // reuse-chain drift of each gestalt token
  bool has_history = false;
  int32_t hist_w4 = 0, hist_h4 = 0;
  int32_t last_width = 0, last_height = 0;  // frame size of the last run
  uint64_t last_texture = 0;                 // TextureView::frame_index of the last run's texture
  uint32_t frame_index = 0;
  void* done_event = nullptr;
  StreamOrder order;
  math::BalanceWeightsData host_weights;  // CUDA: the packed weights, copied on the last stream
  bool context_on = false;        // the weights' context network is not all zero
  float query_embedding[kQueryEmbeddingDims] = {};
  bool ran = false;
  TokenPack last{};              // the last run's pack
  bool tokens_valid = false;     // the last run succeeded: `last` holds a whole frame's tokens
  void* host_mirror = nullptr;   // CUDA: page-locked copy of a pack at max sizes (copy_to_host)

  // Calls f(array, elements now, elements at most) for every array of a pack.
  template <typename F>
  void each_array(TokenPack& v, F&& f) const {
    const size_t N = static_cast<size_t>(config.gestalt_x) * config.gestalt_y + config.saccades;
    const size_t P = static_cast<size_t>(config.glimpse_size);
    LevelLayout L[kNumLevels];
    texture_layout(config.max_width, config.max_height, L);
    const size_t n4 = static_cast<size_t>(v.patch_grid_width) * v.patch_grid_height;
    const size_t n4_max = static_cast<size_t>(L[4].width) * L[4].height;
    const size_t C = static_cast<size_t>(v.candidate_capacity), C_max = static_cast<size_t>(config.max_candidates);
    f(v.positions, 2 * N, 2 * N);
    for (const int32_t** a : {&v.levels, &v.budgets, &v.kinds, &v.patches, &v.previous, &v.reuse}) f(*a, N, N);
    f(v.scores, N, N);
    f(v.reuse_drift, N, N);
    f(v.glimpses, N * 3 * P * P, N * 3 * P * P);
    f(v.relevance, n4, n4_max);
    f(v.homunculus, n4, n4_max);
    f(v.scene_cut, 1, 1);
    f(v.num_saccades, 1, 1);
    for (const float** a : {&v.info, &v.salience, &v.query, &v.raw, &v.balanced, &v.candidate_relevance})
      f(*a, C, C_max);
    f(v.candidates, C, C_max);
    f(v.context_weights, 3, 3);
  }

  // One wait for the whole pack: every copy is queued on `stream` into the page-locked mirror.
  Status copy_to_host(TokenPack* out, void* stream) {
    if (!out) return bad(StatusCode::kInvalidArgument, "out (TokenPack*) is null");
    if (!ran) return bad(StatusCode::kInvalidArgument, "copy_to_host: run() has not produced tokens yet");
    if (!tokens_valid) return bad(StatusCode::kInvalidArgument, "copy_to_host: the last run() failed; it left no tokens");
    if (config.device == Device::kCPU) {
      *out = last;
      return Status::Ok();
    }
    cuda::DeviceGuard on(ordinal());
    if (!on.status().ok()) return on.status();
    if (Status v = cuda::check_stream_device(stream, config.cuda_device, "TokenAllocator"); !v.ok()) return v;
    auto padded = [](size_t bytes) { return (bytes + 63) / 64 * 64; };
    Status s;
    if (!host_mirror) {
      size_t total = 0;
      TokenPack sizes = last;
      each_array(sizes, [&](auto& a, size_t, size_t most) { total += padded(most * sizeof(*a)); });
      if (!(s = cuda::malloc_host(&host_mirror, total)).ok()) return s;
    }
    TokenPack h = last;
    size_t offset = 0;
    s = cuda::stream_wait_event(stream, done_event);
    each_array(h, [&](auto& a, size_t now, size_t most) {
      using T = std::remove_const_t<std::remove_pointer_t<std::remove_reference_t<decltype(a)>>>;
      T* dst = reinterpret_cast<T*>(static_cast<char*>(host_mirror) + offset);
      offset += padded(most * sizeof(T));
      if (s.ok() && now > 0) s = cuda::copy_to_host_async(dst, a, now * sizeof(T), stream);
      a = dst;
    });
    // The next run waits for these copies too (StreamOrder), so it cannot overwrite what they read.
    if (s.ok()) s = cuda::event_record(done_event, stream);
    if (s.ok()) s = cuda::event_synchronize(done_event);
    if (!s.ok()) return s;
    h.device = Device::kCPU;
    *out = h;
    return Status::Ok();
  }

  Status allocate() {
    LevelLayout L[kNumLevels];
    texture_layout(config.max_width, config.max_height, L);
    const size_t n4 = static_cast<size_t>(L[4].width) * L[4].height;
    const size_t cap = static_cast<size_t>(config.max_candidates);
    const size_t ntok = static_cast<size_t>(config.gestalt_x) * config.gestalt_y + config.saccades;
    const size_t P = static_cast<size_t>(config.glimpse_size);
    AllocateParams& b = buffers;
    Status s = arena.alloc_n(1, &weights);
    for (int i = 0; i < 2 && s.ok(); ++i) s = arena.alloc_n(n4, &rel[i]);
    for (int i = 0; i < 2 && s.ok(); ++i) s = arena.alloc_n(n4, &token_of_patch[i]);
    for (int i = 0; i < 2 && s.ok(); ++i) s = arena.alloc_n(n4, &budget_of_patch[i]);
    for (int i = 0; i < 2 && s.ok(); ++i) s = arena.alloc_n(n4, &lum_of_patch[i]);
    for (int i = 0; i < 2 && s.ok(); ++i) s = arena.alloc_n(n4, &drift_of_patch[i]);
    for (int i = 0; i < 2 && s.ok(); ++i)
      s = arena.alloc_n(static_cast<size_t>(config.gestalt_x) * config.gestalt_y, &drift_of_gestalt[i]);
    if (s.ok()) s = arena.alloc_n(kAllSums, &b.structure_sums);
    if (s.ok()) s = arena.alloc_n(3, &b.context);
    if (s.ok()) s = arena.alloc_n(n4, &b.held_token);
    if (s.ok()) s = arena.alloc_n(n4, &b.held_budget);
    if (s.ok()) s = arena.alloc_n(n4, &b.held_drift);
    if (s.ok()) s = arena.alloc_n(n4, &b.is_candidate);
    if (s.ok()) s = arena.alloc_n(n4, &b.is_text);
    if (s.ok()) s = arena.alloc_n(cap, &b.rank_key);
    if (s.ok()) s = arena.alloc_n(n4, &b.cached);
    if (s.ok()) s = arena.alloc_n(n4, &b.homunculus);
    for (int32_t** a : {&b.cand, &b.slot_of, &b.eligible, &b.ranked, &b.slot_cand})
      if (s.ok()) s = arena.alloc_n(cap, a);
    for (int f = 0; f < kNumFeat && s.ok(); ++f) s = arena.alloc_n(cap, &b.feat[f]);
    for (float** a : {&b.info, &b.sal, &b.query, &b.raw, &b.div, &b.bal, &b.rel, &b.key, &b.slot_info, &b.slot_sal,
                      &b.slot_query, &b.slot_raw, &b.slot_bal, &b.slot_rel})
      if (s.ok()) s = arena.alloc_n(cap, a);
    if (s.ok()) s = arena.alloc_n(2 * kNumComp, &b.lohi);
    if (s.ok()) s = arena.alloc_n(4, &b.counters);
    if (s.ok()) s = arena.alloc_n(50, &b.kbest);
    const size_t sac = std::max<size_t>(1, static_cast<size_t>(config.saccades));
    if (s.ok()) s = arena.alloc_n(sac, &b.order);
    if (s.ok()) s = arena.alloc_n(sac, &b.budget);
    if (s.ok()) s = arena.alloc_n(sac, &b.lod);
    if (s.ok()) s = arena.alloc_n(2 * ntok, &b.positions);
    for (int32_t** a : {&b.levels, &b.budgets, &b.kinds, &b.patches, &b.previous, &b.reuse})
      if (s.ok()) s = arena.alloc_n(ntok, a);
    if (s.ok()) s = arena.alloc_n(ntok, &b.scores);
    if (s.ok()) s = arena.alloc_n(ntok, &b.reuse_drift);
    if (s.ok()) s = arena.alloc_n(ntok * 3 * P * P, &b.glimpses);
    if (s.ok() && config.device == Device::kCPU) s = arena.alloc_n(static_cast<size_t>(config.max_height), &b.row_counts);
    if (s.ok() && config.device == Device::kCUDA) s = cuda::event_create(&done_event);
    if (s.ok()) s = set_weights(default_balance_weights());
    return s;
  }

  Status set_weights(const BalanceWeights& w) {
    const float* f = reinterpret_cast<const float*>(&w);
    for (size_t i = 0; i < sizeof(BalanceWeights) / sizeof(float); ++i)
      if (!std::isfinite(f[i]))
        return bad(StatusCode::kInvalidArgument, "weights contain NaN or inf (float " + std::to_string(i) + ")");
      else if (std::fabs(f[i]) > kMaxBalanceWeight)
        return bad(StatusCode::kOutOfRange, "weights: float " + std::to_string(i) + " is " + std::to_string(f[i]) +
                                                "; expected |w| <= 1e6 (larger ones overflow the balancer's float32 sums)");
    auto nonzero = [](const auto& a) { return std::any_of(std::begin(a), std::end(a), [](float v) { return v != 0.0f; }); };
    const bool ctx_on = nonzero(w.ctx_W1) || nonzero(w.ctx_b1) || nonzero(w.ctx_W2) || nonzero(w.ctx_b2);
    if (config.device == Device::kCPU) {
      math::pack_balance_weights(w, weights);
      context_on = ctx_on;
      return Status::Ok();
    }
    cuda::DeviceGuard on(ordinal());
    if (!on.status().ok()) return on.status();
    math::pack_balance_weights(w, &host_weights);
    // A frame still queued keeps the weights it was run with: wait for it on the host (weights
    // change rarely; the last frame's stream may be gone), then copy and complete the copy, so the
    // next run on any stream sees the new weights.
    Status s = ran ? cuda::event_synchronize(done_event) : Status::Ok();
    if (s.ok()) s = cuda::copy_to_device(weights, &host_weights, sizeof(math::BalanceWeightsData));
    if (s.ok()) context_on = ctx_on;  // only with the weights it describes
    return s;
  }

  Status run(const TextureView& t, const CascadeView& c, bool has_query, TokenPack* out, void* stream) {
    if (!out) return bad(StatusCode::kInvalidArgument, "out (TokenPack*) is null");
    if (Status v = validate_texture_view(t, "texture"); !v.ok()) return v;
    if (t.device != config.device || c.device != config.device ||
        (config.device == Device::kCUDA && (t.cuda_device != config.cuda_device || c.cuda_device != config.cuda_device)))
      return bad(StatusCode::kInvalidArgument, "texture (" + device_label(t.device, t.cuda_device) + ") and cascade (" +
                                                   device_label(c.device, c.cuda_device) +
                                                   ") must be on the allocator's device (" +
                                                   device_label(config.device, config.cuda_device) + ")");
    if (t.width > config.max_width || t.height > config.max_height)
      return bad(StatusCode::kOutOfRange, "texture: size " + std::to_string(t.width) + "x" + std::to_string(t.height) +
                                              " exceeds the maximum " + std::to_string(config.max_width) + "x" +
                                              std::to_string(config.max_height) + " the allocator was created for");
    if (!c.candidate_patch || c.capacity < 0)
      return bad(StatusCode::kInvalidArgument, "cascade: candidate_patch is null or capacity " + std::to_string(c.capacity) +
                                                   " is negative (pass the view ClusterCascade::run wrote)");
    if (c.capacity > config.max_candidates)
      return bad(StatusCode::kOutOfRange, "cascade: " + std::to_string(c.capacity) +
                                              " candidate slots exceed the allocator's max_candidates " +
                                              std::to_string(config.max_candidates));
    if (!c.patch_contrast)
      return bad(StatusCode::kInvalidArgument, "cascade: patch_contrast is null (pass the view ClusterCascade::run wrote)");
    if (c.patch_grid_width != t.levels[4].width || c.patch_grid_height != t.levels[4].height)
      return bad(StatusCode::kInvalidArgument, "cascade: it was run on a texture of another size");
    cuda::DeviceGuard on(ordinal());
    if (!on.status().ok()) return on.status();
    if (config.device == Device::kCUDA) {  // (before any state changes: a caller's stream of another GPU)
      if (Status v = cuda::check_stream_device(stream, config.cuda_device, "TokenAllocator"); !v.ok()) return v;
    }
    Status s;

    AllocateParams p = buffers;
    p.dtype = t.dtype;
    const size_t es = static_cast<size_t>(dtype_size(t.dtype));
    auto plane = [&](int ch, int level) { return static_cast<char*>(t.data) + t.plane_offset(ch, level) * es; };
    for (int f = 0; f < kNumPlaneFeat; ++f) p.feat4[f] = plane(kFeatureChannel[f], 4);
    for (int k = 0; k < kGestaltChannels; ++k) p.gestalt4[k] = plane(gestalt_channel(k), 4);
    p.mvx4 = plane(35, 4);
    p.mvy4 = plane(36, 4);
    p.motion0 = plane(10, 0);
    p.lum4 = plane(3, 4);
    p.out_cached4 = plane(34, 4);
    p.out_info4 = plane(37, 4);
    p.out_sal4 = plane(38, 4);
    p.out_rel4 = plane(39, 4);
    for (int k = 0; k < kNumLevels; ++k) {
      for (int ch = 0; ch < 3; ++ch) p.rgb[k][ch] = plane(ch, k);
      p.lw[k] = t.levels[k].width;
      p.lh[k] = t.levels[k].height;
    }
    p.width = t.width;
    p.height = t.height;
    p.w4 = t.levels[4].width;
    p.h4 = t.levels[4].height;
    p.slots = c.candidate_patch;
    p.patch_contrast = c.patch_contrast;
    p.capacity = c.capacity;
    p.has_query = has_query;
    p.motion_valid = t.motion_valid;
    p.frame_index = frame_index;
    p.weights = weights;
    p.context_on = context_on && config.strategy == SaccadeStrategy::kBalanced;
    std::copy(query_embedding, query_embedding + kQueryEmbeddingDims, p.query_embedding);
    p.cfg = config;
    p.num_gestalt = config.gestalt_x * config.gestalt_y;
    p.num_tokens = p.num_gestalt + config.saccades;
    p.room = config.total_budget - p.num_gestalt * config.gestalt_lod;
    // The history is the last frame's only if this texture is the one built right after that
    // frame's: a frame that failed between its build and this run (a caller's encoder, Ctrl-C) left
    // the builder one frame ahead, its motion and frame difference measured against a frame the
    // history never saw (a review found reuse serving a cache 167 grey levels off).
    // (A caller's own view, frame_index 0, is taken as following the last.)
    const bool next_frame = t.frame_index == 0 || t.frame_index == last_texture + 1;
    p.has_history = has_history && next_frame && hist_w4 == p.w4 && hist_h4 == p.h4;
    p.reuse_valid = p.has_history && last_width == p.width && last_height == p.height && p.motion_valid;
    p.prev_rel = rel[0];
    p.new_rel = rel[1];
    p.prev_token = token_of_patch[0];
    p.prev_budget = budget_of_patch[0];
    p.new_token = token_of_patch[1];
    p.new_budget = budget_of_patch[1];
    p.prev_lum = lum_of_patch[0];
    p.new_lum = lum_of_patch[1];
    p.prev_drift = drift_of_patch[0];
    p.new_drift = drift_of_patch[1];
    p.prev_gdrift = drift_of_gestalt[0];
    p.new_gdrift = drift_of_gestalt[1];
    p.num_threads = worker_threads(config.num_threads);
    // Tests: every output of this frame starts as NaN / -1 (as in the cascade), the history it
    // writes for the next frame too; not the previous frame's, which it reads.
    const size_t n4 = static_cast<size_t>(p.w4) * p.h4, ntok = static_cast<size_t>(p.num_tokens);
    const size_t slots = static_cast<size_t>(p.capacity);
    tokens_valid = false;  // until this frame has written them all
    s = run_stage(
        config.device, stream, done_event, order,
        {output_of(p.positions, 2 * ntok), output_of(p.levels, ntok), output_of(p.budgets, ntok),
         output_of(p.kinds, ntok), output_of(p.patches, ntok), output_of(p.previous, ntok), output_of(p.reuse, ntok),
         output_of(p.reuse_drift, ntok),
         output_of(p.scores, ntok), output_of(p.glimpses, ntok * 3 * config.glimpse_size * config.glimpse_size),
         output_of(p.new_rel, n4), output_of(p.homunculus, n4), output_of(p.new_lum, n4), output_of(p.new_token, n4),
         output_of(p.new_budget, n4), output_of(p.new_drift, n4), output_of(p.new_gdrift, p.num_gestalt),
         output_of(p.slot_info, slots), output_of(p.slot_sal, slots),
         output_of(p.slot_query, slots), output_of(p.slot_raw, slots), output_of(p.slot_bal, slots),
         output_of(p.slot_rel, slots), output_of(p.slot_cand, slots), output_of(p.context, 3), output_of(p.counters, 4),
         OutputRegion{p.out_cached4, n4 * es}, OutputRegion{p.out_info4, n4 * es}, OutputRegion{p.out_sal4, n4 * es},
         OutputRegion{p.out_rel4, n4 * es}},
        [&] { return cpu::run_allocation(p); }, [&] { return cuda::run_allocation(p, stream); }, &ran);
    if (!s.ok()) {
      has_history = false;
      return s;
    }
    std::swap(rel[0], rel[1]);  // this frame's relevance and saccades are the next frame's history
    std::swap(token_of_patch[0], token_of_patch[1]);
    std::swap(budget_of_patch[0], budget_of_patch[1]);
    std::swap(lum_of_patch[0], lum_of_patch[1]);
    std::swap(drift_of_patch[0], drift_of_patch[1]);
    std::swap(drift_of_gestalt[0], drift_of_gestalt[1]);
    has_history = true;
    hist_w4 = p.w4;
    hist_h4 = p.h4;
    last_width = p.width;
    last_height = p.height;
    last_texture = t.frame_index;
    ++frame_index;

    TokenPack v;
    v.device = config.device;
    v.cuda_device = config.cuda_device;
    v.num_tokens = p.num_tokens;
    v.num_gestalt = p.num_gestalt;
    v.glimpse_size = config.glimpse_size;
    v.patch_grid_width = p.w4;
    v.patch_grid_height = p.h4;
    v.positions = p.positions;
    v.levels = p.levels;
    v.budgets = p.budgets;
    v.kinds = p.kinds;
    v.patches = p.patches;
    v.scores = p.scores;
    v.previous = p.previous;
    v.reuse = p.reuse;
    v.reuse_drift = p.reuse_drift;
    v.glimpses = p.glimpses;
    v.relevance = rel[0];
    v.homunculus = p.homunculus;
    v.scene_cut = p.counters + 1;
    v.num_saccades = p.counters + 2;
    v.info = p.slot_info;
    v.salience = p.slot_sal;
    v.query = p.slot_query;
    v.raw = p.slot_raw;
    v.balanced = p.slot_bal;
    v.candidate_relevance = p.slot_rel;
    v.context_weights = p.context;
    v.candidates = p.slot_cand;
    v.candidate_capacity = p.capacity;
    last = v;
    tokens_valid = true;
    *out = v;
    return Status::Ok();
  }
};

TokenAllocator::TokenAllocator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TokenAllocator::~TokenAllocator() = default;

Status TokenAllocator::create(const AllocatorConfig& config, std::unique_ptr<TokenAllocator>* out) noexcept {
  ARRCOC_GUARD({
    if (!out) return Status(StatusCode::kInvalidArgument, "out (unique_ptr<TokenAllocator>*) is null");
    return create_operator<Impl>(config, check_config(config),
                                 [&](std::unique_ptr<Impl> impl) { out->reset(new TokenAllocator(std::move(impl))); });
  })
}

Status TokenAllocator::set_weights(const BalanceWeights& weights) noexcept {
  ARRCOC_GUARD({ return impl_->set_weights(weights); })
}

Status TokenAllocator::set_query_embedding(const float* embedding) noexcept {
  ARRCOC_GUARD({
    float e[kQueryEmbeddingDims] = {};
    if (embedding)
      for (int k = 0; k < kQueryEmbeddingDims; ++k) {
        if (!std::isfinite(embedding[k]))
          return bad(StatusCode::kInvalidArgument, "query embedding contains NaN or inf (value " + std::to_string(k) + ")");
        e[k] = embedding[k];
      }
    std::copy(e, e + kQueryEmbeddingDims, impl_->query_embedding);
    return Status::Ok();
  })
}

Status TokenAllocator::run(const TextureView& texture, const CascadeView& cascade, bool has_query, TokenPack* out,
                           void* cuda_stream) noexcept {
  ARRCOC_GUARD({ return impl_->run(texture, cascade, has_query, out, cuda_stream); })
}

Status TokenAllocator::gather_features(const float* features, int channels, int height, int width, float* out,
                                       void* cuda_stream) noexcept {
  ARRCOC_GUARD({
    const Impl& m = *impl_;
    if (!m.ran) return Status(StatusCode::kInvalidArgument, "gather_features: run() has not produced tokens yet");
    if (!m.tokens_valid)
      return Status(StatusCode::kInvalidArgument, "gather_features: the last run() failed; it left no tokens");
    if (!features || !out) return Status(StatusCode::kInvalidArgument, "gather_features: features or out is null");
    if (reinterpret_cast<uintptr_t>(features) % alignof(float) || reinterpret_cast<uintptr_t>(out) % alignof(float))
      return Status(StatusCode::kInvalidArgument,
                    "gather_features: features and out must be aligned to 4-byte floats (a misaligned load faults on a GPU)");
    if (channels < 1 || height < 1 || width < 1 || channels > 65536 || height > 32768 || width > 32768)
      return Status(StatusCode::kOutOfRange, "gather_features: feature map [" + std::to_string(channels) + ", " +
                                                 std::to_string(height) + ", " + std::to_string(width) +
                                                 "] is out of range; expected C 1..65536, h and w 1..32768");
    const AllocateParams& p = m.buffers;
    const int N = m.config.gestalt_x * m.config.gestalt_y + m.config.saccades;
    if (m.config.device == Device::kCUDA) {
      const int fd = cuda::pointer_device(features), od = cuda::pointer_device(out);
      if (fd != m.config.cuda_device || od != m.config.cuda_device)
        return Status(StatusCode::kInvalidArgument,
                      "gather_features: features (" + (fd >= 0 ? device_label(Device::kCUDA, fd) : std::string("host memory")) +
                          ") and out (" + (od >= 0 ? device_label(Device::kCUDA, od) : std::string("host memory")) +
                          ") must be on the allocator's device (" + device_label(Device::kCUDA, m.config.cuda_device) + ")");
      cuda::DeviceGuard on(m.ordinal());
      if (!on.status().ok()) return on.status();
      Status s = cuda::check_stream_device(cuda_stream, m.config.cuda_device, "TokenAllocator");
      if (s.ok()) s = cuda::stream_wait_event(cuda_stream, m.done_event);  // tokens of the last run
      if (s.ok())
        s = cuda::gather_features(features, channels, height, width, p.positions, p.levels, N, m.last_width,
                                  m.last_height, out, cuda_stream);
      // The next run (which rewrites positions and levels) waits for this gather.
      return s.ok() ? cuda::event_record(m.done_event, cuda_stream) : s;
    }
    Status s = check_host_readable(features, "gather_features: features");
    if (s.ok()) s = check_host_readable(out, "gather_features: out");
    if (!s.ok()) return s;
    for (int t = 0; t < N; ++t)
      for (int c = 0; c < channels; ++c)
        out[static_cast<int64_t>(t) * channels + c] =
            math::gather_feature(features, c, height, width, p.positions[2 * t], p.positions[2 * t + 1], p.levels[t],
                                 m.last_width, m.last_height);
    return Status::Ok();
  })
}

Status TokenAllocator::copy_to_host(TokenPack* out, void* cuda_stream) noexcept {
  ARRCOC_GUARD({ return impl_->copy_to_host(out, cuda_stream); })
}

Status TokenAllocator::wait_on_stream(void* stream) noexcept {
  return stream_waits_for_last_call(stream, impl_->config.device, impl_->ordinal(), impl_->ran, impl_->done_event);
}

void TokenAllocator::reset() noexcept { impl_->has_history = false; }

Status TokenAllocator::synchronize() noexcept {
  return host_waits_for_last_call(impl_->config.device, impl_->ordinal(), impl_->ran, impl_->done_event);
}

const AllocatorConfig& TokenAllocator::config() const noexcept { return impl_->config; }

}  // namespace arrcoc
