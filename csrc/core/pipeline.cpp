// The whole front end: owns one operator per stage and runs them in order on the frame's stream.
#include "arrcoc/pipeline.h"

#include <algorithm>
#include <chrono>

#include "frame_checks.h"
#include "guard.h"

namespace arrcoc {

struct Pipeline::Impl {
  PipelineConfig config;
  std::unique_ptr<TextureBuilder> texture;
  std::unique_ptr<ClusterCascade> cascade;
  std::unique_ptr<TokenAllocator> allocator;
};

Pipeline::Pipeline(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pipeline::~Pipeline() = default;

Status Pipeline::create(const PipelineConfig& config, std::unique_ptr<Pipeline>* out) noexcept {
  ARRCOC_GUARD({
    if (!out) return Status(StatusCode::kInvalidArgument, "out (unique_ptr<Pipeline>*) is null");
    auto impl = std::make_unique<Impl>();
    impl->config = config;
    const TextureConfig& t = config.texture;
    CascadeConfig c = config.cascade;
    c.max_width = t.max_width;
    c.max_height = t.max_height;
    c.device = t.device;
    c.cuda_device = t.cuda_device;
    c.num_threads = t.num_threads;
    AllocatorConfig a = config.allocator;
    a.max_width = t.max_width;
    a.max_height = t.max_height;
    // The cascade's candidates plus held saccades (hysteresis), within the fused step's 1024; the
    // candidates alone must fit (in int64: the counts are checked by the stages' create, later).
    const int64_t slots = static_cast<int64_t>(c.top_clusters) * c.patches_per_cluster;
    if (c.top_clusters > 0 && c.patches_per_cluster > 0 && slots > 1024)
      return Status(StatusCode::kOutOfRange, "cascade.top_clusters * cascade.patches_per_cluster = " +
                                                 std::to_string(slots) + " candidates; expected at most 1024");
    a.max_candidates = static_cast<int32_t>(std::clamp<int64_t>(slots + std::max(a.saccades, 0), 1, 1024));
    a.device = t.device;
    a.cuda_device = t.cuda_device;
    a.num_threads = t.num_threads;
    Status s = TextureBuilder::create(t, &impl->texture);
    if (s.ok()) s = ClusterCascade::create(c, &impl->cascade);
    if (s.ok()) s = TokenAllocator::create(a, &impl->allocator);
    if (!s.ok()) return s;
    out->reset(new Pipeline(std::move(impl)));
    return Status::Ok();
  })
}

Status Pipeline::process(const FrameView& frame, const float* query_map, PipelineResult* out) noexcept {
  ARRCOC_GUARD({
    if (!out) return Status(StatusCode::kInvalidArgument, "out (PipelineResult*) is null");
    Impl& m = *impl_;
    using clock = std::chrono::steady_clock;
    auto ms = [](clock::time_point a, clock::time_point b) {
      return std::chrono::duration<double, std::milli>(b - a).count();
    };
    const bool sync = m.config.synchronize_stages && m.config.texture.device == Device::kCUDA;
    PipelineResult r;
    const auto t0 = clock::now();
    Status s = Status::Ok();
    if (query_map) {  // checked before the frame is built: a refused map leaves the pipeline's history as it was
      s = validate_frame(frame, m.config.texture.max_width, m.config.texture.max_height, "frame");
      LevelLayout levels[kNumLevels];
      if (s.ok()) texture_layout(frame.width, frame.height, levels);
      if (s.ok()) s = validate_patch_values(query_map, static_cast<int64_t>(levels[kPatchLevel].width) *
                                                           levels[kPatchLevel].height, "query_map");
    }
    if (s.ok()) s = m.texture->build(frame, &r.texture);
    if (s.ok() && query_map) s = m.texture->set_patch_channel(static_cast<int>(Channel::kQuerySimilarity), query_map);
    if (s.ok() && sync) s = m.texture->synchronize();
    const auto t1 = clock::now();
    if (s.ok()) s = m.cascade->run(r.texture, &r.cascade, frame.cuda_stream);
    if (s.ok() && sync) s = m.cascade->synchronize();
    const auto t2 = clock::now();
    if (s.ok()) s = m.allocator->run(r.texture, r.cascade, query_map != nullptr, &r.tokens, frame.cuda_stream);
    // The texture is in use until the allocator is done with it (the next frame reuses it).
    if (s.ok()) s = m.texture->record_use(frame.cuda_stream);
    if (s.ok() && sync) s = m.allocator->synchronize();
    const auto t3 = clock::now();
    if (!s.ok()) return s;
    r.stage_ms[0] = ms(t0, t1);
    r.stage_ms[1] = ms(t1, t2);
    r.stage_ms[2] = ms(t2, t3);
    *out = r;
    return Status::Ok();
  })
}

// The allocator runs last, on the frame's stream: its pack and its done event cover the frame.
Status Pipeline::copy_to_host(TokenPack* out, void* cuda_stream) noexcept {
  return impl_->allocator->copy_to_host(out, cuda_stream);
}

Status Pipeline::gather_features(const float* features, int channels, int height, int width, float* out,
                                 void* cuda_stream) noexcept {
  return impl_->allocator->gather_features(features, channels, height, width, out, cuda_stream);
}

Status Pipeline::wait_on_stream(void* stream) noexcept { return impl_->allocator->wait_on_stream(stream); }

Status Pipeline::set_weights(const BalanceWeights& weights) noexcept { return impl_->allocator->set_weights(weights); }

Status Pipeline::synchronize() noexcept {
  Status s = impl_->texture->synchronize();
  if (s.ok()) s = impl_->cascade->synchronize();
  return s.ok() ? impl_->allocator->synchronize() : s;
}

void Pipeline::reset() noexcept {
  impl_->texture->reset();
  impl_->allocator->reset();
}

}  // namespace arrcoc
