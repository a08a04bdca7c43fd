// Dispatcher of the semantic stage: validation, memory (allocated once), backend choice.
#include "arrcoc/semantic.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "../cpu/semantic_cpu.h"
#include "../shared/semantic_params.h"
#include "arena.h"
#include "frame_checks.h"
#include "guard.h"

namespace arrcoc {

struct SemanticEncoder::Impl {
  explicit Impl(const SemanticConfig& c) : config(c), arena(c.device) {}
  ~Impl() {
    cuda::DeviceGuard on(ordinal());
    cuda::event_destroy(done_event);
    arena.release();
  }
  int ordinal() const { return guard_ordinal(config.device, config.cuda_device); }
  void* done_event = nullptr;  // CUDA: recorded after each encode / upload / write_channels
  StreamOrder order;
  SemanticConfig config;
  Arena arena;
  float* features[2] = {nullptr, nullptr};  // this frame / previous frame descriptors
  float* query = nullptr;                   // device copies of the host vectors (CUDA)
  float* mean = nullptr;
  float* components = nullptr;
  float* external = nullptr;                // [max_dims, h4, w4] uploaded features
  bool has_previous = false;
  int32_t prev_w4 = 0, prev_h4 = 0;

  // Exemplar layout: host templates (zero-mean, packed, staged to the device with each call that
  // matches them, so a new set never races a queued frame) and the matching memory (allocated on
  // first use, for the largest frame).
  struct LayoutShape {
    int32_t th, tw, cell_px;
    float norm;
    size_t offset;  // into layout_host
  };
  std::vector<LayoutShape> layout_shapes;
  std::vector<float> layout_host;
  bool layout_memory = false;
  // Which texture raw[0] and raw[1] hold (encode made them): the layout's first passes are skipped for it.
  struct FrameKey {
    const void* data = nullptr;
    uint64_t frame_index = 0;
    int32_t width = 0, height = 0;
    static FrameKey of(const TextureView& t) { return {t.data, t.frame_index, t.width, t.height}; }
    bool operator==(const FrameKey& o) const {
      return data == o.data && frame_index == o.frame_index && width == o.width && height == o.height;
    }
  };
  FrameKey histograms_for;
  float* layout_templates = nullptr;                       // [kMaxLayoutTemplates * 32 * kMaxLayoutCells]
  float* raw[kLayoutCellSizes] = {nullptr, nullptr, nullptr};  // [kRawHistogram, hc, wc] per cell size
  float* cell_maps[kLayoutCellSizes] = {nullptr, nullptr, nullptr};  // [kCellStats, hc, wc] per size
  float* layout_ncc[kMaxLayoutTemplates] = {};
  float* layout_out = nullptr;                             // [h4, w4]

  static int64_t cells_of(int32_t w, int32_t h, int z) {
    const int32_t c = layout_cell_px(z);
    return static_cast<int64_t>((h + c - 1) / c) * ((w + c - 1) / c);
  }

  Status ensure_layout_memory() {
    if (layout_memory) return Status::Ok();
    const int64_t w = config.max_width, h = config.max_height;
    const size_t fine = static_cast<size_t>(cells_of(w, h, 0));
    LevelLayout L[kNumLevels];
    texture_layout(config.max_width, config.max_height, L);
    Status s = arena.alloc_n(static_cast<size_t>(kMaxLayoutTemplates) * kBuiltinDescriptorDims * kMaxLayoutCells,
                             &layout_templates);
    for (int z = 0; z < kLayoutCellSizes && s.ok(); ++z)
      s = arena.alloc_n(static_cast<size_t>(math::kRawHistogram) * cells_of(w, h, z), &raw[z]);
    for (int z = 0; z < kLayoutCellSizes && s.ok(); ++z)
      s = arena.alloc_n(static_cast<size_t>(math::kCellStats) * cells_of(w, h, z), &cell_maps[z]);
    for (int k = 0; k < kMaxLayoutTemplates && s.ok(); ++k) s = arena.alloc_n(fine, &layout_ncc[k]);
    if (s.ok()) s = arena.alloc_n(static_cast<size_t>(L[4].width) * L[4].height, &layout_out);
    layout_memory = s.ok();
    return s;
  }

  // The matching parameters for `t`; templates read from `templates` (device). Cell maps of the
  // sizes in `sizes` (bit z: 8 << z px) are computed.
  LayoutParams layout_params(const TextureView& t, const float* templates, unsigned sizes) const {
    LayoutParams p{};
    const SemanticParams b = base(t);
    p.dtype = b.dtype;
    for (int k = 0; k < 6; ++k) p.l1[k] = b.l1[k];
    p.w1 = b.w1;
    p.h1 = b.h1;
    p.w4 = b.w4;
    p.h4 = b.h4;
    p.num_threads = b.num_threads;
    for (int z = 0; z < kLayoutCellSizes; ++z) {
      const int32_t c = layout_cell_px(z);
      p.hc[z] = (t.height + c - 1) / c;
      p.wc[z] = (t.width + c - 1) / c;
      p.cell_maps[z] = (sizes >> z) & 1u ? cell_maps[z] : nullptr;
    }
    p.raw[0] = raw[0];
    p.raw[1] = raw[1];  // the patches' descriptors (encode) and the 32-px cells add these up
    p.raw[2] = (sizes >> 2) & 1u ? raw[2] : nullptr;
    p.num_templates = templates ? static_cast<int32_t>(layout_shapes.size()) : 0;
    for (int k = 0; k < p.num_templates; ++k) {
      const LayoutShape& shape = layout_shapes[k];
      LayoutTemplateParams& tp = p.t[k];
      const int z = shape.cell_px == 8 ? 0 : shape.cell_px == 16 ? 1 : 2;
      tp.tz = templates + shape.offset;
      tp.norm = shape.norm;
      tp.th = shape.th;
      tp.tw = shape.tw;
      tp.cell_px = shape.cell_px;
      tp.cells = cell_maps[z];
      tp.hc = p.hc[z];
      tp.wc = p.wc[z];
      const bool fits = shape.th <= tp.hc && shape.tw <= tp.wc;
      tp.ha = fits ? tp.hc - shape.th + 1 : 0;
      tp.wa = fits ? tp.wc - shape.tw + 1 : 0;
      tp.ncc = layout_ncc[k];
    }
    p.layout = templates ? layout_out : nullptr;
    return p;
  }

  unsigned layout_sizes() const {
    unsigned bits = 0;
    for (const LayoutShape& s : layout_shapes) bits |= 1u << (s.cell_px == 8 ? 0 : s.cell_px == 16 ? 1 : 2);
    return bits;
  }

  Status run_layout(const LayoutParams& p, void* stream) {
    return config.device == Device::kCPU ? cpu::match_layout(p) : cuda::match_layout(p, stream);
  }

  int threads() const { return worker_threads(config.num_threads); }

  SemanticParams base(const TextureView& t) const {
    SemanticParams p{};
    p.dtype = t.dtype;
    const size_t es = static_cast<size_t>(dtype_size(t.dtype));
    auto plane = [&](int ch, int level) { return static_cast<char*>(t.data) + t.plane_offset(ch, level) * es; };
    const int l1[6] = {15, 16, 6, 7, 8, 3};
    for (int k = 0; k < 6; ++k) p.l1[k] = plane(l1[k], 1);
    p.w1 = t.levels[1].width;
    p.h1 = t.levels[1].height;
    p.w4 = t.levels[4].width;
    p.h4 = t.levels[4].height;
    p.mvx4 = plane(35, 4);
    p.mvy4 = plane(36, 4);
    for (int c = 0; c < kSemanticComponents; ++c) p.out_semantic[c] = plane(17 + c, 4);
    p.out_query = plane(33, 4);
    p.num_threads = threads();
    return p;
  }

  Status check_texture(const TextureView& t) const {
    if (Status v = validate_texture_view(t, "texture"); !v.ok()) return v;
    if (t.device != config.device || (t.device == Device::kCUDA && t.cuda_device != config.cuda_device))
      return Status(StatusCode::kInvalidArgument, "texture: it is on " + device_label(t.device, t.cuda_device) +
                                                      " but the encoder runs on " +
                                                      device_label(config.device, config.cuda_device));
    if (t.width > config.max_width || t.height > config.max_height)
      return Status(StatusCode::kOutOfRange, "texture: size " + std::to_string(t.width) + "x" +
                                                 std::to_string(t.height) + " exceeds the encoder's maximum " +
                                                 std::to_string(config.max_width) + "x" +
                                                 std::to_string(config.max_height));
    return Status::Ok();
  }

  // Host vector -> the encoder's device: on CUDA an asynchronous copy on the call's stream (so it
  // is ordered with the kernels there), from a pageable copy that may be reused at once.
  Status stage(const char* what, const float* host, float* device_buf, size_t n, const float** out, void* stream) {
    *out = nullptr;
    if (!host) return Status::Ok();
    for (size_t i = 0; i < n; ++i)
      if (!std::isfinite(host[i]))
        return Status(StatusCode::kInvalidArgument, std::string(what) + " contains NaN or inf (value " +
                                                        std::to_string(i) + ")");
    if (config.device == Device::kCPU) {
      *out = host;
      return Status::Ok();
    }
    *out = device_buf;
    std::vector<float>& copy = staging[staged++ % 4];
    copy.assign(host, host + n);
    return cuda::copy_to_device_async(device_buf, copy.data(), n * sizeof(float), stream);
  }
  std::vector<float> staging[4];  // pageable sources of the copies of one call
  int staged = 0;

  // Work queued on `stream` follows the encoder's work on the previous stream.
  Status begin(void* stream) {
    if (config.device == Device::kCPU) return Status::Ok();
    Status s = cuda::check_stream_device(stream, config.cuda_device, "SemanticEncoder");  // (DeviceGuard on)
    return s.ok() ? order.before(stream, done_event) : s;
  }
  Status end(void* stream) {
    if (config.device == Device::kCPU) return Status::Ok();
    Status s = cuda::event_record(done_event, stream);
    if (s.ok()) order.after(stream);
    return s;
  }
};

SemanticEncoder::SemanticEncoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SemanticEncoder::~SemanticEncoder() = default;

Status SemanticEncoder::create(const SemanticConfig& config, std::unique_ptr<SemanticEncoder>* out) noexcept {
  ARRCOC_GUARD({
    if (!out) return Status(StatusCode::kInvalidArgument, "out (unique_ptr<SemanticEncoder>*) is null");
    if (config.max_width < 1 || config.max_width > 16384 || config.max_height < 1 || config.max_height > 16384)
      return Status(StatusCode::kOutOfRange, "max size is out of range; expected 1..16384 each");
    if (config.max_queries < 1 || config.max_queries > 1024)
      return Status(StatusCode::kOutOfRange, "max_queries " + std::to_string(config.max_queries) +
                                                 " is out of range; expected 1..1024");
    if (config.num_threads < 0 || config.num_threads > 1024)
      return Status(StatusCode::kOutOfRange, "num_threads " + std::to_string(config.num_threads) +
                                                 " is out of range; expected 0 (all cores)..1024");
    if (config.max_dims < 1 || config.max_dims > 8192)
      return Status(StatusCode::kOutOfRange, "max_dims " + std::to_string(config.max_dims) +
                                                 " is out of range; expected 1..8192");
    Status s = prepare_device(config.device, config.cuda_device);
    if (!s.ok()) return s;
    cuda::DeviceGuard on(guard_ordinal(config.device, config.cuda_device));
    auto impl = std::make_unique<Impl>(config);
    LevelLayout L[kNumLevels];
    texture_layout(config.max_width, config.max_height, L);
    const size_t n4 = static_cast<size_t>(L[4].width) * L[4].height;
    for (int k = 0; k < 2 && s.ok(); ++k) s = impl->arena.alloc_n(n4 * kBuiltinDescriptorDims, &impl->features[k]);
    const size_t d = static_cast<size_t>(config.max_dims);
    if (s.ok()) s = impl->arena.alloc_n(d * static_cast<size_t>(config.max_queries), &impl->query);
    if (s.ok()) s = impl->arena.alloc_n(d, &impl->mean);
    if (s.ok()) s = impl->arena.alloc_n(d * kSemanticComponents, &impl->components);
    if (s.ok()) s = impl->arena.alloc_n(d * n4, &impl->external);
    if (s.ok() && config.device == Device::kCUDA) s = cuda::event_create(&impl->done_event);
    if (!s.ok()) return s;
    out->reset(new SemanticEncoder(std::move(impl)));
    return Status::Ok();
  })
}

Status SemanticEncoder::encode(const TextureView& texture, bool carry, const float** features,
                               void* cuda_stream) noexcept {
  ARRCOC_GUARD({
    Impl& m = *impl_;
    if (!features) return Status(StatusCode::kInvalidArgument, "features (const float**) is null");
    Status s = m.check_texture(texture);
    if (!s.ok()) return s;
    cuda::DeviceGuard on(m.ordinal());
    if (!on.status().ok()) return on.status();
    SemanticParams p = m.base(texture);
    const bool can_carry = m.has_previous && m.prev_w4 == p.w4 && m.prev_h4 == p.h4;
    if (carry && !can_carry)
      return Status(StatusCode::kInvalidArgument,
                    "encode: nothing to carry (no previous descriptors of this patch grid); encode this frame");
    std::swap(m.features[0], m.features[1]);  // [1] = previous
    p.features = m.features[0];
    p.previous = m.features[1];
    p.carry = carry;
    // With an exemplar layout, the texels are read once: into the 8-px cells' raw histograms, which
    // this frame's patch descriptors and the layout's cell maps then add up.
    const bool via_cells = !carry && !m.layout_shapes.empty();
    m.histograms_for = {};
    LayoutParams lp{};
    if (via_cells) {
      lp = m.layout_params(texture, nullptr, 0u);
      p.raw16 = lp.raw[1];
    }
    if (m.config.device == Device::kCPU) {
      if (via_cells) s = cpu::match_layout(lp);
      if (s.ok()) s = cpu::encode_semantic(p);
    } else {
      s = m.begin(cuda_stream);
      if (s.ok() && via_cells) s = cuda::match_layout(lp, cuda_stream);
      if (s.ok()) s = cuda::encode_semantic(p, cuda_stream);
      if (s.ok()) s = m.end(cuda_stream);
    }
    if (s.ok() && via_cells) m.histograms_for = Impl::FrameKey::of(texture);
    if (!s.ok()) {
      m.has_previous = false;
      return s;
    }
    m.has_previous = true;
    m.prev_w4 = p.w4;
    m.prev_h4 = p.h4;
    *features = m.features[0];
    return Status::Ok();
  })
}

Status SemanticEncoder::upload_features(const TextureView& texture, const float* host, int dims,
                                        const float** features, void* cuda_stream) noexcept {
  ARRCOC_GUARD({
    Impl& m = *impl_;
    Status s = m.check_texture(texture);
    if (!s.ok()) return s;
    cuda::DeviceGuard on(m.ordinal());
    if (!on.status().ok()) return on.status();
    if (!host || !features) return Status(StatusCode::kInvalidArgument, "upload_features: null pointer");
    if (dims < 1 || dims > m.config.max_dims)
      return Status(StatusCode::kOutOfRange, "dims " + std::to_string(dims) + " is out of range; expected 1.." +
                                                 std::to_string(m.config.max_dims));
    const size_t n = static_cast<size_t>(dims) * texture.levels[kPatchLevel].width * texture.levels[kPatchLevel].height;
    const float* staged = nullptr;
    if (!(s = m.begin(cuda_stream)).ok()) return s;
    if (!(s = m.stage("features", host, m.external, n, &staged, cuda_stream)).ok()) return s;
    if (!(s = m.end(cuda_stream)).ok()) return s;
    if (m.config.device == Device::kCPU) {
      std::copy(host, host + n, m.external);
      staged = m.external;
    }
    *features = staged;
    return Status::Ok();
  })
}

Status SemanticEncoder::write_channels(const TextureView& texture, const float* features, int dims,
                                       const float* query, int num_queries, const float* mean,
                                       const float* components, void* cuda_stream) noexcept {
  ARRCOC_GUARD({
    Impl& m = *impl_;
    Status s = m.check_texture(texture);
    if (!s.ok()) return s;
    if (!features) return Status(StatusCode::kInvalidArgument, "features is null");
    if (m.config.device == Device::kCPU) {
      if (!(s = check_host_readable(features, "features")).ok()) return s;
    } else if (cuda::pointer_device(features) != m.config.cuda_device) {  // the kernels read them there
      return Status(StatusCode::kInvalidArgument, "features must be on the encoder's device (cuda:" +
                                                      std::to_string(m.config.cuda_device) +
                                                      "): encode() or upload_features() puts them there");
    }
    if (dims < 1 || dims > m.config.max_dims)
      return Status(StatusCode::kOutOfRange, "dims " + std::to_string(dims) + " is out of range; expected 1.." +
                                                 std::to_string(m.config.max_dims));
    if (query && (num_queries < 1 || num_queries > m.config.max_queries))
      return Status(StatusCode::kOutOfRange, "num_queries " + std::to_string(num_queries) +
                                                 " is out of range; expected 1.." + std::to_string(m.config.max_queries));
    if ((mean == nullptr) != (components == nullptr))
      return Status(StatusCode::kInvalidArgument, "mean and components go together (both or neither)");
    cuda::DeviceGuard on(m.ordinal());
    if (!on.status().ok()) return on.status();
    SemanticParams p = m.base(texture);
    p.in_features = features;
    p.dims = dims;
    p.num_queries = query ? num_queries : 0;
    if (!(s = m.begin(cuda_stream)).ok()) return s;
    if (!(s = m.stage("query", query, m.query, static_cast<size_t>(dims) * p.num_queries, &p.query, cuda_stream)).ok()) return s;
    if (!(s = m.stage("mean", mean, m.mean, dims, &p.mean, cuda_stream)).ok()) return s;
    if (!(s = m.stage("components", components, m.components, static_cast<size_t>(dims) * kSemanticComponents, &p.components,
                      cuda_stream)).ok())
      return s;
    if (query && !m.layout_shapes.empty()) {
      const float* templates = nullptr;
      if (!(s = m.stage("layout templates", m.layout_host.data(), m.layout_templates, m.layout_host.size(), &templates, cuda_stream)).ok())
        return s;
      LayoutParams lp = m.layout_params(texture, templates, m.layout_sizes());
      lp.histograms_ready = m.histograms_for.data != nullptr && m.histograms_for == Impl::FrameKey::of(texture);
      if (!(s = m.run_layout(lp, cuda_stream)).ok()) return s;
      p.layout = lp.layout;
    }
    if (m.config.device == Device::kCPU) return cpu::write_semantic_channels(p);
    s = cuda::write_semantic_channels(p, cuda_stream);
    return s.ok() ? m.end(cuda_stream) : s;
  })
}

Status SemanticEncoder::set_layout(const LayoutTemplate* templates, int count) noexcept {
  ARRCOC_GUARD({
    Impl& m = *impl_;
    if (count < 0 || count > kMaxLayoutTemplates)
      return Status(StatusCode::kOutOfRange, "layout: " + std::to_string(count) + " templates; expected 0.." +
                                                 std::to_string(kMaxLayoutTemplates));
    if (count > 0 && !templates) return Status(StatusCode::kInvalidArgument, "layout: templates is null");
    std::vector<Impl::LayoutShape> shapes;
    std::vector<float> packed;
    for (int k = 0; k < count; ++k) {
      const LayoutTemplate& t = templates[k];
      const std::string which = "layout template " + std::to_string(k) + ": ";
      if (!t.descriptors) return Status(StatusCode::kInvalidArgument, which + "descriptors is null");
      if (t.cell_px != 8 && t.cell_px != 16 && t.cell_px != 32)
        return Status(StatusCode::kInvalidArgument, which + "cell_px " + std::to_string(t.cell_px) +
                                                        " is not supported; expected 8, 16 or 32");
      if (t.width < 1 || t.height < 1 || static_cast<int64_t>(t.width) * t.height > kMaxLayoutCells)
        return Status(StatusCode::kOutOfRange, which + std::to_string(t.width) + "x" + std::to_string(t.height) +
                                                   " cells; expected at least 1x1 and at most " +
                                                   std::to_string(kMaxLayoutCells) + " cells");
      const size_t n = static_cast<size_t>(t.width) * t.height;
      // Zero mean per dim over the cells (in double): the NCC then ignores what the whole
      // template shares, e.g. a background colour.
      Impl::LayoutShape shape{t.height, t.width, t.cell_px, 0.0f, packed.size()};
      double energy = 0.0;
      for (int d = 0; d < kBuiltinDescriptorDims; ++d) {
        double mean = 0.0;
        for (size_t i = 0; i < n; ++i) {
          const float v = t.descriptors[d * n + i];
          if (!std::isfinite(v)) return Status(StatusCode::kInvalidArgument, which + "a value is NaN or inf");
          mean += v;
        }
        mean /= static_cast<double>(n);
        for (size_t i = 0; i < n; ++i) {
          const double z = t.descriptors[d * n + i] - mean;
          packed.push_back(static_cast<float>(z));
          energy += z * z;
        }
      }
      shape.norm = static_cast<float>(std::sqrt(energy));
      shapes.push_back(shape);
    }
    if (count > 0) {
      Status s = Status::Ok();
      {
        cuda::DeviceGuard on(m.ordinal());
        if (!on.status().ok()) return on.status();
        s = m.ensure_layout_memory();
      }
      if (!s.ok()) return s;
    }
    m.layout_shapes = std::move(shapes);
    m.layout_host = std::move(packed);
    return Status::Ok();
  })
}

Status SemanticEncoder::encode_cells(const TextureView& texture, int cell_px, const float** features,
                                     void* cuda_stream) noexcept {
  ARRCOC_GUARD({
    Impl& m = *impl_;
    if (!features) return Status(StatusCode::kInvalidArgument, "features (const float**) is null");
    if (cell_px != 8 && cell_px != 16 && cell_px != 32)
      return Status(StatusCode::kInvalidArgument, "cell_px " + std::to_string(cell_px) +
                                                      " is not supported; expected 8, 16 or 32");
    Status s = m.check_texture(texture);
    if (!s.ok()) return s;
    cuda::DeviceGuard on(m.ordinal());
    if (!on.status().ok()) return on.status();
    if (!(s = m.ensure_layout_memory()).ok()) return s;
    const int z = cell_px == 8 ? 0 : cell_px == 16 ? 1 : 2;
    const LayoutParams lp = m.layout_params(texture, nullptr, 1u << z);
    if (!(s = m.begin(cuda_stream)).ok()) return s;
    if (!(s = m.run_layout(lp, cuda_stream)).ok()) return s;
    if (!(s = m.end(cuda_stream)).ok()) return s;
    *features = m.cell_maps[z];
    return Status::Ok();
  })
}

Status SemanticEncoder::synchronize() noexcept {
  // Whatever ran (encode, upload_features, write_channels, or nothing yet: an event never
  // recorded is complete), in any order.
  return host_waits_for_last_call(impl_->config.device, impl_->ordinal(), true, impl_->done_event);
}

}  // namespace arrcoc
