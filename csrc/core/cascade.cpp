// Dispatcher of the cluster-first cascade: validation, memory (allocated once), backend choice.
#include "arrcoc/cascade.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <thread>

#include "../cpu/cascade_cpu.h"
#include "../shared/cascade_params.h"
#include "arena.h"
#include "frame_checks.h"
#include "guard.h"

namespace arrcoc {
namespace {

Status out_of_range(const std::string& name, const std::string& value, const std::string& expected) {
  return Status(StatusCode::kOutOfRange, name + " " + value + " is out of range; expected " + expected);
}

Status check_config(const CascadeConfig& c) {
  if (c.max_width < 1 || c.max_width > 16384 || c.max_height < 1 || c.max_height > 16384)
    return out_of_range("max size", std::to_string(c.max_width) + "x" + std::to_string(c.max_height), "1..16384 each");
  if (c.num_seeds < 1 || c.num_seeds > math::kMaxSeeds)
    return out_of_range("num_seeds", std::to_string(c.num_seeds), "1..256");
  if (c.iterations < 1 || c.iterations > 20) return out_of_range("iterations", std::to_string(c.iterations), "1..20");
  if (!(c.compactness > 0.0f && c.compactness <= 10.0f))
    return out_of_range("compactness", std::to_string(c.compactness), "(0, 10]");
  if (c.top_clusters < 1 || c.top_clusters > math::kMaxSeeds)
    return out_of_range("top_clusters", std::to_string(c.top_clusters), "1..256");
  if (c.patches_per_cluster < 1 || c.patches_per_cluster > 4096)
    return out_of_range("patches_per_cluster", std::to_string(c.patches_per_cluster), "1..4096");
  if (!(c.motion_weight >= 0.0f && c.motion_weight <= 100.0f))
    return out_of_range("motion_weight", std::to_string(c.motion_weight), "[0, 100]");
  if (!(c.query_weight >= 0.0f && c.query_weight <= 100.0f))
    return out_of_range("query_weight", std::to_string(c.query_weight), "[0, 100]");
  if (!(c.contrast_weight >= 0.0f && c.contrast_weight <= 100.0f))
    return out_of_range("contrast_weight", std::to_string(c.contrast_weight), "[0, 100]");
  if (c.num_threads < 0 || c.num_threads > 1024)
    return out_of_range("num_threads", std::to_string(c.num_threads), "0 (all cores)..1024");
  return Status::Ok();
}

}  // namespace

struct ClusterCascade::Impl {
  explicit Impl(const CascadeConfig& c) : config(c), arena(c.device) {}
  ~Impl() {
    cuda::DeviceGuard on(ordinal());
    cuda::event_destroy(done_event);
    arena.release();
  }
  int ordinal() const { return guard_ordinal(config.device, config.cuda_device); }

  CascadeConfig config;
  Arena arena;
  CascadeParams buffers{};  // scratch pointers, allocated once
  void* done_event = nullptr;
  StreamOrder order;
  bool ran = false;

  Status allocate() {
    LevelLayout L[kNumLevels];
    texture_layout(config.max_width, config.max_height, L);
    const size_t n2 = static_cast<size_t>(L[2].width) * L[2].height;
    const size_t n4 = static_cast<size_t>(L[4].width) * L[4].height;
    const size_t cap = static_cast<size_t>(config.top_clusters) * config.patches_per_cluster;
    CascadeParams& b = buffers;
    Status s = arena.alloc_n(3 * n2, &b.colour);
    if (s.ok()) s = arena.alloc_n(n2, &b.labels);
    if (s.ok()) s = arena.alloc_n(math::kMaxSeeds, &b.seeds);
    if (s.ok()) s = arena.alloc_n(static_cast<size_t>(math::kMaxSeeds) * kSeedSums, &b.seed_sums);
    if (s.ok()) s = arena.alloc_n(static_cast<size_t>(math::kMaxSeeds) * kStatSums, &b.stat_sums);
    if (s.ok()) s = arena.alloc_n(math::kMaxSeeds, &b.scores);
    if (s.ok()) s = arena.alloc_n(math::kMaxSeeds, &b.saliency);
    if (s.ok()) s = arena.alloc_n(static_cast<size_t>(math::kMaxSeeds) * kRarityMeans, &b.means);
    if (s.ok()) s = arena.alloc_n(2 * math::kMaxSeeds, &b.rarity);
    if (s.ok()) s = arena.alloc_n(math::kMaxSeeds, &b.contrast);
    if (s.ok()) s = arena.alloc_n(n4, &b.patch_contrast);
    if (s.ok()) s = arena.alloc_n(static_cast<size_t>(config.top_clusters), &b.kept);
    if (s.ok()) s = arena.alloc_n(n4, &b.patch_keys);
    if (s.ok()) s = arena.alloc_n(n4, &b.patch_cluster);
    if (s.ok()) s = arena.alloc_n(cap, &b.candidates);
    if (s.ok()) s = arena.alloc_n(n4, &b.members);
    if (s.ok() && config.device == Device::kCPU)  // per-thread partial sums (see cascade_cpu.cpp)
      s = arena.alloc_n(static_cast<size_t>(worker_threads(config.num_threads)) * math::kMaxSeeds *
                            std::max(kSeedSums, kStatSums), &b.partial_sums);
    if (s.ok() && config.device == Device::kCUDA) s = cuda::event_create(&done_event);
    return s;
  }

  Status run(const TextureView& t, CascadeView* out, void* stream) {
    if (!out) return Status(StatusCode::kInvalidArgument, "out (CascadeView*) is null");
    if (Status v = validate_texture_view(t, "texture"); !v.ok()) return v;
    if (t.device != config.device)
      return Status(StatusCode::kInvalidArgument, std::string("texture: it is on the ") +
                                                      (t.device == Device::kCUDA ? "cuda" : "cpu") +
                                                      " device but the cascade runs on the " +
                                                      (config.device == Device::kCUDA ? "cuda" : "cpu"));
    if (t.device == Device::kCUDA && t.cuda_device != config.cuda_device)
      return Status(StatusCode::kInvalidArgument, "texture: it is on " + device_label(t.device, t.cuda_device) +
                                                      " but the cascade runs on " +
                                                      device_label(config.device, config.cuda_device));
    if (t.width < 1 || t.height < 1 || t.width > config.max_width || t.height > config.max_height)
      return Status(StatusCode::kOutOfRange, "texture: size " + std::to_string(t.width) + "x" +
                                                 std::to_string(t.height) + " exceeds the maximum " +
                                                 std::to_string(config.max_width) + "x" +
                                                 std::to_string(config.max_height) + " the cascade was created for");
    cuda::DeviceGuard on(ordinal());
    if (!on.status().ok()) return on.status();
    if (config.device == Device::kCUDA) {  // (before any state changes: a caller's stream of another GPU)
      if (Status v = cuda::check_stream_device(stream, config.cuda_device, "ClusterCascade"); !v.ok()) return v;
    }
    Status s;

    CascadeParams p = buffers;
    p.dtype = t.dtype;
    const size_t es = static_cast<size_t>(dtype_size(t.dtype));
    auto plane = [&](int c, int level) { return static_cast<char*>(t.data) + t.plane_offset(c, level) * es; };
    p.lum2 = plane(3, 2);
    p.rg2 = plane(15, 2);
    p.by2 = plane(16, 2);
    p.sal2 = plane(11, 2);
    p.ecc2 = plane(5, 2);
    p.mot2 = plane(10, 2);
    p.tex2 = plane(4, 2);
    p.sal4 = plane(11, 4);
    p.mot4 = plane(10, 4);
    p.qry4 = plane(33, 4);
    for (int step = 0; step < 3; ++step) p.cluster_out[step] = plane(13, 2 + step);
    p.w2 = t.levels[2].width;
    p.h2 = t.levels[2].height;
    p.w3 = t.levels[3].width;
    p.h3 = t.levels[3].height;
    p.w4 = t.levels[4].width;
    p.h4 = t.levels[4].height;
    math::seed_grid(config.num_seeds, p.w2, p.h2, &p.gx, &p.gy);
    p.s16_sq = std::llround(256.0 * p.w2 * p.h2 / (static_cast<double>(p.gx) * p.gy));
    const double m = static_cast<double>(config.compactness) * math::kColourScale;
    p.m_sq = std::llround(m * m);
    p.iterations = config.iterations;
    p.top_k = config.top_clusters;
    p.per_cluster = config.patches_per_cluster;
    p.w_motion = config.motion_weight;
    p.w_query = config.query_weight;
    p.w_contrast = config.contrast_weight;
    p.num_threads = worker_threads(config.num_threads);
    // Tests: every output of this frame starts as NaN / -1, on either device: a frame must write
    // them all, not leave the last frame's.
    const size_t nc = static_cast<size_t>(p.gx) * p.gy, n4 = static_cast<size_t>(p.w4) * p.h4;
    auto cluster_plane = [&](int step) {
      return OutputRegion{p.cluster_out[step], static_cast<size_t>(t.levels[2 + step].width) * t.levels[2 + step].height * es};
    };
    s = run_stage(
        config.device, stream, done_event, order,
        {output_of(p.labels, static_cast<size_t>(p.w2) * p.h2), output_of(p.scores, nc), output_of(p.contrast, nc),
         output_of(p.patch_contrast, n4), output_of(p.kept, static_cast<size_t>(p.top_k)),
         output_of(p.candidates, static_cast<size_t>(p.top_k) * p.per_cluster), cluster_plane(0), cluster_plane(1),
         cluster_plane(2)},
        [&] { return cpu::run_cascade(p); }, [&] { return cuda::run_cascade(p, stream); }, &ran);
    if (!s.ok()) return s;

    CascadeView v;
    v.device = config.device;
    v.cuda_device = config.cuda_device;
    v.num_clusters = p.gx * p.gy;
    v.grid_x = p.gx;
    v.grid_y = p.gy;
    v.level2_width = p.w2;
    v.level2_height = p.h2;
    v.patch_grid_width = p.w4;
    v.patch_grid_height = p.h4;
    v.labels = p.labels;
    v.cluster_scores = p.scores;
    v.cluster_contrast = p.contrast;
    v.patch_contrast = p.patch_contrast;
    v.kept_clusters = p.kept;
    v.candidate_patch = p.candidates;
    v.capacity = p.top_k * p.per_cluster;
    *out = v;
    return Status::Ok();
  }
};

ClusterCascade::ClusterCascade(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ClusterCascade::~ClusterCascade() = default;

Status ClusterCascade::create(const CascadeConfig& config, std::unique_ptr<ClusterCascade>* out) noexcept {
  ARRCOC_GUARD({
    if (!out) return Status(StatusCode::kInvalidArgument, "out (unique_ptr<ClusterCascade>*) is null");
    return create_operator<Impl>(config, check_config(config),
                                 [&](std::unique_ptr<Impl> impl) { out->reset(new ClusterCascade(std::move(impl))); });
  })
}

Status ClusterCascade::run(const TextureView& texture, CascadeView* out, void* cuda_stream) noexcept {
  ARRCOC_GUARD({ return impl_->run(texture, out, cuda_stream); })
}

Status ClusterCascade::synchronize() noexcept {
  return host_waits_for_last_call(impl_->config.device, impl_->ordinal(), impl_->ran, impl_->done_event);
}

const CascadeConfig& ClusterCascade::config() const noexcept { return impl_->config; }

}  // namespace arrcoc
