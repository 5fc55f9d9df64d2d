// Frozen base weights kept in 8 bits and dequantized on the fly by the linear layer
// (model/linear.h): int8 with one scale per output channel (LLM.int8()'s row-wise absmax
// quantization without its outlier split), or FP8 E4M3FN (the format of flux1-dev-fp8 files:
// 1 sign, 4 exponent, 3 mantissa bits, largest value 448) with one scale per output channel.
// A weight [out, in] costs out x in bytes plus 4 x out for the scales, half of bf16.
//
// Error bounds (per element, w the original weight, s_i = max_j |w_ij| / qmax of its row i):
//   int8: |w_q - w| <= s_i / 2 (qmax 127, round to nearest)
//   fp8:  |w_q - w| <= |w| / 16 for |w| / s_i >= 2^-6 (normal numbers: 3 mantissa bits), and
//         <= s_i x 2^-10 below (subnormal spacing 2^-9; qmax 448).
#pragma once
#include <torch/torch.h>

#include <string>

namespace fluxtrain {

enum class BaseWeights {
  kDense,  // as the model's `weights` dtype (bf16 / fp32)
  kInt8,
  kFp8,  // E4M3FN
};
BaseWeights parse_base_weights(const std::string& name);  // dense | int8 | fp8 (UserError else)
std::string base_weights_name(BaseWeights kind);

struct QuantizedWeight {
  BaseWeights kind = BaseWeights::kInt8;
  torch::Tensor codes;  // [out, in]: int8 (int8), uint8 E4M3FN bytes (fp8)
  torch::Tensor scale;  // [out, 1] float32: w = value(code) x scale

  // `w` [out, in] (any floating dtype, any device) quantized row by row; kind int8 or fp8.
  static QuantizedWeight quantize(const torch::Tensor& w, BaseWeights kind);
  // [out, in] in `dtype` on the codes' device.
  torch::Tensor dequantize(torch::ScalarType dtype) const;
  void to(torch::Device device);
  int64_t bytes() const;
};

// The 256 values of the E4M3FN bytes (NaN for 0x7f and 0xff), float32 on `device`.
torch::Tensor fp8_e4m3_values(torch::Device device);

// The dtype a linear layer computes in for input x: autocast's when it is on for x's device,
// else x's.
torch::ScalarType linear_compute_dtype(const torch::Tensor& x);

// x [..., in] -> x W^T + bias [..., out] with W = w.dequantize(...) in the dtype x computes in
// (the autocast dtype when autocast is on). Under grad the dequantized W is not kept for
// backward: backward dequantizes it again for x's gradient (W is frozen and gets none; a bias
// that requires grad gets its own).
torch::Tensor quantized_linear(const torch::Tensor& x, const QuantizedWeight& w,
                               const torch::Tensor& bias);

}  // namespace fluxtrain
