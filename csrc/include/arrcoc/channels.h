// The 40 channels of the texture array and the mip level each one is stored from.
// docs/CHANNELS.md gives the formula of every channel; keep the two in step.
#pragma once

#include <cstdint>

#include "arrcoc/export.h"

namespace arrcoc {

constexpr int kNumChannels = 40;
constexpr int kNumLevels = 5;       // mip levels 0..4, each half the size of the one above
constexpr int kPatchLevel = 4;      // level whose texels are 16x16-pixel patches

enum class Channel : int32_t {
  kRed = 0,
  kGreen = 1,
  kBlue = 2,
  kLuminance = 3,
  kLocalContrast = 4,
  kEccentricity = 5,
  kGradX = 6,
  kGradY = 7,
  kGradMagnitude = 8,
  kHighPass = 9,
  kMotion = 10,
  kSaliency = 11,
  kEdgeDensity = 12,
  kClusterId = 13,
  kEntropy = 14,
  kOpponentRG = 15,
  kOpponentBY = 16,
  kSemantic0 = 17,  // 17..32: 16 PCA components of semantic features
  kSemantic15 = 32,
  kQuerySimilarity = 33,
  kCachedRelevance = 34,
  kMotionX = 35,
  kMotionY = 36,
  kInformationScore = 37,
  kSalienceScore = 38,
  kRelevance = 39,
};

// The finest mip level at which a channel is stored. Channels that are only defined on a
// coarser grid (saliency is a centre-surround measure, cluster ids come from a coarse
// clustering, semantics/scores/motion vectors live on the 16-pixel patch grid) are not
// stored at finer levels; sampling them finer clamps to this level.
constexpr int channel_base_level(int c) {
  return c == 11 ? 1 : c == 13 ? 2 : (c >= 17) ? 4 : 0;
}

// "red", "luminance", "semantic_3", ...; nullptr for an index outside 0..39.
ARRCOC_API const char* channel_name(int c) noexcept;

}  // namespace arrcoc
