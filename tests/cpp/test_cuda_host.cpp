// Regression tests of the CUDA host code (devices, streams, lifetimes) through the public C++ API,
// each against a bug that reading the code found:
// they fail on the emulated device before the fix. Results are compared with the CPU backend.
// Without a CUDA device (CPU-only builds) the program says so and passes.
#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "arrcoc/arrcoc.h"

#include "check.h"
#include "odd_texels.h"

namespace {

using arrcoc_test::check;

void ok(const arrcoc::Status& s, const std::string& what) {
  if (!s.ok()) {
    std::fprintf(stderr, "FAILED (status): %s: %s\n", what.c_str(), s.message().c_str());
    std::exit(1);
  }
}

constexpr int kW = 96, kH = 72;

std::vector<uint8_t> random_frame(uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> px(static_cast<size_t>(kW) * kH * 3);
  for (auto& v : px) v = static_cast<uint8_t>(rng() & 0xFF);
  return px;
}

// A shifted copy: real motion between two frames.
std::vector<uint8_t> shifted(const std::vector<uint8_t>& px, int dx) {
  std::vector<uint8_t> out(px.size());
  for (int y = 0; y < kH; ++y)
    for (int x = 0; x < kW; ++x)
      for (int c = 0; c < 3; ++c)
        out[(static_cast<size_t>(y) * kW + x) * 3 + c] = px[(static_cast<size_t>(y) * kW + (x + kW - dx) % kW) * 3 + c];
  return out;
}

arrcoc::FrameView frame_of(const uint8_t* px, void* stream = nullptr) {
  arrcoc::FrameView f;
  f.planes[0] = px;
  f.row_stride[0] = 3 * kW;
  f.width = kW;
  f.height = kH;
  f.cuda_stream = stream;
  return f;
}

arrcoc::TextureConfig texture_config(arrcoc::Device d, int ordinal = 0) {
  arrcoc::TextureConfig c;
  c.max_width = kW;
  c.max_height = kH;
  c.dtype = arrcoc::DType::kFloat32;
  c.device = d;
  c.cuda_device = ordinal;
  return c;
}

// The whole float32 texture as host floats.
std::vector<float> texture_on_host(const arrcoc::TextureView& v) {
  std::vector<float> out(static_cast<size_t>(v.total_elements()));
  if (v.device == arrcoc::Device::kCPU) {
    std::memcpy(out.data(), v.data, out.size() * sizeof(float));
  } else {
    ok(arrcoc::cuda_copy_to_host(out.data(), v.data, out.size() * sizeof(float)), "copy texture");
  }
  return out;
}

template <typename T>
std::vector<T> to_host(const T* p, size_t n, arrcoc::Device d) {
  std::vector<T> out(n);
  if (d == arrcoc::Device::kCPU) std::memcpy(out.data(), p, n * sizeof(T));
  else ok(arrcoc::cuda_copy_to_host(out.data(), p, n * sizeof(T)), "copy to host");
  return out;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = a.size() == b.size() ? 0.0 : INFINITY;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - b[i]);
    m = std::isnan(d) ? INFINITY : std::max(m, d);
  }
  return m;
}

void* new_stream(int ordinal = 0) {
  void* s = nullptr;
  ok(arrcoc::cuda_stream_create(ordinal, /*non_blocking=*/true, &s), "stream");
  return s;
}

// Textures of two consecutive frames: the second one's motion channels read the first's state.
std::vector<float> cpu_texture_after(const std::vector<std::vector<uint8_t>>& frames) {
  std::unique_ptr<arrcoc::TextureBuilder> b;
  ok(arrcoc::TextureBuilder::create(texture_config(arrcoc::Device::kCPU), &b), "cpu builder");
  arrcoc::TextureView v;
  for (const auto& f : frames) ok(b->build(frame_of(f.data()), &v), "cpu build");
  return texture_on_host(v);
}

// #6: frames on alternating streams are ordered (the builder's buffers are reused).
void test_alternating_streams() {
  const auto f1 = random_frame(1), f2 = shifted(f1, 4), f3 = shifted(f1, 8);
  std::unique_ptr<arrcoc::TextureBuilder> b;
  ok(arrcoc::TextureBuilder::create(texture_config(arrcoc::Device::kCUDA), &b), "cuda builder");
  void* s1 = new_stream();
  void* s2 = new_stream();
  arrcoc::TextureView v;
  ok(b->build(frame_of(f1.data(), s1), &v), "build 1");
  ok(b->build(frame_of(f2.data(), s2), &v), "build 2");
  ok(b->build(frame_of(f3.data(), s1), &v), "build 3");
  ok(b->synchronize(), "sync");
  const double err = max_abs_diff(texture_on_host(v), cpu_texture_after({f1, f2, f3}));
  check(err < 1e-3, "frames built on alternating streams equal the CPU's (max abs diff " + std::to_string(err) + ")");
  check(arrcoc::cuda_stream_destroy(s1).ok(), "stream destroyed");
  check(arrcoc::cuda_stream_destroy(s2).ok(), "stream destroyed");
}

// #5 and #4: set_patch_channel is ordered on the build's stream and covered by synchronize().
// `on_another_stream`: the three-argument form, on a stream of the caller's after the build's
// stream is gone (the two-argument form queues on the build's stream, which must then still exist).
void test_patch_channel_is_synchronized(bool on_another_stream) {
  const std::string how = on_another_stream ? "set_patch_channel on another stream" : "set_patch_channel";
  const auto f1 = random_frame(2);
  std::unique_ptr<arrcoc::TextureBuilder> b;
  ok(arrcoc::TextureBuilder::create(texture_config(arrcoc::Device::kCUDA), &b), "cuda builder");
  void* s = new_stream();
  arrcoc::TextureView v;
  ok(b->build(frame_of(f1.data(), s), &v), "build");
  if (on_another_stream) {
    ok(arrcoc::cuda_stream_destroy(s), "destroy the build's stream");
    s = new_stream();
  }
  const int n = v.levels[4].width * v.levels[4].height;
  std::vector<float> values(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) values[i] = 0.25f + 0.5f * static_cast<float>(i) / n;
  ok(on_another_stream ? b->set_patch_channel(33, values.data(), s) : b->set_patch_channel(33, values.data()), how);
  for (float& x : values) x = -5.0f;  // the caller reuses its buffer at once
  ok(b->synchronize(), "sync");
  std::vector<float> got = to_host(static_cast<const float*>(v.data) + v.plane_offset(33, 4), n, v.device);
  int wrong = 0;
  for (int i = 0; i < n; ++i) wrong += std::fabs(got[i] - (0.25f + 0.5f * static_cast<float>(i) / n)) > 1e-6f;
  check(wrong == 0, "channel 33 after " + how + " + synchronize holds the values (" + std::to_string(wrong) +
                        " of " + std::to_string(n) + " wrong)");
  ok(b->build(frame_of(f1.data(), s), &v), "the next build on that stream");
  check(arrcoc::cuda_stream_destroy(s).ok(), "stream destroyed");
}

// #9: a page-locked host frame may be reused when build() returns.
void test_pinned_frame_reuse() {
  const auto f1 = random_frame(3), f2 = random_frame(4);
  uint8_t* pinned = nullptr;
  ok(arrcoc::cuda_malloc_host(f1.size(), reinterpret_cast<void**>(&pinned)), "pinned");
  std::memcpy(pinned, f1.data(), f1.size());
  std::unique_ptr<arrcoc::TextureBuilder> b;
  ok(arrcoc::TextureBuilder::create(texture_config(arrcoc::Device::kCUDA), &b), "cuda builder");
  void* s = new_stream();
  arrcoc::TextureView v;
  ok(b->build(frame_of(pinned, s), &v), "build");
  std::memcpy(pinned, f2.data(), f2.size());  // the camera writes its next frame into the buffer
  ok(b->synchronize(), "sync");
  const double err = max_abs_diff(texture_on_host(v), cpu_texture_after({f1}));
  check(err < 1e-3, "a pinned frame overwritten after build() does not change the texture (max abs diff " +
                        std::to_string(err) + ")");
  arrcoc::cuda_free_host(pinned);
  check(arrcoc::cuda_stream_destroy(s).ok(), "stream destroyed");
}

arrcoc::PipelineConfig pipeline_config(arrcoc::Device d, int ordinal = 0) {
  arrcoc::PipelineConfig c;
  c.texture = texture_config(d, ordinal);
  c.allocator.saccades = 6;  // of ~30 patches: the ranking decides
  c.allocator.gestalt_x = c.allocator.gestalt_y = 4;
  return c;
}

struct Tokens {
  std::vector<int32_t> budgets, patches;
  std::vector<float> positions;
};

Tokens tokens_of(const arrcoc::PipelineResult& r) {
  const auto& t = r.tokens;
  Tokens out;
  out.budgets = to_host(t.budgets, t.num_tokens, t.device);
  out.patches = to_host(t.patches, t.num_tokens, t.device);
  out.positions = to_host(t.positions, 2 * static_cast<size_t>(t.num_tokens), t.device);
  return out;
}

// #4: set_weights while a frame is queued on a non-blocking stream does not reach that frame.
void test_weights_are_stream_ordered() {
  const auto f1 = random_frame(5);
  arrcoc::BalanceWeights w2 = arrcoc::default_balance_weights();
  w2.lambda_logits[1] = 6.0f;  // rank by salience alone: other saccades
  w2.mix[0] = 0.0f;
  w2.mix[1] = 1.0f;
  w2.mix[2] = 0.0f;
  auto run_cpu = [&](const arrcoc::BalanceWeights* w) {
    std::unique_ptr<arrcoc::Pipeline> p;
    ok(arrcoc::Pipeline::create(pipeline_config(arrcoc::Device::kCPU), &p), "cpu pipeline");
    if (w) ok(p->set_weights(*w), "weights");
    arrcoc::PipelineResult r;
    ok(p->process(frame_of(f1.data()), nullptr, &r), "cpu process");
    return tokens_of(r);
  };
  const Tokens want = run_cpu(nullptr), other = run_cpu(&w2);
  check(want.patches != other.patches, "the two weight sets choose different saccades (the test can fail)");

  std::unique_ptr<arrcoc::Pipeline> p;
  ok(arrcoc::Pipeline::create(pipeline_config(arrcoc::Device::kCUDA), &p), "cuda pipeline");
  void* s = new_stream();
  arrcoc::PipelineResult r;
  ok(p->process(frame_of(f1.data(), s), nullptr, &r), "process");
  ok(p->set_weights(w2), "set_weights while the frame is queued");
  ok(p->synchronize(), "sync");
  const Tokens got = tokens_of(r);
  if (std::getenv("ARRCOC_TEST_VERBOSE"))
    for (size_t i = 0; i < got.patches.size(); ++i)
      std::printf("%zu: got %d/%d want %d/%d other %d/%d\n", i, got.patches[i], got.budgets[i], want.patches[i],
                  want.budgets[i], other.patches[i], other.budgets[i]);
  check(got.patches == want.patches && got.budgets == want.budgets,
        "the queued frame keeps the weights it was processed with");
  check(arrcoc::cuda_stream_destroy(s).ok(), "stream destroyed");
}

// #4: each frame's query map reaches that frame, also when the next frame is queued before the
// first has run (the frames are linked through the relevance carried from one to the next).
void test_query_maps_are_stream_ordered(bool alternate) {
  const auto f1 = random_frame(8), f2 = f1;  // no motion: no motion boost to hide the carried relevance
  const int w4 = (kW + 15) / 16, h4 = (kH + 15) / 16;
  std::vector<float> left(static_cast<size_t>(w4) * h4), right(left.size());
  for (int i = 0; i < h4; ++i)
    for (int j = 0; j < w4; ++j) {
      left[static_cast<size_t>(i) * w4 + j] = j < w4 / 2 ? 1.0f : 0.0f;
      right[static_cast<size_t>(i) * w4 + j] = j < w4 / 2 ? 0.0f : 1.0f;
    }
  auto run = [&](arrcoc::Device d, void* stream, const std::vector<float>& first = {}, void* stream2 = nullptr) {
    std::unique_ptr<arrcoc::Pipeline> p;
    arrcoc::PipelineConfig c = pipeline_config(d);
    c.allocator.decay = 1.0f;  // frame 2 ranks by what frame 1 carried
    ok(arrcoc::Pipeline::create(c, &p), "pipeline");
    arrcoc::PipelineResult r;
    ok(p->process(frame_of(f1.data(), stream), first.empty() ? left.data() : first.data(), &r), "frame 1");
    ok(p->process(frame_of(f2.data(), stream2 ? stream2 : stream), right.data(), &r), "frame 2");
    ok(p->synchronize(), "sync");
    return tokens_of(r);
  };
  const Tokens want = run(arrcoc::Device::kCPU, nullptr);
  const Tokens other = run(arrcoc::Device::kCPU, nullptr, right);
  check(other.patches != want.patches || other.budgets != want.budgets,
        "frame 1's query map changes frame 2's saccades (the test can fail)");
  void* s = new_stream();
  void* s2 = alternate ? new_stream() : nullptr;
  const Tokens got = run(arrcoc::Device::kCUDA, s, {}, s2);
  check(got.patches == want.patches && got.budgets == want.budgets,
        std::string("two frames with different query maps queued on ") + (alternate ? "two streams" : "one stream") +
            " choose the CPU's saccades");
  check(arrcoc::cuda_stream_destroy(s).ok(), "stream destroyed");
  if (s2) check(arrcoc::cuda_stream_destroy(s2).ok(), "stream destroyed");
}

// cudaStreamPerThread is one handle but another stream in each thread: frames built from two
// threads through it are still ordered.
void test_per_thread_default_streams() {
  const auto f1 = random_frame(9), f2 = shifted(f1, 4);
  std::unique_ptr<arrcoc::TextureBuilder> b;
  ok(arrcoc::TextureBuilder::create(texture_config(arrcoc::Device::kCUDA), &b), "cuda builder");
  void* per_thread = reinterpret_cast<void*>(2);  // cudaStreamPerThread
  arrcoc::TextureView v;
  std::thread([&] { ok(b->build(frame_of(f1.data(), per_thread), &v), "build in thread 1"); }).join();
  std::thread([&] { ok(b->build(frame_of(f2.data(), per_thread), &v), "build in thread 2"); }).join();
  ok(b->synchronize(), "sync");
  const double err = max_abs_diff(texture_on_host(v), cpu_texture_after({f1, f2}));
  check(err < 1e-3, "frames built through cudaStreamPerThread from two threads equal the CPU's (max abs diff " +
                        std::to_string(err) + ")");
}

// #10: the semantic encoder's synchronize() waits for write_channels, whatever ran before.
void test_semantic_synchronize_without_encode() {
  const auto f1 = random_frame(6);
  std::unique_ptr<arrcoc::TextureBuilder> b;
  ok(arrcoc::TextureBuilder::create(texture_config(arrcoc::Device::kCUDA), &b), "cuda builder");
  arrcoc::SemanticConfig sc;
  sc.max_width = kW;
  sc.max_height = kH;
  sc.max_dims = 8;
  sc.device = arrcoc::Device::kCUDA;
  std::unique_ptr<arrcoc::SemanticEncoder> e;
  ok(arrcoc::SemanticEncoder::create(sc, &e), "encoder");
  ok(e->synchronize(), "synchronize before anything ran");
  void* s = new_stream();
  arrcoc::TextureView v;
  ok(b->build(frame_of(f1.data(), s), &v), "build");
  const int n = v.levels[4].width * v.levels[4].height, dims = 8;
  std::vector<float> features(static_cast<size_t>(dims) * n), query(dims, 0.0f);
  for (int c = 0; c < dims; ++c)
    for (int i = 0; i < n; ++i) features[static_cast<size_t>(c) * n + i] = c == i % dims ? 1.0f : 0.0f;
  query[3] = 1.0f;
  const float* dev_features = nullptr;
  ok(e->upload_features(v, features.data(), dims, &dev_features, s), "upload");
  ok(e->write_channels(v, dev_features, dims, query.data(), 1, nullptr, nullptr, s), "write");
  ok(e->synchronize(), "synchronize after write_channels only");
  std::vector<float> got = to_host(static_cast<const float*>(v.data) + v.plane_offset(33, 4), n, v.device);
  int wrong = 0;
  for (int i = 0; i < n; ++i) wrong += !(std::fabs(got[i] - (i % dims == 3 ? 1.0f : 0.0f)) < 1e-5f);
  check(wrong == 0, "query similarity is written when synchronize() returns (" + std::to_string(wrong) + " wrong)");
  check(arrcoc::cuda_stream_destroy(s).ok(), "stream destroyed");
}

// #2 and #3: two devices.
void test_two_devices() {
  if (arrcoc::cuda_device_count() < 2) {
    std::printf("two-device checks skipped: %d CUDA device(s)\n", arrcoc::cuda_device_count());
    return;
  }
  const auto f1 = random_frame(7), f2 = shifted(f1, 3);
  ok(arrcoc::cuda_set_device(1), "set device 1");
  std::unique_ptr<arrcoc::Pipeline> p0;
  ok(arrcoc::Pipeline::create(pipeline_config(arrcoc::Device::kCUDA, 0), &p0), "pipeline on cuda:0");
  check(arrcoc::cuda_current_device() == 1, "creating a pipeline on cuda:0 keeps the caller's device 1");
  arrcoc::PipelineResult r;
  ok(p0->process(frame_of(f1.data()), nullptr, &r), "process on cuda:0");
  ok(p0->process(frame_of(f2.data()), nullptr, &r), "process on cuda:0");
  ok(p0->synchronize(), "sync");
  check(arrcoc::cuda_current_device() == 1, "processing on cuda:0 keeps the caller's device 1");
  check(r.texture.cuda_device == 0 && r.tokens.cuda_device == 0, "views name their device");

  std::unique_ptr<arrcoc::Pipeline> cpu;
  ok(arrcoc::Pipeline::create(pipeline_config(arrcoc::Device::kCPU), &cpu), "cpu pipeline");
  arrcoc::PipelineResult rc;
  ok(cpu->process(frame_of(f1.data()), nullptr, &rc), "cpu");
  ok(cpu->process(frame_of(f2.data()), nullptr, &rc), "cpu");
  const Tokens a = tokens_of(r), c = tokens_of(rc);
  check(a.patches == c.patches && a.budgets == c.budgets, "cuda:0 (caller on device 1) chooses the CPU's saccades");
  ok(arrcoc::cuda_set_device(0), "set device 0");

  // A frame in device 1's memory given to a builder on device 0: refused, naming both.
  void* dev1 = nullptr;
  ok(arrcoc::cuda_malloc(1, f1.size(), &dev1), "malloc on device 1");
  ok(arrcoc::cuda_copy_to_device(dev1, f1.data(), f1.size(), nullptr), "upload");
  arrcoc::FrameView f = frame_of(static_cast<const uint8_t*>(dev1));
  f.device = arrcoc::Device::kCUDA;
  f.cuda_device = 1;
  std::unique_ptr<arrcoc::TextureBuilder> b0;
  ok(arrcoc::TextureBuilder::create(texture_config(arrcoc::Device::kCUDA, 0), &b0), "builder on cuda:0");
  arrcoc::TextureView v;
  arrcoc::Status s = b0->build(f, &v);
  check(s.code() == arrcoc::StatusCode::kInvalidArgument && s.message().find("cuda:1") != std::string::npos &&
            s.message().find("cuda:0") != std::string::npos,
        "a frame on cuda:1 for a builder on cuda:0 is refused naming both: " + s.message());
  f.cuda_device = 0;  // a producer that mislabels its memory
  s = b0->build(f, &v);
  check(s.code() == arrcoc::StatusCode::kInvalidArgument && s.message().find("cuda:1") != std::string::npos,
        "a frame whose memory is on cuda:1 is refused even when labelled cuda:0: " + s.message());

  // An NV12 frame whose luma is on cuda:0 and chroma on cuda:1: every plane is checked (the
  // kernels on cuda:0 would read cuda:1's memory).
  void* luma0 = nullptr;
  ok(arrcoc::cuda_malloc(0, static_cast<size_t>(kW) * kH, &luma0), "luma on device 0");
  arrcoc::FrameView nv12;
  nv12.planes[0] = static_cast<const uint8_t*>(luma0);
  nv12.planes[1] = static_cast<const uint8_t*>(dev1);  // (kW/2 * 2) x (kH/2) bytes fit in it
  nv12.row_stride[0] = kW;
  nv12.row_stride[1] = kW;
  nv12.width = kW;
  nv12.height = kH;
  nv12.format = arrcoc::PixelFormat::kNV12;
  nv12.device = arrcoc::Device::kCUDA;
  nv12.cuda_device = 0;
  s = b0->build(nv12, &v);
  check(s.code() == arrcoc::StatusCode::kInvalidArgument && s.message().find("plane 1") != std::string::npos &&
            s.message().find("cuda:1") != std::string::npos,
        "an NV12 frame with its chroma on cuda:1 is refused by a builder on cuda:0: " + s.message());
  arrcoc::cuda_free(luma0);

  // A texture of device 1 given to a cascade on device 0.
  std::unique_ptr<arrcoc::TextureBuilder> b1;
  ok(arrcoc::TextureBuilder::create(texture_config(arrcoc::Device::kCUDA, 1), &b1), "builder on cuda:1");
  ok(b1->build(frame_of(f1.data()), &v), "build on cuda:1");
  arrcoc::CascadeConfig cc;
  cc.max_width = kW;
  cc.max_height = kH;
  cc.device = arrcoc::Device::kCUDA;
  cc.cuda_device = 0;
  std::unique_ptr<arrcoc::ClusterCascade> c0;
  ok(arrcoc::ClusterCascade::create(cc, &c0), "cascade on cuda:0");
  arrcoc::CascadeView cv;
  s = c0->run(v, &cv);
  check(s.code() == arrcoc::StatusCode::kInvalidArgument && s.message().find("cuda:1") != std::string::npos,
        "a texture on cuda:1 for a cascade on cuda:0 is refused: " + s.message());
  check(arrcoc::cuda_current_device() == 0, "the caller's device 0 is kept");
  arrcoc::cuda_free(dev1);
}

// A C++ caller's FrameView may hold indeterminate padding bytes (here: different on every frame).
// The texture stage's graph key must not see them, or no frame would replay the captured graph
// (found by review: every frame captured, then plain launches). Emulated device only (counters).
void test_graph_key_ignores_frame_padding() {
  if (!arrcoc::cuda_emulated()) return;
  using ReadCounters = size_t (*)(const char**, unsigned long long*, size_t);
  auto read = reinterpret_cast<ReadCounters>(dlsym(RTLD_DEFAULT, "arrcoc_emu_read_counters"));
  check(read != nullptr, "the emulator's counters are reachable");
  if (!read) return;
  auto captures = [&] {
    const char* names[64];
    unsigned long long values[64];
    const size_t n = read(names, values, 64);
    for (size_t i = 0; i < n; ++i)
      if (std::strcmp(names[i], "captures") == 0) return values[i];
    return 0ull;
  };
  arrcoc::cuda_set_graphs(true);
  void* stream = nullptr;
  ok(arrcoc::cuda_stream_create(0, true, &stream), "stream");
  std::unique_ptr<arrcoc::TextureBuilder> b;
  ok(arrcoc::TextureBuilder::create(texture_config(arrcoc::Device::kCUDA), &b), "create");
  const std::vector<uint8_t> px = random_frame(11);
  unsigned long long before = 0;
  for (int i = 0; i < 8; ++i) {
    if (i == 4) before = captures();
    arrcoc::FrameView f;
    std::memset(static_cast<void*>(&f), 17 * i + 1, sizeof f);  // padding bytes differ per frame
    f.planes[0] = px.data();
    f.planes[1] = f.planes[2] = nullptr;
    f.row_stride[0] = 3 * kW;
    f.row_stride[1] = f.row_stride[2] = 0;
    f.width = kW;
    f.height = kH;
    f.format = arrcoc::PixelFormat::kRGB24;
    f.device = arrcoc::Device::kCPU;
    f.cuda_device = 0;
    f.cuda_stream = stream;
    arrcoc::TextureView v;
    ok(b->build(f, &v), "build");
  }
  ok(b->synchronize(), "synchronize");
  check(captures() == before, "after warm-up no frame captures again, whatever its FrameView's padding holds (" +
                                  std::to_string(captures() - before) + " captures in frames 4-7)");
  ok(arrcoc::cuda_stream_destroy(stream), "stream destroy");
}

// A caller's device texture with odd texels (NaN, +-inf, huge): found by reading the code, NaN
// features gave every candidate the same rank in the CUDA allocator's rank counting, so some ranks
// were never written and saccades took stale slots (patch -1, duplicates); the CPU's sorts stayed in
// range. Every stage now reads texels clamped (odd_texels.h), on this backend as on the CPU.
void test_odd_texels_on_the_device() {
  arrcoc::TextureConfig tc;
  tc.max_width = 320;
  tc.max_height = 192;
  tc.dtype = arrcoc::DType::kFloat32;
  std::unique_ptr<arrcoc::TextureBuilder> b;
  ok(arrcoc::TextureBuilder::create(tc, &b), "cpu float32 builder");
  std::mt19937 rng(99);
  std::vector<uint8_t> px(320 * 192 * 3);
  for (auto& v : px) v = static_cast<uint8_t>(rng() & 0xFF);
  arrcoc::FrameView f;
  f.planes[0] = px.data();
  f.row_stride[0] = 3 * 320;
  f.width = 320;
  f.height = 192;
  arrcoc::TextureView v;
  ok(b->build(f, &v), "build");
  ok(b->build(f, &v), "build again (motion valid)");
  arrcoc_test::DeviceMemory mem;
  mem.upload = [](const std::vector<float>& host) {
    void* d = nullptr;
    ok(arrcoc::cuda_malloc(0, host.size() * sizeof(float), &d), "cuda_malloc");
    ok(arrcoc::cuda_copy_to_device(d, host.data(), host.size() * sizeof(float), nullptr), "copy to device");
    return d;
  };
  mem.download = [](void* host, const void* d, size_t bytes) { ok(arrcoc::cuda_copy_to_host(host, d, bytes), "copy to host"); };
  mem.release = [](void* d) { arrcoc::cuda_free(d); };
  arrcoc_test::check_odd_texels_read_clamped(arrcoc::Device::kCUDA, v, mem, "cuda");
}


// The CUDA allocator builds its candidate list with block-wide scans (allocate_cuda.cu); the CPU
// walks it in one loop (compact_candidates). Same list, so the same tokens, on one texture and
// cascade (built on the CPU, copied to the device): slots that repeat a patch or lie outside the
// grid, saccades held from the previous frame, text patches up to max_candidates, lists longer
// than one block (1,200 patches at 640x480), and the random strategy (cascade slots only).
// Compared bit for bit on the emulated device (the CPU's arithmetic); on a GPU, where expf may
// differ in the last bit and move a near-tie, the Python tests compare with the reference instead.
void test_candidate_list_matches_the_cpu() {
  if (!arrcoc::cuda_emulated()) {
    std::printf("test_candidate_list_matches_the_cpu: bit-for-bit only on the emulated device; skipped\n");
    return;
  }
  constexpr int W = 640, H = 480;
  std::mt19937 rng(77);
  std::vector<uint8_t> a(static_cast<size_t>(W) * H * 3);
  for (size_t i = 0; i < a.size(); i += 3) {  // blocky noise: clusters, text-like edges, motion
    const size_t px = i / 3;
    const int x = static_cast<int>(px % W), y = static_cast<int>(px / W);
    const uint32_t cell = static_cast<uint32_t>((y / 12) * 1000 + x / 12) * 2654435761u;
    for (int c = 0; c < 3; ++c) a[i + c] = static_cast<uint8_t>((cell >> (8 * c)) ^ (rng() & 0x1F));
  }
  std::vector<uint8_t> b(a.size());
  for (int y = 0; y < H; ++y)  // the second frame: the first moved 16 px (a patch) right (held saccades follow)
    for (int x = 0; x < W; ++x)
      for (int c = 0; c < 3; ++c)
        b[(static_cast<size_t>(y) * W + x) * 3 + c] = a[(static_cast<size_t>(y) * W + std::max(0, x - 16)) * 3 + c];

  arrcoc::TextureConfig tc;
  tc.max_width = W;
  tc.max_height = H;
  tc.dtype = arrcoc::DType::kFloat32;
  arrcoc::CascadeConfig cc;
  cc.max_width = W;
  cc.max_height = H;
  cc.top_clusters = 8;
  cc.patches_per_cluster = 40;  // 320 slots
  std::unique_ptr<arrcoc::TextureBuilder> builder;
  std::unique_ptr<arrcoc::ClusterCascade> cascade;
  ok(arrcoc::TextureBuilder::create(tc, &builder), "cpu builder 640x480");
  ok(arrcoc::ClusterCascade::create(cc, &cascade), "cpu cascade 640x480");
  struct Frame {
    arrcoc::TextureView view;  // data: `texture`
    std::vector<float> texture, scores, contrast, patch_contrast;
    std::vector<int32_t> labels, kept, slots;
    arrcoc::CascadeView cv;
  };
  Frame frames[2];
  for (int k = 0; k < 2; ++k) {
    Frame& fr = frames[k];
    arrcoc::FrameView fv;
    fv.planes[0] = k == 0 ? a.data() : b.data();
    fv.row_stride[0] = 3 * W;
    fv.width = W;
    fv.height = H;
    arrcoc::TextureView v;
    ok(builder->build(fv, &v), "cpu build");
    arrcoc::CascadeView cv;
    ok(cascade->run(v, &cv), "cpu cascade");
    fr.view = v;
    fr.texture = texture_on_host(v);  // after the cascade: channel 13 written
    fr.cv = cv;
    fr.labels.assign(cv.labels, cv.labels + static_cast<size_t>(cv.level2_width) * cv.level2_height);
    fr.scores.assign(cv.cluster_scores, cv.cluster_scores + cv.num_clusters);
    fr.contrast.assign(cv.cluster_contrast, cv.cluster_contrast + cv.num_clusters);
    fr.patch_contrast.assign(cv.patch_contrast, cv.patch_contrast + static_cast<size_t>(cv.patch_grid_width) * cv.patch_grid_height);
    fr.kept.assign(cv.kept_clusters, cv.kept_clusters + cc.top_clusters);
    fr.slots.assign(cv.candidate_patch, cv.candidate_patch + cv.capacity);
    const int n4 = cv.patch_grid_width * cv.patch_grid_height;
    int first = -1;
    for (int s = 0; s < cv.capacity; ++s) {  // as a caller's CascadeView might hold them
      if (fr.slots[s] < 0) continue;
      if (first < 0) first = fr.slots[s];
      else if (s % 7 == 0) fr.slots[s] = first;                    // a repeat of the first slot's patch
      else if (s % 7 == 1) fr.slots[s] = fr.slots[s - 1];          // a repeat of the slot before
      else if (s % 7 == 2) fr.slots[s] = s % 2 ? n4 + s : -7 - s;  // outside the grid
    }
  }
  struct Case {
    const char* name;
    arrcoc::SaccadeStrategy strategy;
    float text_threshold;
    int max_candidates;
  };
  const Case cases[] = {
      {"balanced, text guard on most patches, capped at 1000", arrcoc::SaccadeStrategy::kBalanced, 1e-6f, 1000},
      {"balanced, text guard capped at 700", arrcoc::SaccadeStrategy::kBalanced, 1e-6f, 700},
      {"balanced, defaults", arrcoc::SaccadeStrategy::kBalanced, 0.02f, 500},
      {"random", arrcoc::SaccadeStrategy::kRandom, 1e-6f, 1000},
  };
  for (const Case& c : cases) {
    std::vector<int32_t> patches[2], budgets[2], kinds[2], previous[2];
    std::vector<float> positions[2], per_slot[2];  // per cascade slot: the scores of its candidate
    for (int backend = 0; backend < 2; ++backend) {
      const arrcoc::Device d = backend == 0 ? arrcoc::Device::kCPU : arrcoc::Device::kCUDA;
      arrcoc::AllocatorConfig ac;
      ac.max_width = W;
      ac.max_height = H;
      ac.device = d;
      ac.strategy = c.strategy;
      ac.text_threshold = c.text_threshold;
      ac.max_candidates = c.max_candidates;
      std::unique_ptr<arrcoc::TokenAllocator> allocator;
      ok(arrcoc::TokenAllocator::create(ac, &allocator), std::string(c.name) + ": allocator");
      std::vector<void*> device_buffers;
      auto place = [&](const auto& host) -> const void* {
        if (d == arrcoc::Device::kCPU) return host.data();
        void* p = nullptr;
        const size_t bytes = host.size() * sizeof(host[0]);
        ok(arrcoc::cuda_malloc(0, bytes, &p), "cuda_malloc");
        ok(arrcoc::cuda_copy_to_device(p, host.data(), bytes, nullptr), "copy to device");
        device_buffers.push_back(p);
        return p;
      };
      for (int k = 0; k < 2; ++k) {
        Frame& fr = frames[k];
        arrcoc::TextureView v = fr.view;
        v.device = d;
        v.data = const_cast<void*>(place(fr.texture));
        arrcoc::CascadeView cv = fr.cv;
        cv.device = d;
        cv.labels = static_cast<const int32_t*>(place(fr.labels));
        cv.cluster_scores = static_cast<const float*>(place(fr.scores));
        cv.cluster_contrast = static_cast<const float*>(place(fr.contrast));
        cv.patch_contrast = static_cast<const float*>(place(fr.patch_contrast));
        cv.kept_clusters = static_cast<const int32_t*>(place(fr.kept));
        cv.candidate_patch = static_cast<const int32_t*>(place(fr.slots));
        arrcoc::TokenPack pack, host;
        ok(allocator->run(v, cv, false, &pack), std::string(c.name) + ": allocator run");
        ok(allocator->copy_to_host(&host), std::string(c.name) + ": copy_to_host");
        const size_t n = static_cast<size_t>(host.num_tokens);
        patches[backend].insert(patches[backend].end(), host.patches, host.patches + n);
        budgets[backend].insert(budgets[backend].end(), host.budgets, host.budgets + n);
        kinds[backend].insert(kinds[backend].end(), host.kinds, host.kinds + n);
        previous[backend].insert(previous[backend].end(), host.previous, host.previous + n);
        positions[backend].insert(positions[backend].end(), host.positions, host.positions + 2 * n);
        // a candidate whose slot is wrong (slot_of) scores in another slot's place
        for (const float* a : {host.info, host.salience, host.query, host.raw, host.balanced, host.candidate_relevance})
          per_slot[backend].insert(per_slot[backend].end(), a, a + host.candidate_capacity);
      }
      for (void* p : device_buffers) arrcoc::cuda_free(p);
    }
    const std::string what = std::string("candidate list, ") + c.name + ": ";
    check(!patches[0].empty() && patches[1] == patches[0], what + "the same saccade patches as the CPU");
    check(budgets[1] == budgets[0], what + "the same levels of detail");
    check(kinds[1] == kinds[0], what + "the same token kinds");
    check(previous[1] == previous[0], what + "the same held tokens");
    check(positions[1] == positions[0], what + "the same positions");
    // float scores: the CPU may contract multiply-adds where the emulated kernels do not
    check(!per_slot[0].empty() && max_abs_diff(per_slot[0], per_slot[1]) < 1e-5, what + "the same scores in every slot");
    int held = 0;
    for (size_t t = patches[0].size() / 2; t < patches[0].size(); ++t) held += previous[0][t] >= 0 && kinds[0][t] == 1;
    if (c.strategy != arrcoc::SaccadeStrategy::kRandom) check(held > 0, what + "saccades held on the second frame");
  }
}

}  // namespace

// The runtime utilities take a device ordinal 0..N-1; a negative one is refused, not read as "the
// current device" (which only cuda_stream_synchronize documents).
void test_negative_ordinals_are_refused() {
  void* ptr = nullptr;
  const arrcoc::Status m = arrcoc::cuda_malloc(-5, 256, &ptr);
  check(m.code() == arrcoc::StatusCode::kOutOfRange && ptr == nullptr,
        "cuda_malloc(-5): " + std::string(arrcoc::status_code_name(m.code())) + " " + m.message());
  void* stream = nullptr;
  const arrcoc::Status s = arrcoc::cuda_stream_create(-3, true, &stream);
  check(s.code() == arrcoc::StatusCode::kOutOfRange && stream == nullptr,
        "cuda_stream_create(-3): " + std::string(arrcoc::status_code_name(s.code())) + " " + s.message());
}

// A C++ trial (2026-12-01): three ways a GPU user's mistake reached CUDA or freed memory instead
// of a Status, each checked on both devices where it matters.
void test_caller_mistakes_are_statuses() {
  const auto f1 = random_frame(21), f2 = shifted(f1, 2);
  // 1. The pack's candidates are its own: the cascade may be destroyed (or run again) before the
  //    pack is read (they pointed into the cascade's memory: a use after free, or the next frame's).
  for (arrcoc::Device d : {arrcoc::Device::kCPU, arrcoc::Device::kCUDA}) {
    std::unique_ptr<arrcoc::TextureBuilder> b;
    ok(arrcoc::TextureBuilder::create(texture_config(d), &b), "builder");
    arrcoc::CascadeConfig cc;
    cc.max_width = kW;
    cc.max_height = kH;
    cc.device = d;
    std::unique_ptr<arrcoc::ClusterCascade> c;
    ok(arrcoc::ClusterCascade::create(cc, &c), "cascade");
    arrcoc::AllocatorConfig ac;
    ac.max_width = kW;
    ac.max_height = kH;
    ac.max_candidates = cc.top_clusters * cc.patches_per_cluster;
    ac.device = d;
    std::unique_ptr<arrcoc::TokenAllocator> a;
    ok(arrcoc::TokenAllocator::create(ac, &a), "allocator");
    arrcoc::TextureView tv;
    arrcoc::CascadeView cv;
    arrcoc::TokenPack tp, host;
    ok(b->build(frame_of(f1.data()), &tv), "build");
    ok(c->run(tv, &cv), "cascade run");
    const auto want = to_host(cv.candidate_patch, static_cast<size_t>(cv.capacity), d);
    ok(a->run(tv, cv, false, &tp), "allocate");
    ok(b->build(frame_of(f2.data()), &tv), "build the next frame");
    ok(c->run(tv, &cv), "the cascade's next frame, before the pack is read");
    c.reset();
    ok(a->copy_to_host(&host), "copy the pack after the cascade is gone");
    check(std::vector<int32_t>(host.candidates, host.candidates + host.candidate_capacity) == want,
          "the pack keeps its own frame's candidates (device " + std::to_string(static_cast<int>(d)) + ")");
  }
  // 2. Device memory in a FrameView left at Device::kCPU: a Status, not a crash in host code.
  void* dev = nullptr;
  ok(arrcoc::cuda_malloc(0, f1.size(), &dev), "malloc");
  ok(arrcoc::cuda_copy_to_device(dev, f1.data(), f1.size(), nullptr), "upload");
  for (arrcoc::Device d : {arrcoc::Device::kCPU, arrcoc::Device::kCUDA}) {
    std::unique_ptr<arrcoc::Pipeline> p;
    ok(arrcoc::Pipeline::create(pipeline_config(d), &p), "pipeline");
    arrcoc::PipelineResult r;
    const arrcoc::Status s = p->process(frame_of(static_cast<const uint8_t*>(dev)), nullptr, &r);
    check(s.code() == arrcoc::StatusCode::kInvalidArgument && s.message().find("Device::kCUDA") != std::string::npos,
          "device memory marked kCPU is refused: " + s.message());
  }
  arrcoc::cuda_free(dev);
  // 3. A caller's stream of another device: kInvalidArgument before any state changes (a bare
  //    CudaError, and the motion history lost).
  if (arrcoc::cuda_device_count() < 2) return;
  std::unique_ptr<arrcoc::Pipeline> p;
  ok(arrcoc::Pipeline::create(pipeline_config(arrcoc::Device::kCUDA, 0), &p), "pipeline on cuda:0");
  arrcoc::PipelineResult r;
  ok(p->process(frame_of(f1.data()), nullptr, &r), "first frame");
  void* s1 = new_stream(1);
  const arrcoc::Status s = p->process(frame_of(f2.data(), s1), nullptr, &r);
  check(s.code() == arrcoc::StatusCode::kInvalidArgument && s.message().find("cuda:1") != std::string::npos &&
            s.message().find("cuda:0") != std::string::npos,
        "a stream of cuda:1 for a pipeline on cuda:0 is refused naming both: " + s.message());
  ok(p->process(frame_of(f2.data()), nullptr, &r), "the next frame");
  check(r.texture.motion_valid, "the refused frame kept the motion history");
  ok(arrcoc::cuda_stream_destroy(s1), "destroy stream");
}

// A C++ host reads a CUDA pipeline's pack with one call (it had to copy each field itself), gathers
// features on the device and orders its own stream after the frame, as the allocator lets it.
void test_pipeline_hands_its_pack_to_the_host() {
  const auto f1 = random_frame(21);
  std::unique_ptr<arrcoc::Pipeline> cpu, p;
  ok(arrcoc::Pipeline::create(pipeline_config(arrcoc::Device::kCPU), &cpu), "cpu pipeline");
  arrcoc::PipelineResult want;
  ok(cpu->process(frame_of(f1.data()), nullptr, &want), "cpu process");
  arrcoc::TokenPack cpu_host;
  ok(cpu->copy_to_host(&cpu_host), "cpu copy_to_host");
  check(cpu_host.budgets == want.tokens.budgets && cpu_host.num_tokens == want.tokens.num_tokens,
        "CPU: copy_to_host gives the pack itself");

  ok(arrcoc::Pipeline::create(pipeline_config(arrcoc::Device::kCUDA), &p), "cuda pipeline");
  arrcoc::TokenPack host;
  check(p->copy_to_host(&host).code() == arrcoc::StatusCode::kInvalidArgument, "no pack before the first frame");
  void* s = new_stream();
  arrcoc::PipelineResult r;
  ok(p->process(frame_of(f1.data(), s), nullptr, &r), "process");
  ok(p->copy_to_host(&host, s), "copy_to_host on the frame's stream");
  const int n = host.num_tokens;
  check(host.device == arrcoc::Device::kCPU && n == want.tokens.num_tokens, "a host pack of the same size");
  const Tokens expected = tokens_of(want);
  check(std::vector<int32_t>(host.budgets, host.budgets + n) == expected.budgets &&
            std::vector<int32_t>(host.patches, host.patches + n) == expected.patches &&
            std::vector<float>(host.positions, host.positions + 2 * n) == expected.positions,
        "the host pack equals the CPU backend's");

  // gather on the device: features of ones give 1 per valid token, 0 for padding
  const int C = 3, fh = 5, fw = 7;
  std::vector<float> ones(static_cast<size_t>(C) * fh * fw, 1.0f);
  void *features = nullptr, *out = nullptr;
  ok(arrcoc::cuda_malloc(0, ones.size() * sizeof(float), &features), "features");
  ok(arrcoc::cuda_malloc(0, static_cast<size_t>(n) * C * sizeof(float), &out), "out");
  void* other = new_stream();  // the host's own stream: its upload, then the gather, in order
  ok(arrcoc::cuda_copy_to_device(features, ones.data(), ones.size() * sizeof(float), other), "upload");
  ok(p->gather_features(static_cast<const float*>(features), C, fh, fw, static_cast<float*>(out), other), "gather");
  ok(arrcoc::cuda_stream_synchronize(other), "wait");
  std::vector<float> got(static_cast<size_t>(n) * C);
  ok(arrcoc::cuda_copy_to_host(got.data(), out, got.size() * sizeof(float)), "download");
  bool right = true;
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < C; ++c)  // a mean of ones: 1 within float32 rounding of the sum
      right &= std::fabs(got[static_cast<size_t>(i) * C + c] - (host.kinds[i] >= 0 ? 1.0f : 0.0f)) <= 1e-6f;
  if (!right || std::getenv("ARRCOC_TEST_VERBOSE"))
    for (int i = 0; i < n; ++i) std::printf("token %d kind %d: %g %g %g\n", i, host.kinds[i], got[i * C], got[i * C + 1], got[i * C + 2]);
  check(right, "gather_features: 1 for every token, 0 for padding");
  check(p->gather_features(static_cast<const float*>(features), C, fh, fw, nullptr, other).code() ==
            arrcoc::StatusCode::kInvalidArgument, "gather_features into null is refused");
  ok(p->wait_on_stream(other), "wait_on_stream");
  arrcoc::cuda_free(features);
  arrcoc::cuda_free(out);
  check(arrcoc::cuda_stream_destroy(other).ok() && arrcoc::cuda_stream_destroy(s).ok(), "streams destroyed");
}

int main() {
  if (!arrcoc::built_with_cuda() || arrcoc::cuda_device_count() == 0) {
    std::printf("no CUDA device (built with CUDA: %s): nothing to check\n", arrcoc::built_with_cuda() ? "yes" : "no");
    return 0;
  }
  std::printf("CUDA devices: %d (%s)\n", arrcoc::cuda_device_count(), arrcoc::cuda_device_name(0).c_str());
  test_alternating_streams();
  test_patch_channel_is_synchronized(false);
  test_patch_channel_is_synchronized(true);
  test_pinned_frame_reuse();
  test_weights_are_stream_ordered();
  test_query_maps_are_stream_ordered(false);
  test_query_maps_are_stream_ordered(true);
  test_per_thread_default_streams();
  test_semantic_synchronize_without_encode();
  test_two_devices();
  test_graph_key_ignores_frame_padding();
  test_odd_texels_on_the_device();
  test_candidate_list_matches_the_cpu();
  test_negative_ordinals_are_refused();
  test_caller_mistakes_are_statuses();
  test_pipeline_hands_its_pack_to_the_host();
  return arrcoc_test::finish();
}
