// Device and dtype parsing (see device.h).
#include "core/device.h"

#include <thread>

#include "core/errors.h"

namespace fluxtrain {

torch::Device parse_device(const std::string& text) {
  if (text == "auto" || text.empty())
    return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0)
                                       : torch::Device(torch::kCPU);
  torch::Device d(torch::kCPU);
  try {
    d = torch::Device(text);
  } catch (const std::exception&) {
    user_error("device '{}': expected auto, cpu, cuda or cuda:N", text);
  }
  if (d.is_cuda() && !torch::cuda::is_available())
    user_error("device '{}': this build or machine has no CUDA device (use --device cpu)", text);
  if (d.is_cuda() && d.has_index() && d.index() >= static_cast<int>(torch::cuda::device_count()))
    user_error("device '{}': only {} CUDA device(s) present", text, torch::cuda::device_count());
  if (!d.is_cpu() && !d.is_cuda())
    user_error("device '{}': expected auto, cpu, cuda or cuda:N", text);
  return d;
}

torch::ScalarType parse_precision(const std::string& text) {
  if (text == "fp32" || text == "float32") return torch::kFloat;
  if (text == "bf16" || text == "bfloat16") return torch::kBFloat16;
  if (text == "fp16" || text == "float16") return torch::kHalf;
  user_error("precision '{}': expected fp32, bf16 or fp16", text);
}

std::string precision_name(torch::ScalarType dtype) {
  if (dtype == torch::kFloat) return "fp32";
  if (dtype == torch::kBFloat16) return "bf16";
  if (dtype == torch::kHalf) return "fp16";
  return c10::toString(dtype);
}

std::string device_description(const torch::Device& d) {
  if (d.is_cpu()) return fmt::format("cpu ({} threads)", torch::get_num_threads());
  return fmt::format("cuda:{}", d.has_index() ? d.index() : 0);
}

void configure_threads(int64_t n) {
  const unsigned hw = std::thread::hardware_concurrency();
  torch::set_num_threads(static_cast<int>(n > 0 ? n : (hw > 0 ? hw : 1)));
}

std::string shape_str(c10::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace fluxtrain
