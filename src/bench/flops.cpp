// FLOP accounting and the datasheet peak table (see flops.h).
#include "bench/flops.h"

#include <algorithm>
#include <cctype>
#include <vector>

namespace fluxtrain {

int64_t image_tokens_for(const ModelPreset& preset, int64_t resolution) {
  const int64_t side = resolution / (2 * preset.ae_factor);  // 2x2 patches of latent pixels
  return side * side;
}

double training_flops_per_image(const ModelPreset& preset, int64_t resolution,
                                bool activation_checkpointing, bool hardware_flops) {
  const double forward =
      flux_forward_flops(preset.flux, image_tokens_for(preset, resolution), preset.max_text_tokens);
  return (activation_checkpointing && hardware_flops ? 4.0 : 3.0) * forward;
}

double sampling_flops_per_image(const ModelPreset& preset, int64_t resolution, int64_t steps,
                                bool classifier_free_guidance) {
  const double forward =
      flux_forward_flops(preset.flux, image_tokens_for(preset, resolution), preset.max_text_tokens);
  return static_cast<double>(steps) * (classifier_free_guidance ? 2.0 : 1.0) * forward;
}

std::optional<double> datasheet_peak_tflops(const std::string& device_name,
                                            const std::string& precision) {
  std::string name = device_name;
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  struct Entry {
    const char* match;  // substring of the upper-cased device name
    double bf16, fp32;  // dense tensor-core bf16; plain fp32 (no TF32)
  };
  // NVIDIA datasheets, dense (the sparse figures are twice these). First match wins, so the
  // variants come before the plain name (SXM: "NVIDIA H100 80GB HBM3").
  static const std::vector<Entry> table = {
      {"H200", 989.0, 67.0}, {"H100 NVL", 835.0, 60.0}, {"H100 PCIE", 756.0, 51.0},
      {"H100", 989.0, 67.0}, {"A100", 312.0, 19.5},
  };
  if (precision != "bf16" && precision != "fp32") return std::nullopt;
  for (const auto& e : table)
    if (name.find(e.match) != std::string::npos) return precision == "bf16" ? e.bf16 : e.fp32;
  return std::nullopt;
}

}  // namespace fluxtrain
