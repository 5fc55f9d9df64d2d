// Device and dtype names as they appear in configs ("auto", "cpu", "cuda:1"; "fp32", "bf16").
#pragma once
#include <torch/torch.h>

#include <string>

namespace fluxtrain {

// "auto" is CUDA when available, else CPU. A CUDA device without CUDA is a UserError.
torch::Device parse_device(const std::string& text);
// "fp32" | "bf16" | "fp16" -> dtype.
torch::ScalarType parse_precision(const std::string& text);
// The inverse: fp32, bf16, fp16 (else the dtype's torch name).
std::string precision_name(torch::ScalarType dtype);
std::string device_description(const torch::Device& d);  // "cpu (2 threads)" / GPU name
// Intra-op threads for CPU tensor math: n > 0, or every core when n == 0 (libtorch may default
// to one thread in containers).
void configure_threads(int64_t n);
// "[3, 4]" (for error messages).
std::string shape_str(c10::IntArrayRef shape);

}  // namespace fluxtrain
