// RAII autocast scope: mixed precision (bf16 compute, fp32 weights) for one forward pass.
#pragma once
#include "core/torch_compat.h"

namespace fluxtrain {

class AutocastScope {
 public:
  // No-op when dtype is float32.
  AutocastScope(c10::DeviceType device, at::ScalarType dtype)
      : device_(device), active_(dtype != at::kFloat) {
    if (active_) compat::set_autocast(device_, true, dtype);
  }
  ~AutocastScope() {
    if (active_) {
      compat::set_autocast(device_, false, at::kBFloat16);
      compat::clear_autocast_cache();
    }
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  c10::DeviceType device_;
  bool active_;
};

}  // namespace fluxtrain
