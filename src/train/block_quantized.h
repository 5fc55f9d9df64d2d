// 8-bit block-wise dynamic quantisation of optimizer moments, as bitsandbytes' 8-bit optimizers
// store them (functional.create_dynamic_map, quantize_blockwise): the tensor is cut into blocks
// of `block` values, each block is divided by its absolute maximum and every value is stored as
// the index (uint8) of the nearest of 256 levels of a dynamic map: 10^-6 .. 1 on a log-spaced
// exponent with a linear fraction, signed for the first moment, unsigned for the second.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace fluxtrain {

// bitsandbytes' create_dynamic_map(signed, max_exponent_bits = 7, total_bits = 8): 256 sorted
// float32 levels in [-1, 1] (signed) or [0, 1], both including 0 and 1.
torch::Tensor dynamic_quantization_map(bool is_signed);

class BlockQuantized {
 public:
  BlockQuantized() = default;
  // All zeros, for a tensor of `shape` on `device`.
  BlockQuantized(std::vector<int64_t> shape, torch::Device device, int64_t block, bool is_signed);
  // The stored values, float32 in the shape.
  torch::Tensor dequantize() const;
  // Stores x (any float dtype, the shape) rounded to the nearest level of its block.
  void assign(const torch::Tensor& x);

  torch::Tensor codes;   // uint8 [numel]
  torch::Tensor absmax;  // float32 [ceil(numel / block)]
  const std::vector<int64_t>& shape() const { return shape_; }

 private:
  std::vector<int64_t> shape_;
  int64_t block_ = 256, numel_ = 0;
  torch::Tensor levels_, midpoints_;  // the map [256] and the 255 boundaries between levels
};

}  // namespace fluxtrain
