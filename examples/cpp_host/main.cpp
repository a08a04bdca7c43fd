// A C++ host: synthetic frames (a bright square moving over a textured background) through the
// whole arrcoc pipeline; prints per-frame timings and the top tokens. No Python, no exceptions.
//   arrcoc_cpp_host [frames=10] [width=640] [height=480] [cpu|cuda]
#include <arrcoc/arrcoc.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <vector>

int main(int argc, char** argv) {
  const int frames = argc > 1 ? std::atoi(argv[1]) : 10;
  const int width = argc > 2 ? std::atoi(argv[2]) : 640;
  const int height = argc > 3 ? std::atoi(argv[3]) : 480;
  const bool cuda = argc > 4 && std::strcmp(argv[4], "cuda") == 0;

  arrcoc::PipelineConfig config;
  config.texture.max_width = width;
  config.texture.max_height = height;
  config.texture.device = cuda ? arrcoc::Device::kCUDA : arrcoc::Device::kCPU;
  config.synchronize_stages = true;
  std::unique_ptr<arrcoc::Pipeline> pipeline;
  arrcoc::Status s = arrcoc::Pipeline::create(config, &pipeline);
  if (!s.ok()) {
    std::fprintf(stderr, "create failed (%s): %s\n", arrcoc::status_code_name(s.code()), s.message().c_str());
    return 1;
  }
  std::printf("arrcoc %s, CUDA built: %s, GPUs: %d, running on %s\n", arrcoc::version(),
              arrcoc::built_with_cuda() ? "yes" : "no", arrcoc::cuda_device_count(), cuda ? "cuda" : "cpu");

  std::vector<uint8_t> pixels(static_cast<size_t>(width) * height * 3);
  std::vector<float> host(2 * 1024);
  for (int f = 0; f < frames; ++f) {
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x) {
        uint8_t* p = &pixels[(static_cast<size_t>(y) * width + x) * 3];
        const bool square = x >= 40 + 8 * f && x < 104 + 8 * f && y >= height / 2 && y < height / 2 + 64;
        p[0] = square ? 250 : static_cast<uint8_t>(60 + ((x / 8 + y / 8) % 2) * 40);
        p[1] = square ? 230 : static_cast<uint8_t>(80 + (x * 3 % 17));
        p[2] = square ? 40 : 90;
      }
    arrcoc::FrameView frame;
    frame.planes[0] = pixels.data();
    frame.row_stride[0] = 3 * width;
    frame.width = width;
    frame.height = height;
    frame.format = arrcoc::PixelFormat::kRGB24;
    arrcoc::PipelineResult r;
    s = pipeline->process(frame, nullptr, &r);
    if (!s.ok()) {
      std::fprintf(stderr, "frame %d failed: %s\n", f, s.message().c_str());
      return 1;
    }
    // On CUDA r.tokens lives on the GPU: one copy into the pipeline's page-locked memory and one
    // wait bring it here (on the CPU copy_to_host gives the pack itself).
    arrcoc::TokenPack t;
    s = pipeline->copy_to_host(&t);
    if (!s.ok()) {
      std::fprintf(stderr, "frame %d: copy_to_host failed: %s\n", f, s.message().c_str());
      return 1;
    }
    int best = -1;
    for (int i = t.num_gestalt; i < t.num_tokens; ++i)
      if (t.kinds[i] == 1 && (best < 0 || t.scores[i] > t.scores[best])) best = i;
    std::printf("frame %d: texture %.2f ms, cascade %.2f ms, allocation %.2f ms; %d saccades%s", f, r.stage_ms[0],
                r.stage_ms[1], r.stage_ms[2], *t.num_saccades, *t.scene_cut ? " (scene cut)" : "");
    if (best >= 0)
      std::printf("; top token at (%.0f, %.0f), level %d, budget %d, score %.3f", t.positions[2 * best],
                  t.positions[2 * best + 1], t.levels[best], t.budgets[best], t.scores[best]);
    std::printf("\n");
  }
  return 0;
}
