// Procedural shapes, the built-in dataset: one filled, coloured shape on a black background,
// captioned with its colour, shape and 3x3 grid position ("a red circle in the top left"). A fixed
// set of combinations is held out of training and used only for validation.
#pragma once
#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace fluxtrain {

constexpr int kNumColours = 6;
constexpr int kNumShapes = 3;
constexpr int kNumPositions = 9;  // 3x3 grid, row-major from the top left
constexpr int kNumShapeCombinations = kNumColours * kNumShapes * kNumPositions;  // 162

inline constexpr std::array<const char*, kNumColours> kColourNames{"red",    "green",   "blue",
                                                                   "yellow", "magenta", "cyan"};
// Saturated palette, channels in [0, 1].
inline constexpr std::array<std::array<float, 3>, kNumColours> kColourRGB{
    {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {1, 1, 0}, {1, 0, 1}, {0, 1, 1}}};
inline constexpr std::array<const char*, kNumShapes> kShapeNames{"circle", "square", "triangle"};
inline constexpr std::array<const char*, kNumPositions> kPositionNames{
    "top left", "top",         "top right", "left",        "center",
    "right",    "bottom left", "bottom",    "bottom right"};

struct ShapeAttributes {
  int colour = 0;    // index into kColourNames
  int shape = 0;     // index into kShapeNames
  int position = 0;  // index into kPositionNames: row * 3 + column

  // 0 .. 161, colour-major.
  int index() const { return (colour * kNumShapes + shape) * kNumPositions + position; }
  static ShapeAttributes from_index(int index);
  bool operator==(const ShapeAttributes& o) const {
    return colour == o.colour && shape == o.shape && position == o.position;
  }
  bool operator!=(const ShapeAttributes& o) const { return !(*this == o); }
};

// All 162 combinations in index order.
std::vector<ShapeAttributes> all_shape_combinations();

// True for the combinations reserved for validation (fixed, independent of any seed).
bool is_held_out(const ShapeAttributes& attrs);

// "a red circle in the top left", "a blue square at the top", "a green triangle on the left",
// "a cyan circle in the center", ... (corners and center: "in the", top/bottom: "at the",
// left/right: "on the").
std::string shape_caption(const ShapeAttributes& attrs);

// Inverse of shape_caption, insensitive to case, punctuation and spacing ("centre" is accepted);
// nullopt for anything else.
std::optional<ShapeAttributes> parse_caption(const std::string& caption);

// One shape, float32 [3, S, S] in [-1, 1] on black (-1), anti-aliased (4x4 supersampling). Random
// jitter from gen: size (circle diameter 0.33-0.36 S, about a grid cell; square side 1x, triangle
// base 1.05x and height 0.95x that) and the centroid within +-0.02 S of its cell's centre, moved
// inward where the shape would come closer than 1 px (0.04 S above 25 px) to the image border; the
// centroid stays >= 0.11 S (0.09 S at S = 16) inside its cell, except for triangles in the top
// row, whose centroid sits low: >= 0.065 S (0.04 S at S = 16). Triangles point up. Meant for
// S >= 16 (judged exactly from 32 up); throws UserError for image_size < 8.
torch::Tensor render_shape(const ShapeAttributes& attrs, int64_t image_size, at::Generator& gen);

struct ShapeExample {
  torch::Tensor image;  // [3, S, S] float32 in [-1, 1]
  std::string caption;
  ShapeAttributes attrs;
  int64_t timestep_index = 0;  // index % kValidationTimesteps
};

// Split "train" draws only training combinations, each pass of len(combinations) indices visiting
// every one once in a random order; split "val" cycles through the held-out combinations in order.
// Every example is a pure function of (seed, split, index).
class ShapesDataset : public Dataset {
 public:
  // Throws UserError for an unknown split, image_size < 8 or size < 1.
  ShapesDataset(std::string split, int64_t image_size, uint64_t seed, int64_t size);

  int64_t size() const override { return size_; }
  int64_t image_size() const { return image_size_; }
  uint64_t seed() const { return seed_; }
  const std::string& split() const { return split_; }
  // The combinations this split draws from.
  const std::vector<ShapeAttributes>& combinations() const { return combinations_; }

  // index in [0, size); throws std::out_of_range otherwise.
  ShapeExample shape_example(int64_t index) const;
  // Dataset: the image and caption of shape_example(index); validation examples carry their
  // timestep index (index mod 8), training examples -1.
  Example get(int64_t index) const override;
  std::string name() const override;
  // The captions of this split's combinations (and "" for caption dropout's empty prompt).
  std::optional<std::vector<std::string>> captions() const override;
  // Procedural: example i is already a random draw (each pass visits the combinations in its
  // own random order), so the sampler keeps index order.
  bool wants_shuffle() const override { return false; }

  static std::vector<ShapeAttributes> held_out_combinations();
  static std::vector<ShapeAttributes> training_combinations();
  static std::vector<std::string> held_out_captions();

 private:
  std::string split_;
  int64_t image_size_;
  uint64_t seed_;
  int64_t size_;
  uint64_t split_seed_;  // seed with the split mixed in
  std::vector<ShapeAttributes> combinations_;
};

}  // namespace fluxtrain
