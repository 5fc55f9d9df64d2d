// Shape judge: reads colour, shape and grid position back from the pixels of a (generated) shapes
// image, and scores a batch of samples against the attributes their captions asked for.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

#include "data/shapes.h"

namespace fluxtrain {

struct ShapeJudgement {
  int colour = -1, shape = -1, position = -1;  // -1 when not found
  bool found = false;
  // Measurements behind the verdict (for reports and debugging).
  double contrast = 0;  // foreground level minus background level, in [0, 1]
  double fill = 0;      // area / (width x height): square ~1, circle ~0.79, triangle ~0.5
  double skew = 0;      // vertical skewness of the mass: ~ -0.57 for an upward triangle, else ~0
  double centre_x = 0, centre_y = 0;  // centroid in pixels
  int64_t pixels = 0;                 // pixels in the foreground blob

  bool matches(const ShapeAttributes& a) const {
    return found && colour == a.colour && shape == a.shape && position == a.position;
  }
};

// image: [3, S, S] in [-1, 1], any dtype or device. Intensity (max channel) is mapped to soft
// coverage between the background level (median) and the foreground level (99.5th percentile);
// the largest 8-connected blob of coverage >= 0.5 is the shape. Colour: the palette entry nearest
// to the chromaticity (RGB / max) of the blob's core. The blob is then measured again on the
// intensity along that colour (mean of its lit channels, less noisy). Position: the grid cell of
// the centroid. Shape: fill = area / (width x height) of the soft column/row projections, which
// blur preserves, and the vertical skewness of the mass (an upward triangle sits low): triangle,
// then square or circle by fill. Not found when the contrast is below 0.2 or the blob has fewer
// than 3 pixels. Exact on renders at S >= 32 even blurred (sigma <= 1 px) or noisy (sigma 0.1).
ShapeJudgement judge_shape(const torch::Tensor& image);

struct ShapeScore {
  int64_t count = 0;
  double found = 0, colour = 0, position = 0, shape = 0;  // rates in [0, 1]; not found = wrong
  double all = 0;                                         // all three attributes right
  std::vector<ShapeJudgement> judgements;

  nlohmann::json to_json() const;  // the rates and count (no per-sample judgements)
};

// images: [N, 3, S, S] in [-1, 1]; wanted: N attribute sets.
ShapeScore score_samples(const torch::Tensor& images, const std::vector<ShapeAttributes>& wanted);

}  // namespace fluxtrain
