// Procedural shapes: captions and their parser, the held-out split, rendering and the dataset.
#include "data/shapes.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <unordered_map>

#include "core/errors.h"
#include "core/rng.h"

namespace fluxtrain {

namespace {

constexpr std::array<const char*, kNumPositions> kPositionPhrases{
    "in the top left",    "at the top",    "in the top right",
    "on the left",        "in the center", "on the right",
    "in the bottom left", "at the bottom", "in the bottom right"};

// Lower-case words joined by single spaces; "centre" spelled "center".
std::string normalise_caption(const std::string& text) {
  std::string out, word;
  auto flush = [&] {
    if (word.empty()) return;
    if (word == "centre") word = "center";
    if (!out.empty()) out.push_back(' ');
    out += word;
    word.clear();
  };
  for (unsigned char c : text) {
    if (std::isalnum(c)) {
      word.push_back(static_cast<char>(std::tolower(c)));
    } else {
      flush();
    }
  }
  flush();
  return out;
}

void check_attributes(const ShapeAttributes& a) {
  if (a.colour < 0 || a.colour >= kNumColours || a.shape < 0 || a.shape >= kNumShapes ||
      a.position < 0 || a.position >= kNumPositions) {
    throw std::invalid_argument(
        fmt::format("shape attributes out of range: colour {}, shape {}, "
                    "position {}",
                    a.colour, a.shape, a.position));
  }
}

void check_image_size(int64_t image_size) {
  if (image_size < 8) user_error("shapes image_size {}: expected an integer >= 8", image_size);
}

// Split tags mixed into the dataset seed so that train and val never share a generator.
uint64_t split_tag(const std::string& split) {
  return split == "train" ? 0x747261696eull : 0x76616cull;
}

}  // namespace

ShapeAttributes ShapeAttributes::from_index(int index) {
  if (index < 0 || index >= kNumShapeCombinations) {
    throw std::out_of_range(
        fmt::format("shape combination index {} not in [0, {})", index, kNumShapeCombinations));
  }
  return {index / (kNumShapes * kNumPositions), (index / kNumPositions) % kNumShapes,
          index % kNumPositions};
}

std::vector<ShapeAttributes> all_shape_combinations() {
  std::vector<ShapeAttributes> all;
  for (int i = 0; i < kNumShapeCombinations; ++i) all.push_back(ShapeAttributes::from_index(i));
  return all;
}

// A lattice rule: (colour + 2 shape + 4 position) % 7 == 0 holds out 23 of 162 (14%). For any
// fixed pair of attributes the third ranges over values whose terms are distinct mod 7, so at most
// 2 of 9 positions, 1 of 3 shapes and 1 of 6 colours are held out: every colour-shape,
// colour-position and shape-position pair is still trained; validation asks for new triples.
bool is_held_out(const ShapeAttributes& a) {
  return (a.colour + 2 * a.shape + 4 * a.position) % 7 == 0;
}

std::string shape_caption(const ShapeAttributes& a) {
  check_attributes(a);
  return fmt::format("a {} {} {}", kColourNames[a.colour], kShapeNames[a.shape],
                     kPositionPhrases[a.position]);
}

std::optional<ShapeAttributes> parse_caption(const std::string& caption) {
  static const auto table = [] {
    std::unordered_map<std::string, ShapeAttributes> t;
    for (const auto& a : all_shape_combinations()) t.emplace(shape_caption(a), a);
    return t;
  }();
  auto it = table.find(normalise_caption(caption));
  if (it == table.end()) return std::nullopt;
  return it->second;
}

torch::Tensor render_shape(const ShapeAttributes& a, int64_t image_size, at::Generator& gen) {
  check_attributes(a);
  check_image_size(image_size);
  const double s = static_cast<double>(image_size);
  auto u = torch::rand({3}, gen, torch::kFloat64);
  const double u_size = u[0].item<double>(), u_x = u[1].item<double>(), u_y = u[2].item<double>();

  // Large shapes with little jitter: a circle and a square of the same width differ by their
  // corners, 21% of the square's area, which is what the model has to learn from a caption.
  const double d = (0.33 + 0.03 * u_size) * s;  // circle diameter; the others scale with it
  const int row = a.position / 3, col = a.position % 3;
  double cx = (col + 0.5) * s / 3 + (2 * u_x - 1) * 0.02 * s;  // target centroid
  double cy = (row + 0.5) * s / 3 + (2 * u_y - 1) * 0.02 * s;

  // Extents from the centroid: left/right half width, up, down.
  const double square_side = d, tri_base = 1.05 * d, tri_height = 0.95 * d;
  double half_w = d / 2, up = d / 2, down = d / 2;
  if (a.shape == 1) {
    half_w = up = down = square_side / 2;
  } else if (a.shape == 2) {
    half_w = tri_base / 2;
    up = 2 * tri_height / 3;  // a triangle's centroid lies a third of the way up from its base
    down = tri_height / 3;
  }
  const double margin = std::clamp(1.0, 0.04 * s, 0.0625 * s);  // 1 px unless S < 16 or S > 25
  cx = std::clamp(cx, half_w + margin, s - half_w - margin);
  cy = std::clamp(cy, up + margin, s - down - margin);

  // Coverage by 4x4 supersampling: sample points at pixel + (k + 0.5) / 4.
  constexpr int kSub = 4;
  const double half_side = square_side / 2, slope = tri_base / 2 / tri_height, r2 = d * d / 4;
  auto inside = [&](double x, double y) {  // relative to the centroid
    if (a.shape == 0) return x * x + y * y <= r2;
    if (a.shape == 1) return std::abs(x) <= half_side && std::abs(y) <= half_side;
    return y <= down && std::abs(x) <= (y + up) * slope;  // apex at y = -up
  };
  const auto& rgb = kColourRGB[a.colour];
  auto image = torch::empty({3, image_size, image_size}, torch::kFloat32);  // [3, S, S]
  float* out = image.data_ptr<float>();
  const int64_t plane = image_size * image_size;
  for (int64_t py = 0; py < image_size; ++py) {
    for (int64_t px = 0; px < image_size; ++px) {
      int hits = 0;
      for (int sy = 0; sy < kSub; ++sy)
        for (int sx = 0; sx < kSub; ++sx)
          hits += inside(px + (sx + 0.5) / kSub - cx, py + (sy + 0.5) / kSub - cy);
      const float coverage = static_cast<float>(hits) / (kSub * kSub);
      for (int c = 0; c < 3; ++c) out[c * plane + py * image_size + px] = 2 * rgb[c] * coverage - 1;
    }
  }
  return image;
}

ShapesDataset::ShapesDataset(std::string split, int64_t image_size, uint64_t seed, int64_t size)
    : split_(std::move(split)), image_size_(image_size), seed_(seed), size_(size) {
  if (split_ != "train" && split_ != "val") {
    user_error("shapes split '{}': expected train or val", split_);
  }
  check_image_size(image_size);
  if (size < 1) user_error("shapes dataset size {}: expected an integer >= 1", size);
  split_seed_ = seed ^ mix64(split_tag(split_));
  combinations_ = split_ == "train" ? training_combinations() : held_out_combinations();
}

ShapeExample ShapesDataset::shape_example(int64_t index) const {
  if (index < 0 || index >= size_) {
    throw std::out_of_range(fmt::format("shapes {} index {} not in [0, {})", split_, index, size_));
  }
  const auto n = static_cast<int64_t>(combinations_.size());
  ShapeAttributes attrs;
  if (split_ == "train") {
    // Pass p = index / n visits every training combination once, in its own random order.
    auto shuffle = make_generator(split_seed_, RngStream::kShuffle, index / n);
    auto order = torch::randperm(n, shuffle, torch::kInt64);
    attrs = combinations_[order[index % n].item<int64_t>()];
  } else {
    attrs = combinations_[index % n];
  }
  auto gen = make_generator(split_seed_, RngStream::kData, index);
  return {render_shape(attrs, image_size_, gen), shape_caption(attrs), attrs,
          index % kValidationTimesteps};
}

Example ShapesDataset::get(int64_t index) const {
  ShapeExample ex = shape_example(index);
  Example out;
  out.image = std::move(ex.image);
  out.caption = std::move(ex.caption);
  out.timestep_index = split_ == "val" ? ex.timestep_index : -1;
  out.key = fmt::format("shapes/{}/{}", split_, index);
  return out;
}

std::string ShapesDataset::name() const {
  return fmt::format("shapes ({}, {} examples of {} combinations, {} px)", split_, size_,
                     combinations_.size(), image_size_);
}

std::optional<std::vector<std::string>> ShapesDataset::captions() const {
  std::vector<std::string> out;
  for (const auto& c : combinations_) out.push_back(shape_caption(c));
  out.emplace_back();
  return out;
}

std::vector<ShapeAttributes> ShapesDataset::held_out_combinations() {
  std::vector<ShapeAttributes> out;
  for (const auto& a : all_shape_combinations())
    if (is_held_out(a)) out.push_back(a);
  return out;
}

std::vector<ShapeAttributes> ShapesDataset::training_combinations() {
  std::vector<ShapeAttributes> out;
  for (const auto& a : all_shape_combinations())
    if (!is_held_out(a)) out.push_back(a);
  return out;
}

std::vector<std::string> ShapesDataset::held_out_captions() {
  std::vector<std::string> out;
  for (const auto& a : held_out_combinations()) out.push_back(shape_caption(a));
  return out;
}

}  // namespace fluxtrain
