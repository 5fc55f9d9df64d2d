// The machine a benchmark ran on: CPU, GPUs (from nvidia-smi, so the bench process itself never
// opens a CUDA context that would take memory from the points), driver, CUDA, libtorch, commit.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace fluxtrain {

struct GpuInfo {
  int index = 0;
  std::string name;    // "NVIDIA H100 80GB HBM3"
  std::string driver;  // "550.54.15"
  int64_t memory_mib = 0;
};

struct Environment {
  std::string hostname, os, cpu_model;
  int64_t cpu_cores = 0;
  int64_t memory_bytes = 0;
  std::vector<GpuInfo> gpus;  // as nvidia-smi lists them (empty without one)
  std::string driver;         // NVIDIA driver ("" without a GPU)
  std::string cuda_driver;    // the CUDA version the driver supports (nvidia-smi's header)
  std::string cuda_runtime;   // the CUDA runtime this build of fluxtrain was compiled against
  std::string libtorch, fluxtrain_commit;
  std::string started_at;  // local time, ISO 8601

  // "NVIDIA H100 80GB HBM3" for "cuda:0" (CUDA_VISIBLE_DEVICES respected), "CPU: <model>" for
  // "cpu ..." and the description itself otherwise.
  std::string device_name(const std::string& device_description) const;
  nlohmann::json to_json() const;
};

Environment collect_environment();

// Parsers, separate for tests: nvidia-smi's "--query-gpu=index,name,driver_version,memory.total
// --format=csv,noheader,nounits" output and the "CUDA Version: 12.4" in its banner.
std::vector<GpuInfo> parse_nvidia_smi_gpus(const std::string& csv);
std::string parse_nvidia_smi_cuda_version(const std::string& banner);

}  // namespace fluxtrain
