// The texture stage's dispatcher: validates, owns all memory (allocated once at creation),
// keeps the previous frame's state for motion, and runs the CPU or CUDA backend.
#include <algorithm>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "../cpu/texture_cpu.h"
#include "../shared/texture_params.h"
#include "arrcoc/texture.h"
#include "cuda_backend.h"
#include "arena.h"
#include "guard.h"
#include "frame_checks.h"

namespace arrcoc {

constexpr int32_t kMaxDimension = 16384;

int dtype_size(DType t) noexcept { return t == DType::kFloat16 ? 2 : t == DType::kFloat32 ? 4 : 0; }

int TextureView::plane_index(int channel, int level) noexcept {
  if (channel < 0 || channel >= kNumChannels || level < 0 || level >= kNumLevels) return -1;
  if (channel_base_level(channel) > level) return -1;
  int idx = 0;
  for (int c = 0; c < channel; ++c) idx += channel_base_level(c) <= level ? 1 : 0;
  return idx;
}

bool TextureView::has_plane(int channel, int level) const noexcept {
  return plane_index(channel, level) >= 0 && (level > 0 || (level0_kept >> channel & 1u));
}

int64_t TextureView::plane_offset(int channel, int level) const noexcept {
  if (!has_plane(channel, level)) return -1;
  const int idx = plane_index(channel, level);
  return levels[level].offset + static_cast<int64_t>(idx) * levels[level].width * levels[level].height;
}

int64_t TextureView::total_elements() const noexcept {
  const LevelLayout& last = levels[kNumLevels - 1];
  return last.offset + static_cast<int64_t>(last.num_planes) * last.width * last.height;
}

void texture_layout(int32_t width, int32_t height, LevelLayout out[kNumLevels]) noexcept {
  int64_t offset = 0;
  int32_t w = width, h = height;
  for (int k = 0; k < kNumLevels; ++k) {
    int planes = 0;
    for (int c = 0; c < kNumChannels; ++c) planes += channel_base_level(c) <= k ? 1 : 0;
    out[k].width = w;
    out[k].height = h;
    out[k].offset = offset;
    out[k].num_planes = planes;
    offset += static_cast<int64_t>(planes) * w * h;
    w = w / 2 + (w & 1);  // round up: odd sizes keep their last row/column (no overflow at INT32_MAX)
    h = h / 2 + (h & 1);
  }
}

// ------------------------------------------------------------------ memory

namespace {

Status check_config(const TextureConfig& c) {
  if (c.max_width < 1 || c.max_width > kMaxDimension || c.max_height < 1 || c.max_height > kMaxDimension)
    return Status(StatusCode::kOutOfRange, "max size " + std::to_string(c.max_width) + "x" +
                                               std::to_string(c.max_height) + " is out of range; expected 1.." +
                                               std::to_string(kMaxDimension) + " in each dimension");
  if (c.dtype != DType::kFloat16 && c.dtype != DType::kFloat32)
    return Status(StatusCode::kInvalidArgument, "dtype must be float16 or float32");
  if (c.device != Device::kCPU && c.device != Device::kCUDA)
    return Status(StatusCode::kInvalidArgument, "device must be cpu or cuda");
  if (c.num_threads < 0 || c.num_threads > 1024)
    return Status(StatusCode::kOutOfRange, "num_threads " + std::to_string(c.num_threads) +
                                               " is out of range; expected 0 (all cores)..1024");
  if (c.planes != TexturePlanes::kAll && c.planes != TexturePlanes::kPipeline)
    return Status(StatusCode::kInvalidArgument, "planes must be TexturePlanes::kAll or kPipeline");
  if (!(c.fixation_x >= 0.0f && c.fixation_x <= 1.0f && c.fixation_y >= 0.0f && c.fixation_y <= 1.0f))
    return Status(StatusCode::kOutOfRange, "fixation (" + std::to_string(c.fixation_x) + ", " +
                                               std::to_string(c.fixation_y) + ") must lie in [0,1] x [0,1]");
  return Status::Ok();
}

}  // namespace

struct TextureBuilder::Impl {
  explicit Impl(const TextureConfig& c) : config(c), arena(c.device) {}
  ~Impl() {
    cuda::DeviceGuard on(ordinal());
    cuda::event_destroy(done_event);
    cuda::event_destroy(upload_event);
    arena.release();
  }
  int ordinal() const { return guard_ordinal(config.device, config.cuda_device); }

  TextureConfig config;
  Arena arena;
  LevelLayout max_layout[kNumLevels];
  // Every buffer pointer, allocated once; build() copies it and fills in the per-frame fields.
  TextureParams buffers{};
  uint8_t* staging = nullptr;  // CUDA: device copy of host frames
  float* patch_staging = nullptr;  // CUDA: set_patch_channel's values on the device
  TextureView last{};          // the last built texture
  StreamOrder order;             // CUDA: each frame's stream waits for the previous frame's work
  void* done_event = nullptr;    // CUDA: recorded after the last build / set_patch_channel
  void* upload_event = nullptr;  // CUDA: recorded after the upload of a page-locked host frame
  std::vector<float> patch_values;  // set_patch_channel's values in pageable memory (see there)

  bool has_prev = false;
  int32_t prev_width = 0, prev_height = 0;
  uint64_t frame_index = 0;

  int threads() const { return worker_threads(config.num_threads); }

  Status allocate() {
    texture_layout(config.max_width, config.max_height, max_layout);
    TextureView v;
    std::copy(max_layout, max_layout + kNumLevels, v.levels);
    const size_t n0 = static_cast<size_t>(config.max_width) * config.max_height;
    const size_t n2 = static_cast<size_t>(max_layout[2].width) * max_layout[2].height;
    TextureParams& b = buffers;
    Status s = arena.alloc(static_cast<size_t>(v.total_elements()) * dtype_size(config.dtype), &b.out);
    for (int f = 0; f < 3 && s.ok(); ++f)
      for (int k = 0; k < kNumLevels && s.ok(); ++k)
        // the CPU keeps level 0 of R-G and B-Y in per-thread rows only (texture_cpu.cpp)
        if (!(config.device == Device::kCPU && f > 0 && k == 0))
          s = arena.alloc_n(static_cast<size_t>(max_layout[k].width) * max_layout[k].height, &b.feature[f][k]);
    if (s.ok()) s = arena.alloc_n(n0, &b.lum_prev);
    // Gradient magnitude and frame difference: full planes (CUDA) or, on the CPU, one row per band
    // of rows (at most one band per thread; texture_cpu.cpp)
    const size_t nm = config.device == Device::kCPU ? static_cast<size_t>(config.max_width) * threads() : n0;
    if (s.ok()) s = arena.alloc_n(nm, &b.mag);
    if (s.ok()) s = arena.alloc_n(nm, &b.diff);
    // Horizontal sums: a full frame (CUDA) or, on the CPU, one 5-row ring per band of rows, at most
    // one band per thread (texture_cpu.cpp). A full frame's pages past the rings were never touched,
    // but a 1080p CPU builder asked for 41 MB of address space it did not use.
    const size_t rings = static_cast<size_t>(config.max_width) * 5 * threads();
    b.scratch_pixels = static_cast<int64_t>(config.device == Device::kCPU ? rings : n0);
    const size_t nh = static_cast<size_t>(b.scratch_pixels);
    if (s.ok()) s = arena.alloc_n(nh, &b.hsum_y);
    if (s.ok()) s = arena.alloc_n(nh, &b.hsum_y2);
    if (s.ok()) s = arena.alloc_n(nh, &b.hsum_mag);
    if (s.ok()) s = arena.alloc_n(nh, &b.hsum_diff);
    if (s.ok()) s = arena.alloc_n(nh, &b.hbins);
    if (s.ok()) s = arena.alloc_n(n0, &b.y8);
    if (s.ok()) s = arena.alloc_n(n2, &b.ysum);
    if (s.ok()) s = arena.alloc_n(n2, &b.ysum_prev);
    if (s.ok() && config.device == Device::kCPU)
      s = arena.alloc_n(static_cast<size_t>(max_layout[1].width), &b.saliency_x_taps);
    const size_t n1 = static_cast<size_t>(max_layout[1].width) * max_layout[1].height;
    const size_t nb = static_cast<size_t>(math::saliency_blocks(max_layout[1].width)) *
                      math::saliency_blocks(max_layout[1].height);
    if (s.ok()) s = arena.alloc_n(3 * n1, &b.sal_cs);
    if (s.ok() && config.device == Device::kCPU)
      s = arena.alloc_n(3 * static_cast<size_t>(max_layout[1].width) *
                            (max_layout[2].height + max_layout[3].height + max_layout[4].height),
                        &b.sal_rows);
    if (s.ok()) s = arena.alloc_n(3 * nb, &b.sal_block_max);
    if (s.ok()) s = arena.alloc_n(3, &b.sal_gain);
    if (s.ok() && config.device == Device::kCUDA) {
      // Largest frame: 4 bytes per pixel (rgba) >= any other format's planes.
      s = arena.alloc_n(n0 * 4 + 64, &staging);
      if (s.ok()) s = arena.alloc_n(static_cast<size_t>(max_layout[4].width) * max_layout[4].height, &patch_staging);
      if (s.ok()) s = cuda::event_create(&done_event);
      if (s.ok()) s = cuda::event_create(&upload_event);
    }
    return s;
  }

  // Host frame -> staging buffer on the device; rewrites `f` to point at the copy. The caller
  // may reuse its frame when build() returns: pageable memory is staged by CUDA before the copy
  // call returns, but a page-locked frame is read later, so wait for that upload here.
  Status upload(FrameView* f, void* stream) const {
    const int np = pixel_format_planes(f->format);
    bool pinned = false;
    uint8_t* dst = staging;
    for (int k = 0; k < np; ++k) {
      pinned = pinned || cuda::is_pinned_host(f->planes[k]);
      const int64_t rb = plane_row_bytes(f->format, k, f->width);
      const int64_t rows = plane_rows(f->format, k, f->height);
      Status s = cuda::copy_plane_to_device(dst, rb, f->planes[k], f->row_stride[k], rb, rows, stream);
      if (!s.ok()) return s;
      f->planes[k] = dst;
      f->row_stride[k] = rb;
      dst += rb * rows;
    }
    f->device = Device::kCUDA;
    f->cuda_device = config.cuda_device;
    if (!pinned) return Status::Ok();
    Status s = cuda::event_record(upload_event, stream);
    return s.ok() ? cuda::event_synchronize(upload_event) : s;
  }

  Status build(const FrameView& frame_in, TextureView* view) {
    if (!view) return Status(StatusCode::kInvalidArgument, "out (TextureView*) is null");
    Status s = validate_frame(frame_in, config.max_width, config.max_height, "frame");
    if (!s.ok()) return s;
    FrameView frame = frame_in;
    if (frame.device == Device::kCUDA && config.device == Device::kCPU)
      return Status(StatusCode::kInvalidArgument,
                    "frame is in CUDA memory but the builder runs on the CPU; create it with device=cuda "
                    "or copy the frame to the host");
    cuda::DeviceGuard on(ordinal());
    if (!on.status().ok()) return on.status();
    if (config.device == Device::kCUDA) {
      if (frame.device == Device::kCUDA) {
        // Every plane: a chroma plane on another device would be read by this device's kernels
        // (an illegal address on a GPU, which breaks the context).
        for (int k = 0; k < pixel_format_planes(frame.format); ++k) {
          const int actual = cuda::pointer_device(frame.planes[k]);
          if (frame.cuda_device != config.cuda_device || (actual >= 0 && actual != config.cuda_device))
            return Status(StatusCode::kInvalidArgument,
                          "frame" + (k > 0 ? " plane " + std::to_string(k) : std::string()) + " is on " +
                              device_label(Device::kCUDA, actual >= 0 ? actual : frame.cuda_device) +
                              " but the builder runs on " + device_label(Device::kCUDA, config.cuda_device) +
                              "; move the frame to that device or create the builder there");
        }
      }
      if (!(s = cuda::check_stream_device(frame.cuda_stream, config.cuda_device, "TextureBuilder")).ok()) return s;
      // The previous frame's work includes the later stages that read and write this texture
      // (record_use): its buffers are reused.
      if (!(s = order.before(frame.cuda_stream, done_event)).ok()) return s;
      if (frame.device == Device::kCPU && !(s = upload(&frame, frame.cuda_stream)).ok()) return s;
    }

    TextureParams p = buffers;
    p.frame = frame;
    p.width = frame.width;
    p.height = frame.height;
    texture_layout(frame.width, frame.height, p.levels);
    p.dtype = config.dtype;
    p.fixation_x = config.fixation_x;
    p.fixation_y = config.fixation_y;
    p.motion_valid = has_prev && prev_width == frame.width && prev_height == frame.height;
    p.num_threads = threads();
    // The view shows the configured planes; CUDA writes every level-0 plane (its mip kernels read
    // them back) whatever the view shows.
    const uint32_t shown = config.planes == TexturePlanes::kAll ? kAllLevel0Kept : kPipelineLevel0Planes;
    p.level0_kept = config.device == Device::kCUDA ? kAllLevel0Kept : shown;

    if (config.device == Device::kCPU) {
      s = cpu::build_texture(p);
    } else {
      s = cuda::build_texture(p, frame.cuda_stream);
      if (s.ok()) s = cuda::event_record(done_event, frame.cuda_stream);
    }
    if (!s.ok()) {
      has_prev = false;  // state is unknown after a failure: no motion next frame
      return s;
    }

    // This frame becomes the previous one (pointer swaps, no copies).
    std::swap(buffers.feature[0][0], buffers.lum_prev);
    std::swap(buffers.ysum, buffers.ysum_prev);
    has_prev = true;
    prev_width = frame.width;
    prev_height = frame.height;
    ++frame_index;

    TextureView v;
    v.data = buffers.out;
    v.device = config.device;
    v.cuda_device = config.cuda_device;
    v.dtype = config.dtype;
    v.width = frame.width;
    v.height = frame.height;
    std::copy(p.levels, p.levels + kNumLevels, v.levels);
    v.motion_valid = p.motion_valid;
    v.frame_index = frame_index;
    v.level0_kept = shown;
    last = v;
    if (config.device == Device::kCUDA) order.after(frame.cuda_stream);
    *view = v;
    return Status::Ok();
  }
};

// ------------------------------------------------------------------ public boundary
// Every public entry point is noexcept; ARRCOC_GUARD turns anything thrown inside into a Status.

TextureBuilder::TextureBuilder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TextureBuilder::~TextureBuilder() = default;

Status TextureBuilder::create(const TextureConfig& config, std::unique_ptr<TextureBuilder>* out) noexcept {
  ARRCOC_GUARD({
    if (!out) return Status(StatusCode::kInvalidArgument, "out (unique_ptr<TextureBuilder>*) is null");
    return create_operator<Impl>(config, check_config(config),
                                 [&](std::unique_ptr<Impl> impl) { out->reset(new TextureBuilder(std::move(impl))); });
  })
}

Status TextureBuilder::build(const FrameView& frame, TextureView* out) noexcept {
  ARRCOC_GUARD({ return impl_->build(frame, out); })
}

void TextureBuilder::reset() noexcept { impl_->has_prev = false; }

Status TextureBuilder::set_fixation(float x, float y) noexcept {
  if (!(x >= 0.0f && x <= 1.0f && y >= 0.0f && y <= 1.0f))
    return Status(StatusCode::kOutOfRange, "fixation (" + std::to_string(x) + ", " + std::to_string(y) +
                                               ") must lie in [0,1] x [0,1]");
  impl_->config.fixation_x = x;
  impl_->config.fixation_y = y;
  return Status::Ok();
}

Status TextureBuilder::wait_on_stream(void* stream) noexcept {
  return stream_waits_for_last_call(stream, impl_->config.device, impl_->ordinal(), impl_->frame_index > 0,
                                    impl_->done_event);
}

Status TextureBuilder::synchronize() noexcept {
  return host_waits_for_last_call(impl_->config.device, impl_->ordinal(), impl_->frame_index > 0, impl_->done_event);
}

Status TextureBuilder::record_use(void* stream) noexcept {
  if (impl_->config.device == Device::kCPU || impl_->frame_index == 0) return Status::Ok();
  cuda::DeviceGuard on(impl_->ordinal());
  return on.status().ok() ? cuda::event_record(impl_->done_event, stream) : on.status();
}

Status TextureBuilder::query(bool* done) noexcept {
  if (!done) return Status(StatusCode::kInvalidArgument, "done (bool*) is null");
  *done = true;
  if (impl_->config.device == Device::kCPU || impl_->frame_index == 0) return Status::Ok();
  cuda::DeviceGuard on(impl_->ordinal());
  return on.status().ok() ? cuda::event_query(impl_->done_event, done) : on.status();
}

namespace {

// set_patch_channel on `stream`: the last build's (other_stream false) or the caller's.
Status set_patch_channel_on(TextureBuilder::Impl& m, int channel, const float* values, void* stream,
                            bool other_stream) noexcept {
  ARRCOC_GUARD({
    if (m.frame_index == 0) return Status(StatusCode::kInvalidArgument, "set_patch_channel: no texture built yet");
    if (channel < 0 || channel >= kNumChannels || channel_base_level(channel) != kPatchLevel)
      return Status(StatusCode::kInvalidArgument, "set_patch_channel: channel " + std::to_string(channel) +
                                                      " is not a patch-grid channel (17..39)");
    const LevelLayout& L = m.last.levels[kPatchLevel];
    const int64_t n = static_cast<int64_t>(L.width) * L.height;
    if (Status s = validate_patch_values(values, n, "set_patch_channel: values"); !s.ok()) return s;
    const size_t es = static_cast<size_t>(dtype_size(m.config.dtype));
    void* dst = static_cast<char*>(m.buffers.out) + m.last.plane_offset(channel, kPatchLevel) * es;
    if (m.config.device == Device::kCPU) {
      for (int64_t i = 0; i < n; ++i) {
        if (m.config.dtype == DType::kFloat16)
          math::store_texel(static_cast<uint16_t*>(dst) + i, values[i]);
        else
          math::store_texel(static_cast<float*>(dst) + i, values[i]);
      }
      return Status::Ok();
    }
    cuda::DeviceGuard on(m.ordinal());
    if (!on.status().ok()) return on.status();
    // Queued on the build's stream (or on `stream` after the build's work), before later frames'
    // (a blocking copy on the legacy stream would not be ordered with a non-blocking stream). From
    // our own pageable copy, so a page-locked `values` may be reused at once.
    Status s = other_stream ? m.order.before(stream, m.done_event) : Status::Ok();
    if (!s.ok()) return s;
    m.patch_values.assign(values, values + n);
    s = cuda::copy_to_device_async(m.patch_staging, m.patch_values.data(), static_cast<size_t>(n) * sizeof(float), stream);
    if (s.ok()) s = cuda::store_plane(m.patch_staging, dst, n, static_cast<int>(m.config.dtype), stream);
    // synchronize(), wait_on_stream(), exports and the next build now cover this channel too.
    if (s.ok()) s = cuda::event_record(m.done_event, stream);
    if (s.ok() && other_stream) m.order.after(stream);
    return s;
  })
}

}  // namespace

Status TextureBuilder::set_patch_channel(int channel, const float* values) noexcept {
  return set_patch_channel_on(*impl_, channel, values, impl_->order.last(), false);
}

Status TextureBuilder::set_patch_channel(int channel, const float* values, void* cuda_stream) noexcept {
  return set_patch_channel_on(*impl_, channel, values, cuda_stream, true);
}

Status TextureBuilder::poison_output() noexcept {
  TextureView v;
  std::copy(impl_->max_layout, impl_->max_layout + kNumLevels, v.levels);
  const size_t bytes = static_cast<size_t>(v.total_elements()) * dtype_size(impl_->config.dtype);
  if (impl_->config.device == Device::kCPU) {
    std::memset(impl_->buffers.out, 0xFF, bytes);
    return Status::Ok();
  }
  cuda::DeviceGuard on(impl_->ordinal());
  if (!on.status().ok()) return on.status();
  // After all earlier work (the host waits for it), on the legacy stream: the last frame's stream
  // may be gone by now.
  Status s = impl_->frame_index > 0 ? cuda::event_synchronize(impl_->done_event) : Status::Ok();
  if (s.ok()) s = cuda::memset_async(impl_->buffers.out, 0xFF, bytes, nullptr);
  if (s.ok()) s = cuda::event_record(impl_->done_event, nullptr);
  return s.ok() ? cuda::event_synchronize(impl_->done_event) : s;
}

const TextureConfig& TextureBuilder::config() const noexcept { return impl_->config; }

}  // namespace arrcoc
