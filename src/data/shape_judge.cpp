// Shape judge: foreground blob extraction and the colour, position and shape decisions.
#include "data/shape_judge.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace fluxtrain {

namespace {

constexpr double kMinContrast = 0.2;
constexpr int64_t kMinPixels = 3;
constexpr double kDeadZone = 0.1;
// Triangle when skew + 0.5 (fill - 0.8) < -0.17 (an upward triangle's mass sits low: skew ~ -0.57,
// fill ~ 0.5; blur raises both, so the two cues are combined) or when fill < 0.66; otherwise
// square when fill >= 0.87, else circle. At S = 32 the combined score is <= -0.27 for triangles and
// >= -0.05 for the others, and fill <= 0.84 for circles and >= 0.88 for squares, across jitter,
// blur (sigma 0.6 and 1 px) and noise (sigma 0.1).
constexpr double kTriangleScore = -0.17;
constexpr double kTriangleFill = 0.66;
constexpr double kSquareFill = 0.87;

// Largest (by summed weight) 8-connected blob of pixels with weight >= threshold; returns its
// pixel indices.
std::vector<int64_t> largest_blob(const std::vector<float>& weight, int64_t size, float threshold) {
  std::vector<int8_t> seen(weight.size(), 0);
  std::vector<int64_t> best, blob, stack;
  double best_mass = -1;
  for (int64_t start = 0; start < static_cast<int64_t>(weight.size()); ++start) {
    if (seen[start] || weight[start] < threshold) continue;
    blob.clear();
    stack.assign(1, start);
    seen[start] = 1;
    double mass = 0;
    while (!stack.empty()) {
      const int64_t p = stack.back();
      stack.pop_back();
      blob.push_back(p);
      mass += weight[p];
      const int64_t y = p / size, x = p % size;
      for (int64_t dy = -1; dy <= 1; ++dy) {
        for (int64_t dx = -1; dx <= 1; ++dx) {
          const int64_t ny = y + dy, nx = x + dx;
          if (ny < 0 || nx < 0 || ny >= size || nx >= size) continue;
          const int64_t q = ny * size + nx;
          if (seen[q] || weight[q] < threshold) continue;
          seen[q] = 1;
          stack.push_back(q);
        }
      }
    }
    if (mass > best_mass) {
      best_mass = mass;
      best = blob;
    }
  }
  return best;
}

// The foreground blob of one intensity map (values in [0, 1]) and its geometry.
struct Blob {
  bool found = false;
  double contrast = 0, fill = 0, skew = 0, centre_x = 0, centre_y = 0;
  std::vector<int64_t> pixels;  // the blob's pixels (coverage >= 0.5)
  std::vector<float> cover;     // [S*S] soft coverage
};

Blob measure_blob(const std::vector<float>& intensity, int64_t size) {
  const int64_t n = size * size;
  Blob blob;
  auto sorted = intensity;
  std::sort(sorted.begin(), sorted.end());
  const double background = sorted[n / 2];
  const double level = sorted[n - 1 - n / 200];  // 99.5th percentile: robust to a few outliers
  blob.contrast = level - background;
  if (blob.contrast < kMinContrast) return blob;

  // Soft coverage in [0, 1]: 0 up to 10% of the way from the background level to the foreground
  // level, 1 from 90%, linear between: noise on either level maps to 0 or 1, while a soft edge's
  // profile stays symmetric about 50%, so areas and widths survive blur.
  blob.cover.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    const double t = (intensity[i] - background) / blob.contrast;
    blob.cover[i] = static_cast<float>(std::clamp((t - kDeadZone) / (1 - 2 * kDeadZone), 0.0, 1.0));
  }
  blob.pixels = largest_blob(blob.cover, size, 0.5f);
  if (static_cast<int64_t>(blob.pixels.size()) < kMinPixels) return blob;

  // The blob grown by one pixel, to take in its soft (anti-aliased or blurred) rim.
  std::vector<int8_t> region(n, 0);
  for (int64_t p : blob.pixels) {
    const int64_t y = p / size, x = p % size;
    for (int64_t ny = std::max<int64_t>(0, y - 1); ny <= std::min(size - 1, y + 1); ++ny)
      for (int64_t nx = std::max<int64_t>(0, x - 1); nx <= std::min(size - 1, x + 1); ++nx)
        region[ny * size + nx] = 1;
  }

  // Mass, centroid and the soft projections (max over each column / row).
  double mass = 0, sx = 0, sy = 0;
  std::vector<double> column_max(size, 0), row_max(size, 0);
  for (int64_t i = 0; i < n; ++i) {
    if (!region[i]) continue;
    const double w = blob.cover[i];
    const int64_t y = i / size, x = i % size;
    mass += w;
    sx += w * (x + 0.5);
    sy += w * (y + 0.5);
    column_max[x] = std::max(column_max[x], w);
    row_max[y] = std::max(row_max[y], w);
  }
  blob.centre_x = sx / mass;
  blob.centre_y = sy / mass;
  double m2 = 0, m3 = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!region[i]) continue;
    const double dy = (i / size + 0.5) - blob.centre_y;
    m2 += blob.cover[i] * dy * dy;
    m3 += blob.cover[i] * dy * dy * dy;
  }
  m2 /= mass;
  m3 /= mass;
  blob.skew = m2 > 0 ? m3 / std::pow(m2, 1.5) : 0;
  double width = 0, height = 0;
  for (int64_t k = 0; k < size; ++k) {
    width += column_max[k];
    height += row_max[k];
  }
  blob.fill = mass / std::max(width * height, 1e-9);
  blob.found = true;
  return blob;
}

// Nearest palette colour to the chromaticity (RGB / max) of the blob's confident pixels.
int nearest_colour(const Blob& blob, const float* px, int64_t n) {
  double rgb[3] = {0, 0, 0};
  for (int pass = 0; pass < 2 && rgb[0] + rgb[1] + rgb[2] <= 0; ++pass) {
    for (int64_t p : blob.pixels) {
      // The core (coverage >= 0.75); the whole blob if it has none.
      const double w = pass == 1 ? 1.0 : (blob.cover[p] >= 0.75f ? blob.cover[p] : 0.0);
      for (int c = 0; c < 3; ++c) rgb[c] += w * px[c * n + p];
    }
  }
  const double top = std::max({rgb[0], rgb[1], rgb[2], 1e-12});
  int best_colour = 0;
  double best = 1e30;
  for (int k = 0; k < kNumColours; ++k) {
    double d = 0;
    for (int c = 0; c < 3; ++c) d += std::pow(rgb[c] / top - kColourRGB[k][c], 2);
    if (d < best) {
      best = d;
      best_colour = k;
    }
  }
  return best_colour;
}

}  // namespace

ShapeJudgement judge_shape(const torch::Tensor& image) {
  if (image.dim() != 3 || image.size(0) != 3 || image.size(1) != image.size(2) ||
      image.size(1) < 3) {
    std::ostringstream got;
    got << image.sizes();
    throw std::invalid_argument("judge_shape: expected an image [3, S, S], got " + got.str());
  }
  const int64_t size = image.size(1), n = size * size;
  auto rgb01 = image.detach().to(torch::kCPU, torch::kFloat32).add(1).mul(0.5).clamp(0, 1);
  rgb01 = rgb01.contiguous();
  const float* px = rgb01.data_ptr<float>();  // [3, S, S]

  // Pass 1: brightness (max channel) finds the blob and its colour.
  std::vector<float> intensity(n);
  for (int64_t i = 0; i < n; ++i) intensity[i] = std::max({px[i], px[n + i], px[2 * n + i]});
  Blob blob = measure_blob(intensity, size);
  ShapeJudgement j;
  j.contrast = blob.contrast;
  j.pixels = static_cast<int64_t>(blob.pixels.size());
  if (!blob.found) return j;
  j.colour = nearest_colour(blob, px, n);

  // Pass 2: geometry from the intensity along that colour (the mean of its lit channels), which
  // averages out noise and ignores the unlit channels.
  const auto& palette = kColourRGB[j.colour];
  const double lit = palette[0] + palette[1] + palette[2];
  for (int64_t i = 0; i < n; ++i) {
    intensity[i] = static_cast<float>(
        (palette[0] * px[i] + palette[1] * px[n + i] + palette[2] * px[2 * n + i]) / lit);
  }
  Blob along = measure_blob(intensity, size);
  if (along.found) blob = std::move(along);

  j.found = true;
  j.contrast = blob.contrast;
  j.pixels = static_cast<int64_t>(blob.pixels.size());
  j.fill = blob.fill;
  j.skew = blob.skew;
  j.centre_x = blob.centre_x;
  j.centre_y = blob.centre_y;
  const double cell = static_cast<double>(size) / 3;
  const int col = std::clamp(static_cast<int>(j.centre_x / cell), 0, 2);
  const int row = std::clamp(static_cast<int>(j.centre_y / cell), 0, 2);
  j.position = row * 3 + col;
  if (j.skew + 0.5 * (j.fill - 0.8) < kTriangleScore || j.fill < kTriangleFill) {
    j.shape = 2;
  } else {
    j.shape = j.fill >= kSquareFill ? 1 : 0;
  }
  return j;
}

nlohmann::json ShapeScore::to_json() const {
  return {{"count", count},       {"found", found}, {"colour", colour},
          {"position", position}, {"shape", shape}, {"all", all}};
}

ShapeScore score_samples(const torch::Tensor& images, const std::vector<ShapeAttributes>& wanted) {
  if (images.dim() != 4 || images.size(0) != static_cast<int64_t>(wanted.size())) {
    std::ostringstream got;
    got << images.sizes();
    throw std::invalid_argument(fmt::format(
        "score_samples: expected images [N, 3, S, S] with N = {} wanted attribute sets, got {}",
        wanted.size(), got.str()));
  }
  ShapeScore s;
  s.count = images.size(0);
  auto cpu = images.detach().to(torch::kCPU, torch::kFloat32);
  for (int64_t i = 0; i < s.count; ++i) {
    auto j = judge_shape(cpu[i]);
    const auto& w = wanted[i];
    s.found += j.found;
    s.colour += j.found && j.colour == w.colour;
    s.position += j.found && j.position == w.position;
    s.shape += j.found && j.shape == w.shape;
    s.all += j.matches(w);
    s.judgements.push_back(j);
  }
  if (s.count > 0) {
    for (double* rate : {&s.found, &s.colour, &s.position, &s.shape, &s.all}) *rate /= s.count;
  }
  return s;
}

}  // namespace fluxtrain
