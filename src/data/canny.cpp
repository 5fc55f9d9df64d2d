// Canny edge detection (see canny.h).
#include "data/canny.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core/errors.h"

namespace fluxtrain {
namespace {

constexpr double kMaxSigma = 100;

void check_image(const uint8_t* data, int width, int height, const char* what) {
  if (!data) throw std::invalid_argument(std::string(what) + ": null image");
  if (width < 1 || height < 1)
    throw std::invalid_argument(fmt::format("{}: image {}x{} is empty", what, width, height));
}

void check_options(const CannyOptions& o) {
  auto check = [](double t, const char* name) {
    if (!std::isfinite(t) || t < 0) user_error("canny: {} threshold {} must be >= 0", name, t);
  };
  check(o.low_threshold, "low");
  check(o.high_threshold, "high");
  if (o.low_threshold > o.high_threshold)
    user_error("canny: low threshold {} is above the high threshold {}", o.low_threshold,
               o.high_threshold);
}

// Blurs `grey` (w x h) with `kernel` along rows, then columns (border replicate), rounding the
// result to 0..255.
std::vector<uint8_t> blur(const uint8_t* grey, int w, int h, const std::vector<double>& kernel) {
  const size_t n = static_cast<size_t>(w) * h;
  if (kernel.size() == 1) return std::vector<uint8_t>(grey, grey + n);
  const int r = static_cast<int>(kernel.size() / 2);
  std::vector<double> rows(n);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      double s = 0;
      for (int k = -r; k <= r; ++k)
        s += kernel[k + r] * grey[static_cast<size_t>(y) * w + std::clamp(x + k, 0, w - 1)];
      rows[static_cast<size_t>(y) * w + x] = s;
    }
  std::vector<uint8_t> out(n);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      double s = 0;
      for (int k = -r; k <= r; ++k)
        s += kernel[k + r] * rows[static_cast<size_t>(std::clamp(y + k, 0, h - 1)) * w + x];
      out[static_cast<size_t>(y) * w + x] =
          static_cast<uint8_t>(std::clamp(std::lround(s), 0L, 255L));
    }
  return out;
}

}  // namespace

std::vector<double> gaussian_kernel(double sigma) {
  if (!std::isfinite(sigma) || sigma < 0 || sigma > kMaxSigma)
    user_error("canny: sigma {} must be in [0, {}] (0 = no blur)", sigma, kMaxSigma);
  if (sigma == 0) return {1.0};
  const int r = static_cast<int>(std::ceil(3 * sigma));
  std::vector<double> k(2 * r + 1);
  double sum = 0;
  for (int i = -r; i <= r; ++i) sum += k[i + r] = std::exp(-(i * i) / (2 * sigma * sigma));
  for (auto& v : k) v /= sum;
  return k;
}

void check_canny_options(const CannyOptions& options) {
  check_options(options);
  gaussian_kernel(options.sigma);
}

std::vector<uint8_t> canny_edges(const uint8_t* grey, int w, int h, const CannyOptions& o) {
  check_image(grey, w, h, "canny_edges");
  check_options(o);
  const std::vector<uint8_t> img = blur(grey, w, h, gaussian_kernel(o.sigma));
  const size_t n = static_cast<size_t>(w) * h;
  auto at = [&](int x, int y) {
    return static_cast<int>(
        img[static_cast<size_t>(std::clamp(y, 0, h - 1)) * w + std::clamp(x, 0, w - 1)]);
  };

  // Sobel, y down: gx = [-1 0 1; -2 0 2; -1 0 1], gy its transpose. mag2 = gx^2 + gy^2 exactly.
  std::vector<int> gx(n), gy(n);
  std::vector<int64_t> mag2(n);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const int dx = (at(x + 1, y - 1) - at(x - 1, y - 1)) + 2 * (at(x + 1, y) - at(x - 1, y)) +
                     (at(x + 1, y + 1) - at(x - 1, y + 1));
      const int dy = (at(x - 1, y + 1) - at(x - 1, y - 1)) + 2 * (at(x, y + 1) - at(x, y - 1)) +
                     (at(x + 1, y + 1) - at(x + 1, y - 1));
      const size_t i = static_cast<size_t>(y) * w + x;
      gx[i] = dx, gy[i] = dy;
      mag2[i] = static_cast<int64_t>(dx) * dx + static_cast<int64_t>(dy) * dy;
    }

  // Non-maximum suppression and double threshold on the interior: 0 none, 1 weak, 2 strong.
  const double tan22 = std::sqrt(2.0) - 1, tan67 = std::sqrt(2.0) + 1;  // tan 22.5, tan 67.5
  const double low2 = o.low_threshold * o.low_threshold;
  const double high2 = o.high_threshold * o.high_threshold;
  std::vector<uint8_t> cls(n, 0);
  for (int y = 1; y + 1 < h; ++y)
    for (int x = 1; x + 1 < w; ++x) {
      const size_t i = static_cast<size_t>(y) * w + x;
      const double ax = std::abs(gx[i]), ay = std::abs(gy[i]);
      // Offset (in elements) to the neighbour along the direction that comes first row-major;
      // the other neighbour is at +off.
      ptrdiff_t off;
      if (ay < tan22 * ax)
        off = 1;  // 0 degrees: left / right
      else if (ay > tan67 * ax)
        off = w;  // 90: up / down
      else if ((gx[i] > 0) == (gy[i] > 0))
        off = w + 1;  // 45: up-left / down-right
      else
        off = w - 1;  // 135: up-right / down-left
      const int64_t m = mag2[i];
      if (!(m > mag2[i - off] && m >= mag2[i + off])) continue;
      const double md = static_cast<double>(m);
      cls[i] = md >= high2 ? 2 : md >= low2 ? 1 : 0;
    }

  // Hysteresis: grow edges from strong pixels through 8-connected weak ones.
  std::vector<uint8_t> out(n, 0);
  std::vector<size_t> stack;
  for (size_t s = 0; s < n; ++s) {
    if (cls[s] != 2 || out[s]) continue;
    out[s] = 255;
    stack.push_back(s);
    while (!stack.empty()) {
      const size_t i = stack.back();
      stack.pop_back();
      const int x = static_cast<int>(i % w), y = static_cast<int>(i / w);
      for (int ny = y - 1; ny <= y + 1; ++ny)
        for (int nx = x - 1; nx <= x + 1; ++nx) {
          if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
          const size_t j = static_cast<size_t>(ny) * w + nx;
          if (cls[j] && !out[j]) out[j] = 255, stack.push_back(j);
        }
    }
  }
  return out;
}

std::vector<uint8_t> rgb_to_grey(const uint8_t* rgb, int w, int h) {
  check_image(rgb, w, h, "rgb_to_grey");
  const size_t n = static_cast<size_t>(w) * h;
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = rgb + 3 * i;
    out[i] = static_cast<uint8_t>((299 * p[0] + 587 * p[1] + 114 * p[2] + 500) / 1000);
  }
  return out;
}

}  // namespace fluxtrain
