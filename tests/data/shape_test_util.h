// Test helpers for the shapes data: blur and noise that mimic slightly soft generated images.
#pragma once
#include <torch/torch.h>

#include "core/rng.h"

namespace fluxtrain::test_util {

// Gaussian blur of a [3, S, S] image in [-1, 1], treating the outside as black: K X K^T per
// channel with K[i][j] = g(i - j) normalised over the full kernel.
inline torch::Tensor gaussian_blur(const torch::Tensor& image, double sigma) {
  const int64_t size = image.size(-1);
  auto i = torch::arange(size, torch::kFloat32);
  auto diff = i.view({-1, 1}) - i.view({1, -1});
  const int64_t radius = static_cast<int64_t>(std::ceil(4 * sigma));
  auto taps = torch::arange(-radius, radius + 1, torch::kFloat32);
  const double norm = (-(taps * taps) / (2 * sigma * sigma)).exp().sum().item<double>();
  auto k = (-(diff * diff) / (2 * sigma * sigma)).exp() / norm;  // [S, S]
  return torch::matmul(torch::matmul(k, image + 1), k.t()) - 1;
}

// Adds N(0, sigma^2) noise (seeded) and clamps to [-1, 1].
inline torch::Tensor add_noise(const torch::Tensor& image, double sigma, uint64_t seed) {
  auto gen = make_generator(seed, RngStream::kNoise, 0);
  return (image + sigma * torch::randn(image.sizes(), gen, torch::kFloat32)).clamp(-1, 1);
}

}  // namespace fluxtrain::test_util
