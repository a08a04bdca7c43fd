// C++ API tests (ctest): error statuses for bad input, layout, and known values, with no
// Python involved. Plain asserts with messages; exits non-zero on the first failure.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>
#include <cstdint>
#include <vector>

#include "arrcoc/arrcoc.h"

#include "check.h"
#include "odd_texels.h"

namespace {

using arrcoc_test::check;

void check_status(const arrcoc::Status& s, arrcoc::StatusCode want, const std::string& what,
                  const char* must_mention = nullptr) {
  const bool code_ok = s.code() == want;
  const bool text_ok = !must_mention || s.message().find(must_mention) != std::string::npos;
  check(code_ok && text_ok, what + ": got " + arrcoc::status_code_name(s.code()) + " \"" + s.message() + "\", want " +
                                arrcoc::status_code_name(want) + (must_mention ? std::string(" mentioning '") + must_mention + "'" : ""));
}

arrcoc::FrameView rgb_frame(const std::vector<uint8_t>& px, int w, int h) {
  arrcoc::FrameView f;
  f.planes[0] = px.data();
  f.row_stride[0] = 3 * w;
  f.width = w;
  f.height = h;
  f.format = arrcoc::PixelFormat::kRGB24;
  return f;
}

// A float32 texture builder for w x h frames (values the tests compare or write exactly).
std::unique_ptr<arrcoc::TextureBuilder> float32_texture_builder(int w, int h) {
  arrcoc::TextureConfig tc;
  tc.max_width = w;
  tc.max_height = h;
  tc.dtype = arrcoc::DType::kFloat32;
  std::unique_ptr<arrcoc::TextureBuilder> b;
  check(arrcoc::TextureBuilder::create(tc, &b).ok(),
        "create float32 texture builder " + std::to_string(w) + "x" + std::to_string(h));
  return b;
}

float texel(const arrcoc::TextureView& v, arrcoc::Channel c, int level, int x, int y) {
  const int64_t off = v.plane_offset(static_cast<int>(c), level);
  const int64_t i = off + static_cast<int64_t>(y) * v.levels[level].width + x;
  return static_cast<const float*>(v.data)[i];
}

void test_config_errors() {
  using arrcoc::StatusCode;
  std::unique_ptr<arrcoc::TextureBuilder> b;
  arrcoc::TextureConfig c;
  c.max_width = 0;
  check_status(arrcoc::TextureBuilder::create(c, &b), StatusCode::kOutOfRange, "max_width 0", "max size");
  c = arrcoc::TextureConfig();
  c.max_height = 20000;
  check_status(arrcoc::TextureBuilder::create(c, &b), StatusCode::kOutOfRange, "max_height 20000");
  c = arrcoc::TextureConfig();
  c.fixation_x = NAN;
  check_status(arrcoc::TextureBuilder::create(c, &b), StatusCode::kOutOfRange, "NaN fixation", "fixation");
  c = arrcoc::TextureConfig();
  c.num_threads = -3;
  check_status(arrcoc::TextureBuilder::create(c, &b), StatusCode::kOutOfRange, "num_threads -3", "num_threads");
  check_status(arrcoc::TextureBuilder::create(arrcoc::TextureConfig(), nullptr), StatusCode::kInvalidArgument,
               "null out");
  c = arrcoc::TextureConfig();
  c.planes = static_cast<arrcoc::TexturePlanes>(7);
  check_status(arrcoc::TextureBuilder::create(c, &b), StatusCode::kInvalidArgument, "planes 7", "planes");
  c = arrcoc::TextureConfig();
  c.device = arrcoc::Device::kCUDA;
  const arrcoc::Status s = arrcoc::TextureBuilder::create(c, &b);
  if (!arrcoc::built_with_cuda())
    check_status(s, StatusCode::kNotBuiltWithCuda, "CUDA builder in a CPU-only build", "built without CUDA");
  else if (arrcoc::cuda_device_count() == 0)
    check_status(s, StatusCode::kNoCudaDevice, "CUDA builder without a GPU", "no CUDA device");
  check(b == nullptr || s.ok(), "failed create leaves the output empty");
}

// Configs that every later call would refuse are refused by create(); enum values that are no
// enumerator, and sizes near INT32_MAX, are errors, not undefined behaviour (UBSan runs these).
void test_create_refuses_what_process_would() {
  using arrcoc::StatusCode;
  std::unique_ptr<arrcoc::Pipeline> p;
  arrcoc::PipelineConfig pc;
  pc.cascade.top_clusters = 30;  // each within its range, their product (1500 slots) is not
  pc.cascade.patches_per_cluster = 50;
  check_status(arrcoc::Pipeline::create(pc, &p), StatusCode::kOutOfRange, "1500 candidate slots", "at most 1024");
  check(p == nullptr, "a refused Pipeline config leaves the output empty");
  pc.cascade.top_clusters = INT32_MAX;  // no signed overflow before the cascade's own check
  pc.cascade.patches_per_cluster = 2;
  check_status(arrcoc::Pipeline::create(pc, &p), StatusCode::kOutOfRange, "top_clusters INT32_MAX", "top_clusters");
  pc = arrcoc::PipelineConfig();
  pc.allocator.saccades = 5000;  // an int setting reads as one (was "5000.000000 ... [0.000000, 1024.000000]")
  check_status(arrcoc::Pipeline::create(pc, &p), StatusCode::kOutOfRange, "saccades 5000",
               "saccades 5000 is out of range; expected [0, 1024]");
  pc = arrcoc::PipelineConfig();
  pc.allocator.offset = 0.5f;  // a float setting keeps its fraction
  check_status(arrcoc::Pipeline::create(pc, &p), StatusCode::kOutOfRange, "offset 0.5",
               "offset 0.5 is out of range; expected [-0.3, 0.3]");
  pc = arrcoc::PipelineConfig();
  pc.cascade.top_clusters = 16;
  pc.cascade.patches_per_cluster = 64;  // exactly 1024: accepted
  check(arrcoc::Pipeline::create(pc, &p).ok() && p != nullptr, "1024 candidate slots are accepted");

  const auto not_a_device = static_cast<arrcoc::Device>(5);
  std::unique_ptr<arrcoc::ClusterCascade> cascade;
  arrcoc::CascadeConfig cc;
  cc.device = not_a_device;
  check_status(arrcoc::ClusterCascade::create(cc, &cascade), StatusCode::kInvalidArgument, "cascade device 5",
               "not a Device");
  std::unique_ptr<arrcoc::TokenAllocator> allocator;
  arrcoc::AllocatorConfig ac;
  ac.device = not_a_device;
  check_status(arrcoc::TokenAllocator::create(ac, &allocator), StatusCode::kInvalidArgument, "allocator device 5",
               "not a Device");
  std::unique_ptr<arrcoc::SemanticEncoder> encoder;
  arrcoc::SemanticConfig sc;
  sc.device = not_a_device;
  check_status(arrcoc::SemanticEncoder::create(sc, &encoder), StatusCode::kInvalidArgument, "semantic device 5",
               "not a Device");
  sc = arrcoc::SemanticConfig();
  sc.num_threads = -7;
  check_status(arrcoc::SemanticEncoder::create(sc, &encoder), StatusCode::kOutOfRange, "semantic num_threads -7",
               "num_threads");
  check(cascade == nullptr && allocator == nullptr && encoder == nullptr, "refused creates leave the outputs empty");

  arrcoc::LevelLayout L[arrcoc::kNumLevels];
  arrcoc::texture_layout(INT32_MAX, 3, L);  // (a plane of INT32_MAX squared would not fit int64 offsets)
  bool halves = true;
  for (int k = 1; k < arrcoc::kNumLevels; ++k)
    halves = halves && L[k].width > 0 && L[k].width == L[k - 1].width / 2 + (L[k - 1].width & 1);
  check(halves && L[1].width == 1073741824, "texture_layout(INT32_MAX): every level ceil(w / 2), no overflow");
}

void test_frame_errors() {
  using arrcoc::StatusCode;
  arrcoc::TextureConfig c;
  c.max_width = 64;
  c.max_height = 48;
  c.dtype = arrcoc::DType::kFloat32;
  std::unique_ptr<arrcoc::TextureBuilder> b;
  check_status(arrcoc::TextureBuilder::create(c, &b), StatusCode::kOk, "create 64x48");
  if (!b) return;
  std::vector<uint8_t> px(64 * 48 * 3, 100);
  arrcoc::TextureView v;

  arrcoc::FrameView f = rgb_frame(px, 64, 48);
  f.planes[0] = nullptr;
  check_status(b->build(f, &v), StatusCode::kInvalidArgument, "null plane", "plane 0");
  f = rgb_frame(px, 64, 48);
  f.row_stride[0] = 100;
  check_status(b->build(f, &v), StatusCode::kInvalidArgument, "short row stride", "row stride 100");
  f.row_stride[0] = -192;
  check_status(b->build(f, &v), StatusCode::kInvalidArgument, "negative row stride", "negative");
  for (int64_t huge : {int64_t{1} << 62, INT64_MAX, (int64_t{1} << 56) / 40}) {  // y * stride overflowed: a crash
    f.row_stride[0] = huge;
    check_status(b->build(f, &v), StatusCode::kInvalidArgument, "row stride past the address space",
                 "spans more memory than an address space holds");
  }
  f = rgb_frame(px, 65, 48);
  f.row_stride[0] = 3 * 65;
  check_status(b->build(f, &v), StatusCode::kOutOfRange, "frame wider than max", "exceeds the maximum 64x48");
  f = rgb_frame(px, 0, 48);
  check_status(b->build(f, &v), StatusCode::kInvalidArgument, "zero width", "empty");
  f = rgb_frame(px, 64, 48);
  f.format = static_cast<arrcoc::PixelFormat>(42);
  check_status(b->build(f, &v), StatusCode::kInvalidArgument, "unknown pixel format", "unknown pixel format 42");
  f = rgb_frame(px, 64, 48);
  f.format = arrcoc::PixelFormat::kNV12;
  f.row_stride[0] = 64;
  check_status(b->build(f, &v), StatusCode::kInvalidArgument, "nv12 without a UV plane", "plane 1");
  f = rgb_frame(px, 64, 48);
  f.device = arrcoc::Device::kCUDA;
  check_status(b->build(f, &v), StatusCode::kInvalidArgument, "CUDA frame on a CPU builder", "CUDA memory");
  check_status(b->build(rgb_frame(px, 64, 48), nullptr), StatusCode::kInvalidArgument, "null out view");
  check_status(b->set_fixation(2.0f, 0.5f), StatusCode::kOutOfRange, "fixation outside [0,1]");
  // after all of that, the builder still works
  check_status(b->build(rgb_frame(px, 64, 48), &v), StatusCode::kOk, "build after errors");
  // Values that are not enumerators answer 0 (were 1 and 4, plausible numbers), and a CPU-only
  // build has no current CUDA device (was 0, a real ordinal).
  check(arrcoc::pixel_format_planes(static_cast<arrcoc::PixelFormat>(99)) == 0 &&
            arrcoc::pixel_format_bytes_per_pixel(static_cast<arrcoc::PixelFormat>(99)) == 0 &&
            arrcoc::dtype_size(static_cast<arrcoc::DType>(9)) == 0,
        "unknown enum values size to 0");
  check(arrcoc::pixel_format_planes(arrcoc::PixelFormat::kNV12) == 2 &&
            arrcoc::pixel_format_bytes_per_pixel(arrcoc::PixelFormat::kBGRA32) == 4 &&
            arrcoc::dtype_size(arrcoc::DType::kFloat16) == 2,
        "known enum values keep their sizes");
  if (!arrcoc::built_with_cuda()) check(arrcoc::cuda_current_device() == -1, "no current CUDA device without CUDA");
}

void test_values_and_layout() {
  arrcoc::TextureConfig c;
  c.max_width = 33;
  c.max_height = 17;
  c.dtype = arrcoc::DType::kFloat32;
  std::unique_ptr<arrcoc::TextureBuilder> b;
  check(arrcoc::TextureBuilder::create(c, &b).ok(), "create 33x17");
  std::vector<uint8_t> px(33 * 17 * 3);
  for (size_t i = 0; i < px.size(); i += 3) {  // a flat grey picture
    px[i] = 51;
    px[i + 1] = 51;
    px[i + 2] = 51;
  }
  arrcoc::TextureView v;
  check(b->build(rgb_frame(px, 33, 17), &v).ok(), "build grey");
  check(v.levels[4].width == 3 && v.levels[4].height == 2, "level 4 of 33x17 is 3x2 (rounding up)");
  check(v.levels[0].num_planes == 15 && v.levels[1].num_planes == 16 && v.levels[4].num_planes == 40,
        "planes per level 15/16/../40");
  check(arrcoc::TextureView::plane_index(11, 0) == -1 && v.plane_offset(11, 0) == -1, "saliency not at level 0");
  check(arrcoc::TextureView::plane_index(39, 4) == 39, "relevance is plane 39 at level 4");
  check(std::fabs(texel(v, arrcoc::Channel::kRed, 0, 5, 5) - 0.2f) < 1e-7f, "red = 51/255");
  check(std::fabs(texel(v, arrcoc::Channel::kLuminance, 2, 1, 1) - 0.2f) < 1e-6f, "luminance mip of flat = 0.2");
  check(texel(v, arrcoc::Channel::kGradMagnitude, 0, 0, 0) == 0.0f, "no gradient in a flat picture");
  check(texel(v, arrcoc::Channel::kEntropy, 0, 10, 10) == 0.0f, "no entropy in a flat picture");
  check(texel(v, arrcoc::Channel::kLocalContrast, 0, 10, 10) == 0.0f, "no contrast in a flat picture");
  check(texel(v, arrcoc::Channel::kEccentricity, 0, 16, 8) < 0.05f, "eccentricity ~0 at the centre");
  check(texel(v, arrcoc::Channel::kEccentricity, 0, 0, 0) > 0.9f, "eccentricity ~1 at a corner");
  check(!v.motion_valid && v.frame_index == 1, "first frame has no motion");
  check(b->build(rgb_frame(px, 33, 17), &v).ok() && v.motion_valid, "second frame has motion");
  check(texel(v, arrcoc::Channel::kMotion, 0, 3, 3) == 0.0f, "no motion between identical frames");
  b->reset();
  check(b->build(rgb_frame(px, 33, 17), &v).ok() && !v.motion_valid, "reset forgets the previous frame");

  // TexturePlanes::kPipeline: level 0 keeps R, G, B and motion; the rest is there from level 1 on
  c.planes = arrcoc::TexturePlanes::kPipeline;
  std::unique_ptr<arrcoc::TextureBuilder> lean;
  arrcoc::TextureView lv;
  check(arrcoc::TextureBuilder::create(c, &lean).ok() && lean->build(rgb_frame(px, 33, 17), &lv).ok(), "lean build");
  check(lv.has_plane(0, 0) && lv.has_plane(10, 0) && !lv.has_plane(3, 0) && lv.plane_offset(3, 0) == -1 &&
            lv.has_plane(3, 1) && lv.plane_offset(3, 1) == v.plane_offset(3, 1),
        "lean view: luminance from level 1 on, same layout");
  check(texel(lv, arrcoc::Channel::kRed, 0, 5, 5) == texel(v, arrcoc::Channel::kRed, 0, 5, 5) &&
            texel(lv, arrcoc::Channel::kLuminance, 1, 2, 2) == texel(v, arrcoc::Channel::kLuminance, 1, 2, 2),
        "lean texture's planes equal the full one's");
  check(arrcoc::PipelineConfig().texture.planes == arrcoc::TexturePlanes::kPipeline &&
            arrcoc::TextureConfig().planes == arrcoc::TexturePlanes::kAll,
        "a Pipeline's texture defaults to kPipeline, a TextureBuilder's to kAll");
}

void test_motion_vectors() {
  const int w = 128, h = 96;
  arrcoc::TextureConfig c;
  c.max_width = w;
  c.max_height = h;
  c.dtype = arrcoc::DType::kFloat32;
  std::unique_ptr<arrcoc::TextureBuilder> b;
  check(arrcoc::TextureBuilder::create(c, &b).ok(), "create 128x96");
  auto pattern = [](int x, int y) { return static_cast<uint8_t>((x * 37 + y * 91 + (x * y) % 53) * 7 % 251); };
  std::vector<uint8_t> f1(w * h * 3), f2(w * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < 3; ++k) {
        f1[(y * w + x) * 3 + k] = pattern(x + 100, y + 100 + k);
        f2[(y * w + x) * 3 + k] = pattern(x + 100 - 8, y + 100 + k);  // content moved 8 px right
      }
  arrcoc::TextureView v;
  check(b->build(rgb_frame(f1, w, h), &v).ok() && b->build(rgb_frame(f2, w, h), &v).ok(), "build pair");
  check(texel(v, arrcoc::Channel::kMotionX, 4, 3, 3) == 8.0f, "motion_x = +8 px");
  check(texel(v, arrcoc::Channel::kMotionY, 4, 3, 3) == 0.0f, "motion_y = 0");
}

void test_cascade() {
  using arrcoc::StatusCode;
  std::unique_ptr<arrcoc::ClusterCascade> c;
  arrcoc::CascadeConfig cc;
  cc.num_seeds = 0;
  check_status(arrcoc::ClusterCascade::create(cc, &c), StatusCode::kOutOfRange, "num_seeds 0", "num_seeds");
  cc = arrcoc::CascadeConfig();
  cc.compactness = -1.0f;
  check_status(arrcoc::ClusterCascade::create(cc, &c), StatusCode::kOutOfRange, "negative compactness", "compactness");

  const int w = 160, h = 96;
  arrcoc::TextureConfig tc;
  tc.max_width = w;
  tc.max_height = h;
  std::unique_ptr<arrcoc::TextureBuilder> b;
  check(arrcoc::TextureBuilder::create(tc, &b).ok(), "create texture builder 160x96");
  cc = arrcoc::CascadeConfig();
  cc.max_width = w;
  cc.max_height = h;
  cc.num_seeds = 12;
  cc.top_clusters = 3;
  cc.patches_per_cluster = 4;
  check_status(arrcoc::ClusterCascade::create(cc, &c), StatusCode::kOk, "create cascade 160x96");
  std::vector<uint8_t> px(w * h * 3, 60);
  for (int y = 30; y < 60; ++y)
    for (int x = 100; x < 140; ++x) px[(y * w + x) * 3] = 250;  // a red block
  arrcoc::TextureView tex;
  arrcoc::CascadeView out;
  check(b->build(rgb_frame(px, w, h), &tex).ok(), "build for cascade");
  check_status(c->run(tex, nullptr), StatusCode::kInvalidArgument, "cascade with null out");
  check_status(c->run(tex, &out), StatusCode::kOk, "cascade run");
  check(out.capacity == 12 && out.kept_clusters[0] >= 0 && out.candidate_patch[0] >= 0, "cascade keeps a cluster and a patch");
  const int best = out.candidate_patch[0], bx = best % out.patch_grid_width, by = best / out.patch_grid_width;
  check(bx * 16 + 8 >= 96 && bx * 16 + 8 <= 144 && by * 16 + 8 >= 24 && by * 16 + 8 <= 64,
        "the best candidate patch lies on the salient block");
  tc.max_width = 400;
  tc.max_height = 300;
  std::unique_ptr<arrcoc::TextureBuilder> big;
  check(arrcoc::TextureBuilder::create(tc, &big).ok(), "create 400x300");
  std::vector<uint8_t> px2(400 * 300 * 3, 1);
  check(big->build(rgb_frame(px2, 400, 300), &tex).ok(), "build 400x300");
  check_status(c->run(tex, &out), StatusCode::kOutOfRange, "texture larger than the cascade", "exceeds the maximum");
}

// A 320x192 float32 texture of a noise frame (`frames` builds of it) copied into the caller's
// memory, and a cascade for that size: the cascade tests below rewrite planes of the copy.
struct CallerTexture {
  std::unique_ptr<arrcoc::ClusterCascade> cascade;
  std::vector<float> data;
  arrcoc::TextureView view;  // the builder's layout, over `data`
  int64_t n2 = 0;            // texels of level 2
  uint32_t state;
  uint32_t next() { return state = state * 1664525u + 1013904223u; }
  float* plane(arrcoc::Channel c, int level) { return data.data() + view.plane_offset(static_cast<int>(c), level); }
};

CallerTexture caller_texture(uint32_t seed, int frames) {
  const int w = 320, h = 192;
  CallerTexture t;
  t.state = seed;
  const auto b = float32_texture_builder(w, h);
  arrcoc::CascadeConfig cc;
  cc.max_width = w;
  cc.max_height = h;
  check(arrcoc::ClusterCascade::create(cc, &t.cascade).ok(), "create cascade 320x192");
  std::vector<uint8_t> px(w * h * 3);
  for (auto& v : px) v = static_cast<uint8_t>(t.next() >> 24);
  for (int f = 0; f < frames; ++f) check(b->build(rgb_frame(px, w, h), &t.view).ok(), "build a noise frame");
  t.data.assign(static_cast<const float*>(t.view.data), static_cast<const float*>(t.view.data) + t.view.total_elements());
  t.view.data = t.data.data();
  t.n2 = static_cast<int64_t>(t.view.levels[2].width) * t.view.levels[2].height;
  return t;
}

// A caller's TextureView that the stages cannot index safely is refused by each of them: a level
// layout that is not texture_layout()'s, level-0 planes they read that are not kept, texels not
// aligned to their size, an unknown dtype; a gather into misaligned memory too.
void test_caller_texture_views_are_checked() {
  using arrcoc::StatusCode;
  CallerTexture t = caller_texture(777u, 1);
  arrcoc::CascadeView out;
  check_status(t.cascade->run(t.view, &out), StatusCode::kOk, "the caller's copy of a built texture");
  std::unique_ptr<arrcoc::TokenAllocator> alloc;
  arrcoc::AllocatorConfig ac;
  ac.max_width = 320;
  ac.max_height = 192;
  check(arrcoc::TokenAllocator::create(ac, &alloc).ok(), "create allocator 320x192");
  std::unique_ptr<arrcoc::SemanticEncoder> enc;
  arrcoc::SemanticConfig sc;
  sc.max_width = 320;
  sc.max_height = 192;
  check(arrcoc::SemanticEncoder::create(sc, &enc).ok(), "create encoder 320x192");
  const float* features = nullptr;
  struct Case {
    const char* what;
    const char* mention;
    void (*spoil)(arrcoc::TextureView&);
  };
  const Case cases[] = {
      {"a level layout of another size", "level 4", [](arrcoc::TextureView& v) { v.levels[4].width += 1; }},
      {"level-0 motion not kept", "level 0 lacks", [](arrcoc::TextureView& v) { v.level0_kept &= ~(1u << 10); }},
      {"texels off their alignment", "aligned",
       [](arrcoc::TextureView& v) { v.data = static_cast<char*>(v.data) + 2; }},
      {"a dtype that is none", "not a DType", [](arrcoc::TextureView& v) { v.dtype = static_cast<arrcoc::DType>(9); }},
  };
  for (const Case& c : cases) {
    arrcoc::TextureView v = t.view;
    c.spoil(v);
    check_status(t.cascade->run(v, &out), StatusCode::kInvalidArgument, std::string("cascade: ") + c.what, c.mention);
    arrcoc::TokenPack pack;
    check_status(alloc->run(v, out, false, &pack), StatusCode::kInvalidArgument, std::string("allocator: ") + c.what,
                 c.mention);
    check_status(enc->encode(v, false, &features), StatusCode::kInvalidArgument, std::string("encoder: ") + c.what,
                 c.mention);
  }
  arrcoc::TokenPack pack;
  check_status(alloc->run(t.view, out, false, &pack), StatusCode::kOk, "allocator on the good view");
  std::vector<float> feats(4 * 12 * 20 + 1, 1.0f), gathered(static_cast<size_t>(pack.num_tokens) * 4 + 1);
  check_status(alloc->gather_features(feats.data(), 4, 12, 20, gathered.data()), StatusCode::kOk, "gather");
  const float* odd = reinterpret_cast<const float*>(reinterpret_cast<const char*>(feats.data()) + 1);
  check_status(alloc->gather_features(odd, 4, 12, 20, gathered.data()), StatusCode::kInvalidArgument,
               "gather from misaligned features", "aligned");
}

// The CPU's SLIC assignment takes 32-bit distance terms where the texture's colours allow it
// (slic_distance_narrow) and 64-bit ones elsewhere: a texture whose level-2 luminance is offset by 8
// (colours past 2^13 in fixed point, which only a texture written by the caller can hold) gives the
// same distances, so the same labels and candidates, through the 64-bit path.
void test_cascade_colour_range() {
  CallerTexture t = caller_texture(12345u, 2);  // k / 1024 + 8 is exact in float32
  float* lum = t.plane(arrcoc::Channel::kLuminance, 2);
  float* rg = t.plane(arrcoc::Channel::kOpponentRG, 2);
  float* by = t.plane(arrcoc::Channel::kOpponentBY, 2);
  for (int64_t i = 0; i < t.n2; ++i) {  // colours on the 1/1024 grid: exact after the offset too
    lum[i] = static_cast<float>(t.next() % 1025u) / 1024.0f;
    rg[i] = (static_cast<float>(t.next() % 2049u) - 1024.0f) / 1024.0f;
    by[i] = (static_cast<float>(t.next() % 2049u) - 1024.0f) / 1024.0f;
  }
  arrcoc::CascadeView out;
  check(t.cascade->run(t.view, &out).ok(), "cascade on colours in range");
  const std::vector<int32_t> labels(out.labels, out.labels + t.n2);
  const std::vector<int32_t> candidates(out.candidate_patch, out.candidate_patch + out.capacity);
  for (int64_t i = 0; i < t.n2; ++i) lum[i] += 8.0f;
  check(t.cascade->run(t.view, &out).ok(), "cascade on colours offset past 2^13");
  check(std::equal(labels.begin(), labels.end(), out.labels), "the same labels through the 64-bit distances");
  check(std::equal(candidates.begin(), candidates.end(), out.candidate_patch), "the same candidates");
  check(*std::max_element(labels.begin(), labels.end()) > 10, "labels use many seeds");
}

// A caller's texture whose planes the cascade reads leave their ranges -- negative, huge, infinite,
// NaN -- is read as the clamped values (NaN as 0): local contrast to [0, 0.5], colours to [-2, 14],
// saliency, eccentricity, motion and query similarity to [-1e4, 1e4] (cascade_math.h). The
// cascade's contrasts and choices are those of the same texture clamped by hand, with no undefined
// float -> int conversion and no int64 overflow in the distances or the sums.
void test_cascade_clamps_caller_texels() {
  using arrcoc::Channel;
  CallerTexture wild = caller_texture(777u, 1);
  std::vector<float> clamped = wild.data;
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const float odd[] = {-0.25f, -1e30f, 7.0f, 3e9f, inf, -inf, nan, 2e4f, -9.0f, 20.0f};
  struct Plane {
    Channel channel;
    int level;
    float lo, hi;
  };
  const Plane planes[] = {{Channel::kLocalContrast, 2, 0.0f, 0.5f},  {Channel::kLuminance, 2, -2.0f, 14.0f},
                          {Channel::kOpponentRG, 2, -2.0f, 14.0f},   {Channel::kOpponentBY, 2, -2.0f, 14.0f},
                          {Channel::kSaliency, 2, -1e4f, 1e4f},      {Channel::kEccentricity, 2, -1e4f, 1e4f},
                          {Channel::kMotion, 2, -1e4f, 1e4f},        {Channel::kSaliency, 4, -1e4f, 1e4f},
                          {Channel::kMotion, 4, -1e4f, 1e4f},        {Channel::kQuerySimilarity, 4, -1e4f, 1e4f}};
  for (const Plane& pl : planes) {
    const int64_t at = wild.view.plane_offset(static_cast<int>(pl.channel), pl.level);
    const int64_t texels = static_cast<int64_t>(wild.view.levels[pl.level].width) * wild.view.levels[pl.level].height;
    for (int64_t i = wild.next() % 5u; i < texels; i += 5) {
      const float v = odd[wild.next() % 10u];
      wild.data[at + i] = v;
      clamped[at + i] = std::isnan(v) ? 0.0f : std::min(std::max(v, pl.lo), pl.hi);
    }
  }
  arrcoc::TextureView view = wild.view;
  arrcoc::CascadeView out;
  view.data = clamped.data();
  check(wild.cascade->run(view, &out).ok(), "cascade on clamped planes");
  const std::vector<int32_t> labels(out.labels, out.labels + wild.n2);
  const std::vector<float> contrast(out.cluster_contrast, out.cluster_contrast + out.num_clusters);
  const std::vector<int32_t> candidates(out.candidate_patch, out.candidate_patch + out.capacity);
  check(wild.cascade->run(wild.view, &out).ok(), "cascade on planes out of range");
  check(std::equal(labels.begin(), labels.end(), out.labels), "the clamped labels");
  check(std::equal(contrast.begin(), contrast.end(), out.cluster_contrast), "the clamped contrasts");
  check(std::equal(candidates.begin(), candidates.end(), out.candidate_patch), "the clamped candidates");
  for (float c : contrast) check(std::isfinite(c), "finite contrasts");
}

// The allocator and the encoder on a caller's texture with odd texels (odd_texels.h), CPU backend.
void test_odd_texels_on_the_cpu() {
  CallerTexture t = caller_texture(31337u, 2);
  arrcoc_test::check_odd_texels_read_clamped(arrcoc::Device::kCPU, t.view, arrcoc_test::host_memory(), "cpu");
}

// A caller's CascadeView whose candidate slots repeat patches or name patches outside the grid:
// the allocator skips those slots (it used them as indices), and the rest are the candidates.
void test_allocator_skips_odd_candidate_slots() {
  CallerTexture t = caller_texture(2024u, 2);
  arrcoc::CascadeView cv;
  check(t.cascade->run(t.view, &cv).ok(), "cascade for the odd slots");
  const int n4 = t.view.levels[4].width * t.view.levels[4].height;
  std::vector<int32_t> slots(cv.candidate_patch, cv.candidate_patch + cv.capacity);
  int first = -1;
  for (int s = 0; s < cv.capacity; ++s) {
    if (slots[s] < 0) continue;
    if (first < 0) {
      first = slots[s];
    } else if (s % 3 == 0) {
      slots[s] = first;  // a repeat
    } else if (s % 3 == 1) {
      slots[s] = s % 2 ? n4 + s : -1 - s * 1000;  // outside the grid (-1 - ...: below padding's -1)
    }
  }
  cv.candidate_patch = slots.data();
  arrcoc::AllocatorConfig ac;
  ac.max_width = t.view.width;
  ac.max_height = t.view.height;
  std::unique_ptr<arrcoc::TokenAllocator> a;
  arrcoc::TokenPack pack;
  check(arrcoc::TokenAllocator::create(ac, &a).ok() && a->run(t.view, cv, false, &pack).ok(), "allocator on odd slots");
  std::vector<int32_t> seen;
  bool in_grid = true;
  for (int k = 0; k < pack.num_tokens; ++k)
    if (pack.kinds[k] == 1) {
      in_grid = in_grid && pack.patches[k] >= 0 && pack.patches[k] < n4;
      seen.push_back(pack.patches[k]);
    }
  std::sort(seen.begin(), seen.end());
  check(!seen.empty() && in_grid, "every saccade on a patch of the grid");
  check(std::adjacent_find(seen.begin(), seen.end()) == seen.end(), "no patch holds two saccades");
  // A view whose capacity is negative or whose slots are missing is refused (a negative capacity
  // became a huge byte count), and the last frame's tokens stay readable.
  for (int bad_capacity : {-1, -1000}) {
    arrcoc::CascadeView broken = cv;
    broken.capacity = bad_capacity;
    arrcoc::TokenPack unused;
    check_status(a->run(t.view, broken, false, &unused), arrcoc::StatusCode::kInvalidArgument, "negative capacity",
                 "is negative");
  }
  arrcoc::CascadeView no_slots = cv;
  no_slots.candidate_patch = nullptr;
  arrcoc::TokenPack unused;
  check_status(a->run(t.view, no_slots, false, &unused), arrcoc::StatusCode::kInvalidArgument, "no candidate slots", "null");
  arrcoc::TokenPack again;
  check(a->copy_to_host(&again).ok() && again.num_tokens == pack.num_tokens, "the last frame's tokens after a refusal");
}

void test_pipeline_end_to_end() {
  using arrcoc::StatusCode;
  arrcoc::PipelineConfig pc;
  pc.texture.max_width = 320;
  pc.texture.max_height = 240;
  pc.allocator.total_budget = 100;  // cannot hold 256 gestalt tokens
  std::unique_ptr<arrcoc::Pipeline> pipe;
  check_status(arrcoc::Pipeline::create(pc, &pipe), StatusCode::kOutOfRange, "pipeline with a tiny budget",
               "total_budget");
  pc.allocator.total_budget = 60000;
  check_status(arrcoc::Pipeline::create(pc, &pipe), StatusCode::kOk, "create pipeline 320x240");
  if (!pipe) return;
  std::vector<uint8_t> px(320 * 240 * 3, 80);
  arrcoc::PipelineResult r;
  for (int f = 0; f < 3; ++f) {
    for (int y = 100; y < 132; ++y)
      for (int x = 40 + 10 * f; x < 72 + 10 * f; ++x) px[(y * 320 + x) * 3 + 1] = 250;
    check_status(pipe->process(rgb_frame(px, 320, 240), nullptr, &r), StatusCode::kOk, "process frame");
  }
  const arrcoc::TokenPack& t = r.tokens;
  check(t.num_tokens == 256 + 273 && t.num_gestalt == 256, "529 tokens, 256 gestalt");
  long long total = 0;
  int saccades = 0;
  for (int i = 0; i < t.num_tokens; ++i) {
    total += t.budgets[i];
    saccades += t.kinds[i] == 1;
  }
  check(total <= 60000, "total budget respected");
  check(saccades == *t.num_saccades && saccades > 0, "saccades placed and counted");
  check(r.stage_ms[0] > 0.0 && r.stage_ms[2] > 0.0, "stage timings measured");
  std::vector<float> q(static_cast<size_t>(t.patch_grid_width) * t.patch_grid_height, 0.0f);
  q[0] = NAN;
  const std::vector<uint8_t> dark(320 * 240 * 3, 0);
  check_status(pipe->process(rgb_frame(dark, 320, 240), q.data(), &r), StatusCode::kInvalidArgument,
               "NaN in the query map", "query_map contains NaN");  // was: named set_patch_channel
  {
    // The map is refused before the frame is built (it was built, and the refused dark frame became
    // the next one's previous frame): the next frame's tokens equal a twin's that never saw the call.
    std::unique_ptr<arrcoc::Pipeline> twin;
    check_status(arrcoc::Pipeline::create(pc, &twin), StatusCode::kOk, "create the twin pipeline");
    std::vector<uint8_t> same(320 * 240 * 3, 80);
    arrcoc::PipelineResult a, b;
    for (int f = 0; f < 3; ++f) {  // the frames pipe accepted, in order
      for (int y = 100; y < 132; ++y)
        for (int x = 40 + 10 * f; x < 72 + 10 * f; ++x) same[(y * 320 + x) * 3 + 1] = 250;
      check_status(twin->process(rgb_frame(same, 320, 240), nullptr, &b), StatusCode::kOk, "twin frame");
    }
    std::vector<uint8_t> moved(px);
    for (int y = 100; y < 132; ++y)
      for (int x = 80; x < 112; ++x) moved[(y * 320 + x) * 3 + 1] = 250;
    check_status(pipe->process(rgb_frame(moved, 320, 240), nullptr, &a), StatusCode::kOk, "frame after the refusal");
    check_status(twin->process(rgb_frame(moved, 320, 240), nullptr, &b), StatusCode::kOk, "twin's next frame");
    const size_t n = static_cast<size_t>(a.tokens.num_tokens);
    check(a.tokens.num_tokens == b.tokens.num_tokens && *a.tokens.scene_cut == *b.tokens.scene_cut &&
              std::equal(a.tokens.positions, a.tokens.positions + 2 * n, b.tokens.positions) &&
              std::equal(a.tokens.budgets, a.tokens.budgets + n, b.tokens.budgets),
          "a refused query map leaves the pipeline's history as it was");
  }
  arrcoc::BalanceWeights w = arrcoc::default_balance_weights();
  w.mix[1] = INFINITY;
  check_status(pipe->set_weights(w), StatusCode::kInvalidArgument, "infinite weights", "NaN or inf");
}

void test_exemplar_layout() {
  using arrcoc::StatusCode;
  const int w = 128, h = 96;
  const auto b = float32_texture_builder(w, h);
  arrcoc::SemanticConfig sc;
  sc.max_width = w;
  sc.max_height = h;
  std::unique_ptr<arrcoc::SemanticEncoder> e;
  check(arrcoc::SemanticEncoder::create(sc, &e).ok(), "create semantic encoder");
  std::vector<uint8_t> px(w * h * 3, 90);
  for (int y = 40; y < 64; ++y)
    for (int x = 24; x < 48; ++x) px[(y * w + x) * 3 + 2] = 240;  // a blue square
  arrcoc::TextureView tex;
  check(b->build(rgb_frame(px, w, h), &tex).ok(), "build");

  const float* cells = nullptr;
  check_status(e->encode_cells(tex, 12, &cells), StatusCode::kInvalidArgument, "cell_px 12", "8, 16 or 32");
  check_status(e->encode_cells(tex, 8, &cells), StatusCode::kOk, "encode 8-px cells");
  // The template: the square and a cell of background around it, cut from the frame's own cells.
  const int wc = w / 8, hc = h / 8, tw = 5, th = 5, x0 = 2, y0 = 4;
  std::vector<float> t(32 * tw * th);
  for (int k = 0; k < 32; ++k)
    for (int i = 0; i < th; ++i)
      for (int j = 0; j < tw; ++j) t[(k * th + i) * tw + j] = cells[(k * hc + y0 + i) * wc + x0 + j];
  arrcoc::LayoutTemplate lt;
  lt.descriptors = t.data();
  lt.width = tw;
  lt.height = th;
  lt.cell_px = 8;
  arrcoc::LayoutTemplate bad = lt;
  bad.cell_px = 4;
  check_status(e->set_layout(&bad, 1), StatusCode::kInvalidArgument, "template cell_px 4", "cell_px 4");
  bad = lt;
  bad.width = 9;
  bad.height = 8;
  check_status(e->set_layout(&bad, 1), StatusCode::kOutOfRange, "72-cell template", "at most 64 cells");
  check_status(e->set_layout(&lt, 5), StatusCode::kOutOfRange, "five templates", "0..4");
  check_status(e->set_layout(nullptr, 1), StatusCode::kInvalidArgument, "null templates", "null");
  std::vector<float> nan_t = t;
  nan_t[7] = NAN;
  bad = lt;
  bad.descriptors = nan_t.data();
  check_status(e->set_layout(&bad, 1), StatusCode::kInvalidArgument, "NaN in a template", "NaN");
  check_status(e->set_layout(&lt, 1), StatusCode::kOk, "set a layout");

  const float* feats = nullptr;
  check(e->encode(tex, false, &feats).ok(), "encode patches");
  std::vector<float> query(32, 0.0f);
  query[0] = 1.0f;  // a query vector far from everything: the layout decides channel 33
  check_status(e->write_channels(tex, feats, 32, query.data(), 1, nullptr, nullptr), StatusCode::kOk, "write");
  // The best patch of channel 33 lies on the square (patches (1..2, 2..3)), and the template
  // matches itself there (NCC 1: channel 33 >= 0.7).
  int best = 0;
  const int w4 = tex.levels[4].width, h4 = tex.levels[4].height;
  for (int q = 1; q < w4 * h4; ++q)
    if (texel(tex, arrcoc::Channel(33), 4, q % w4, q / w4) > texel(tex, arrcoc::Channel(33), 4, best % w4, best / w4))
      best = q;
  const float top = texel(tex, arrcoc::Channel(33), 4, best % w4, best / w4);
  check(best % w4 >= 1 && best % w4 <= 3 && best / w4 >= 2 && best / w4 <= 4 && top > 0.69f,
        "channel 33 peaks on the exemplar's square: patch " + std::to_string(best) + " value " + std::to_string(top));
  check_status(e->set_layout(nullptr, 0), StatusCode::kOk, "remove the layout");
}

}  // namespace

int main() {
  std::printf("arrcoc %s, CUDA built: %s, CUDA devices: %d\n", arrcoc::version(),
              arrcoc::built_with_cuda() ? "yes" : "no", arrcoc::cuda_device_count());
  test_config_errors();
  test_create_refuses_what_process_would();
  test_frame_errors();
  test_values_and_layout();
  test_motion_vectors();
  test_cascade();
  test_cascade_colour_range();
  test_caller_texture_views_are_checked();
  test_cascade_clamps_caller_texels();
  test_odd_texels_on_the_cpu();
  test_allocator_skips_odd_candidate_slots();
  test_pipeline_end_to_end();
  test_exemplar_layout();
  return arrcoc_test::finish();
}
