// Every difference between the libtorch versions fluxtrain builds against lives here:
// Debian's libtorch 1.13 (CPU) and CUDA libtorch >= 2.1 (pip torch wheels).
#pragma once
#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <optional>
#include <string>

// FLUXTRAIN_TORCH_CUDA: set by CMake only when the Torch package has CUDA (target c10_cuda).
#ifdef FLUXTRAIN_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>
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

// Whether autocast is on for one device type, and its low-precision dtype.
inline bool autocast_enabled(c10::DeviceType device) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  return at::autocast::is_autocast_enabled(device);
#else
  return device == c10::DeviceType::CUDA ? at::autocast::is_enabled()
                                         : at::autocast::is_cpu_enabled();
#endif
}
inline at::ScalarType autocast_dtype(c10::DeviceType device) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  return at::autocast::get_autocast_dtype(device);
#else
  return device == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype()
                                         : at::autocast::get_autocast_cpu_dtype();
#endif
}

inline void clear_autocast_cache() {
  at::autocast::clear_cache();
}

inline std::string torch_version() {
  return TORCH_VERSION;
}

// Peak bytes of the CUDA caching allocator on `device` since the process started or the last
// reset_cuda_memory_peak: allocated (tensors) and reserved (what the allocator holds from the
// driver, closer to nvidia-smi). nullopt for a CPU device or a build without CUDA.
struct CudaMemoryPeak {
  int64_t allocated_bytes = 0;
  int64_t reserved_bytes = 0;
};
inline std::optional<CudaMemoryPeak> cuda_memory_peak(const c10::Device& device) {
#ifdef FLUXTRAIN_TORCH_CUDA
  if (!device.is_cuda()) return std::nullopt;
  const auto index = device.has_index() ? device.index() : static_cast<c10::DeviceIndex>(0);
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
  constexpr size_t kAggregate = 0;  // StatType::AGGREGATE (its namespace moved between versions)
  return CudaMemoryPeak{stats.allocated_bytes[kAggregate].peak,
                        stats.reserved_bytes[kAggregate].peak};
#else
  (void)device;
  return std::nullopt;
#endif
}

// Starts a new peak for cuda_memory_peak and returns cached blocks to the driver (between
// benchmark points in one process). No-op for a CPU device or a build without CUDA.
inline void reset_cuda_memory_peak(const c10::Device& device) {
#ifdef FLUXTRAIN_TORCH_CUDA
  if (!device.is_cuda()) return;
  const auto index = device.has_index() ? device.index() : static_cast<c10::DeviceIndex>(0);
  c10::cuda::CUDACachingAllocator::emptyCache();
  c10::cuda::CUDACachingAllocator::resetPeakStats(index);
#else
  (void)device;
#endif
}

// Returns the CUDA caching allocator's free blocks to the driver (after a component is freed).
// No-op without CUDA.
inline void empty_cuda_cache() {
#ifdef FLUXTRAIN_TORCH_CUDA
  c10::cuda::CUDACachingAllocator::emptyCache();
#endif
}

// Page-locks `bytes` of ordinary host memory at `p` in place (cudaHostRegister), so that copies
// from it to a CUDA device run asynchronously, without the caching host allocator's rounding of
// every pinned allocation up to a power of two. False without CUDA or when the driver refuses.
inline bool register_host_memory(void* p, size_t bytes) {
#ifdef FLUXTRAIN_TORCH_CUDA
  if (cudaHostRegister(p, bytes, cudaHostRegisterDefault) == cudaSuccess) return true;
  cudaGetLastError();  // (clear it: a later kernel launch must not report it)
  return false;
#else
  (void)p;
  (void)bytes;
  return false;
#endif
}
inline void unregister_host_memory(void* p) {
#ifdef FLUXTRAIN_TORCH_CUDA
  cudaHostUnregister(p);
#else
  (void)p;
#endif
}

// The CUDA runtime this build was compiled against ("12.4"), or "" without CUDA.
inline std::string cuda_runtime_version() {
#ifdef FLUXTRAIN_TORCH_CUDA
  return std::to_string(CUDART_VERSION / 1000) + "." + std::to_string(CUDART_VERSION % 1000 / 10);
#else
  return "";
#endif
}

}  // namespace fluxtrain::compat
