// 8-bit block-wise quantisation (see block_quantized.h).
#include "train/block_quantized.h"

#include <algorithm>
#include <cmath>

namespace fluxtrain {

torch::Tensor dynamic_quantization_map(bool is_signed) {
  constexpr int kMaxExponentBits = 7, kTotalBits = 8;
  const int non_sign_bits = kTotalBits - 1;  // (bitsandbytes: 1 if signed else 1)
  std::vector<double> data;
  auto add_means = [&](int64_t items, int exponent) {
    // Means of consecutive boundaries of linspace(0.1, 1, items), times 10^exponent.
    std::vector<double> b(items);
    for (int64_t k = 0; k < items; ++k)
      b[k] = 0.1 + 0.9 * static_cast<double>(k) / static_cast<double>(items - 1);
    for (int64_t k = 0; k + 1 < items; ++k) {
      const double v = std::pow(10.0, exponent) * (b[k] + b[k + 1]) / 2.0;
      data.push_back(v);
      if (is_signed) data.push_back(-v);
    }
  };
  const int additional = (1 << (non_sign_bits - kMaxExponentBits)) - 1;  // 0 for 8 bits
  for (int i = 0; i < kMaxExponentBits; ++i)
    add_means(is_signed ? (int64_t{1} << (i + non_sign_bits - kMaxExponentBits)) + 1
                        : (int64_t{1} << (i + non_sign_bits - kMaxExponentBits + 1)) + 1,
              -(kMaxExponentBits - 1) + i);
  if (additional > 0) add_means(additional + 1, 0);
  data.push_back(0.0);
  data.push_back(1.0);
  while (data.size() < 256) data.push_back(0.0);
  std::sort(data.begin(), data.end());
  // Computed in float64, stored as float32 (bitsandbytes computes them in float32: the levels
  // agree to float32 rounding).
  return torch::tensor(data, torch::kDouble).to(torch::kFloat);
}

BlockQuantized::BlockQuantized(std::vector<int64_t> shape, torch::Device device, int64_t block,
                               bool is_signed)
    : shape_(std::move(shape)), block_(block) {
  numel_ = 1;
  for (auto s : shape_) numel_ *= s;
  levels_ = dynamic_quantization_map(is_signed).to(device);
  midpoints_ = ((levels_.slice(0, 0, 255) + levels_.slice(0, 1, 256)) / 2).contiguous();
  const int64_t blocks = (numel_ + block_ - 1) / block_;
  const int64_t zero = torch::argmin(levels_.abs()).item<int64_t>();
  codes = torch::full({numel_}, zero, torch::TensorOptions(torch::kUInt8).device(device));
  absmax = torch::zeros({blocks}, torch::TensorOptions(torch::kFloat).device(device));
}

torch::Tensor BlockQuantized::dequantize() const {
  const int64_t blocks = absmax.size(0), padded = blocks * block_;
  auto idx = codes.to(torch::kLong);
  if (padded > numel_) idx = torch::constant_pad_nd(idx, {0, padded - numel_}, 0);
  auto values = levels_.index_select(0, idx).view({blocks, block_}) * absmax.unsqueeze(1);
  return values.flatten().slice(0, 0, numel_).view(shape_);
}

void BlockQuantized::assign(const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  const int64_t blocks = absmax.size(0), padded = blocks * block_;
  auto flat = x.to(torch::kFloat).flatten();
  if (padded > numel_) flat = torch::constant_pad_nd(flat, {0, padded - numel_}, 0.0);
  auto b = flat.view({blocks, block_});
  auto amax = b.abs().amax(1);  // [blocks]
  auto normalised = b / torch::where(amax > 0, amax, torch::ones_like(amax)).unsqueeze(1);
  // The nearest level: the number of boundaries below the value.
  auto idx = torch::bucketize(normalised, midpoints_, /*out_int32=*/false, /*right=*/false);
  codes.copy_(idx.flatten().slice(0, 0, numel_).to(torch::kUInt8));
  absmax.copy_(amax);
}

}  // namespace fluxtrain
