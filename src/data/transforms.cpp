// Image transforms (see transforms.h).
#include "data/transforms.h"

#include <cmath>

#include "core/rng.h"
#include "io/image.h"
#include "io/image_resize.h"

namespace fluxtrain {

std::pair<int64_t, int64_t> cover_size(int64_t height, int64_t width, const Bucket& b) {
  const double scale = std::max(static_cast<double>(b.height) / static_cast<double>(height),
                                static_cast<double>(b.width) / static_cast<double>(width));
  const auto h = std::max<int64_t>(b.height, std::llround(static_cast<double>(height) * scale));
  const auto w = std::max<int64_t>(b.width, std::llround(static_cast<double>(width) * scale));
  return {h, w};
}

torch::Tensor fit_to_bucket(const torch::Tensor& hwc, const Bucket& b, const TransformOptions& o,
                            std::optional<uint64_t> draw) {
  TORCH_CHECK(hwc.dim() == 3 && hwc.size(2) == 3, "fit_to_bucket: expected uint8 [H, W, 3]");
  const auto [h, w] = cover_size(hwc.size(0), hwc.size(1), b);
  torch::Tensor img = to_float_chw(hwc);  // [3, H, W] in [-1, 1]
  if (h != img.size(1) || w != img.size(2)) img = resize_image(img, h, w).clamp_(-1, 1);
  int64_t top = 0, left = 0;
  bool flip = false;
  if (draw && (o.random_crop || o.random_flip)) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(*draw);
    auto u = torch::rand({3}, gen, torch::kFloat64);
    if (o.random_crop) {
      top = static_cast<int64_t>(u[0].item<double>() * static_cast<double>(h - b.height + 1));
      left = static_cast<int64_t>(u[1].item<double>() * static_cast<double>(w - b.width + 1));
    }
    flip = o.random_flip && u[2].item<double>() < 0.5;
  }
  if (!(draw && o.random_crop))
    return flip ? center_crop(img, b.height, b.width).flip({2})
                : center_crop(img, b.height, b.width);
  img =
      crop_image(img, std::min(top, h - b.height), std::min(left, w - b.width), b.height, b.width);
  return flip ? img.flip({2}).contiguous() : img;
}

}  // namespace fluxtrain
