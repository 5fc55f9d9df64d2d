// FLOP accounting for MFU (DESIGN.md section 8): model FLOPs per image for training and sampling,
// and the dense peak of known accelerators from their datasheets.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "model/presets.h"

namespace fluxtrain {

// Tokens one image of side `resolution` px gives the preset's transformer ((px / 16)^2 for FLUX).
int64_t image_tokens_for(const ModelPreset& preset, int64_t resolution);

// One training sample: 3 x forward (forward + backward at 2 x forward). With activation
// checkpointing the recomputed forward makes it 4 x: `hardware_flops` counts that (for
// hardware utilisation); model FLOPs (MFU) never do.
double training_flops_per_image(const ModelPreset& preset, int64_t resolution,
                                bool activation_checkpointing = false, bool hardware_flops = false);

// One generated image: `steps` forward passes, two per step with classifier-free guidance.
// (Text encoders and the autoencoder are not counted.)
double sampling_flops_per_image(const ModelPreset& preset, int64_t resolution, int64_t steps,
                                bool classifier_free_guidance);

// Dense peak TFLOP/s (no sparsity) for a device name as CUDA reports it ("NVIDIA H100 80GB
// HBM3") and a compute precision ("bf16", "fp32": fp32 without TF32). nullopt when unknown
// (CPUs, unlisted GPUs): pass the figure with --peak_tflops.
std::optional<double> datasheet_peak_tflops(const std::string& device_name,
                                            const std::string& precision);

// Model FLOPs utilisation: achieved / peak (both in TFLOP/s).
inline double mfu(double achieved_tflops, double peak_tflops) {
  return achieved_tflops / peak_tflops;
}

}  // namespace fluxtrain
