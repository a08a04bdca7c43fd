// Builds one texture through the installed public API and prints a few facts.
#include <cstdio>
#include <memory>
#include <vector>

#include <arrcoc/arrcoc.h>

int main() {
  arrcoc::TextureConfig config;
  config.max_width = 320;
  config.max_height = 240;
  std::unique_ptr<arrcoc::TextureBuilder> builder;
  arrcoc::Status s = arrcoc::TextureBuilder::create(config, &builder);
  if (!s.ok()) {
    std::fprintf(stderr, "create failed: %s\n", s.message().c_str());
    return 1;
  }
  std::vector<uint8_t> pixels(320 * 240 * 3);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 7 % 256);
  arrcoc::FrameView frame;
  frame.planes[0] = pixels.data();
  frame.row_stride[0] = 320 * 3;
  frame.width = 320;
  frame.height = 240;
  frame.format = arrcoc::PixelFormat::kRGB24;
  arrcoc::TextureView tex;
  s = builder->build(frame, &tex);
  if (!s.ok()) {
    std::fprintf(stderr, "build failed: %s\n", s.message().c_str());
    return 1;
  }
  frame.width = 4000;  // too large: an error status, not an exception
  s = builder->build(frame, &tex);
  std::printf("arrcoc %s: texture %dx%d, %lld elements, oversized frame -> %s\n", arrcoc::version(), tex.width,
              tex.height, static_cast<long long>(tex.total_elements()), arrcoc::status_code_name(s.code()));
  return s.code() == arrcoc::StatusCode::kOutOfRange ? 0 : 1;
}
