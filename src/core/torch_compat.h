// Every difference between the libtorch versions fluxtrain builds against lives here:
// Debian's libtorch 1.13 (CPU) and CUDA libtorch >= 2.1 (pip torch wheels).
#pragma once
#include <torch/torch.h>
#include <torch/version.h>

#if TORCH_VERSION_MAJOR >= 2
#include <ATen/autocast_mode.h>
#else
#include <ATen/autocast_mode.h>
#endif

namespace fluxtrain::compat {

constexpr bool kTorch2 = TORCH_VERSION_MAJOR >= 2;

// Scaled dot-product attention, softmax(q k^T / sqrt(D)) v, no mask.
// q, k, v: [B, heads, L, D] -> [B, heads, L, D]. Torch 2 dispatches to flash / memory-efficient
// kernels on CUDA; 1.13 has only the underscore op that returns (out, weights).
inline at::Tensor scaled_dot_product_attention(const at::Tensor& q, const at::Tensor& k,
                                               const at::Tensor& v) {
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v);
#else
  return std::get<0>(at::_scaled_dot_product_attention(q, k, v));
#endif
}

// Autocast on or off for one device type with the given low-precision dtype.
inline void set_autocast(c10::DeviceType device, bool enabled, at::ScalarType dtype) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  at::autocast::set_autocast_enabled(device, enabled);
  at::autocast::set_autocast_dtype(device, dtype);
#else
  if (device == c10::DeviceType::CUDA) {
    at::autocast::set_enabled(enabled);
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_cpu_enabled(enabled);
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
#endif
}

inline void clear_autocast_cache() { at::autocast::clear_cache(); }

inline std::string torch_version() { return TORCH_VERSION; }

}  // namespace fluxtrain::compat
