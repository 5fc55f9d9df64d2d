// Euler sampler for the FLUX flow ODE, from t = 1 (noise) to t = 0 (data).
#pragma once
#include <torch/torch.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "data/canny.h"
#include "sample/pipeline.h"

namespace fluxtrain {

struct FluxControlNetImpl;
class ImageAutoencoder;

// linspace(1, 0, steps + 1), shifted by time_shift(flux_shift_mu(image_tokens)) when `shift`.
std::vector<double> flux_schedule(int64_t steps, int64_t image_tokens, bool shift);

struct SampleOptions {
  int64_t height = 32, width = 32;
  int64_t steps = 20;
  bool shift = false;
  double guidance = 0.0;  // fed to the guidance input (guidance-distilled models only)
  // Classifier-free guidance ("true CFG"): v = v(empty) + cfg_scale (v(prompt) - v(empty)), for
  // models trained with caption dropout. 1 = off (one model call per step).
  double cfg_scale = 1.0;
  uint64_t seed = 0;
  torch::ScalarType precision = torch::kFloat;  // autocast dtype for the transformer
  // A ControlNet (not owned; null: none): its residuals, from the control image's latent tokens
  // control_tokens [1, L, C] (one control image for every image), times controlnet_scale, join
  // every transformer call.
  FluxControlNetImpl* controlnet = nullptr;
  torch::Tensor control_tokens;
  double controlnet_scale = 1.0;
  // Called after each Euler step (1-based step, total steps), e.g. for a progress line.
  std::function<void(int64_t, int64_t)> on_step;
};

// Options from the preset's defaults.
SampleOptions default_sample_options(const ModelPreset& preset);

// Starting noise for images 0..batch-1, [B, L, 4C] tokens on `device`: image i's noise comes from
// (seed, i) alone, so an image does not depend on what else is in the batch.
torch::Tensor initial_noise_tokens(int64_t batch, int64_t latent_channels, int64_t latent_height,
                                   int64_t latent_width, uint64_t seed, torch::Device device);

// The Euler loop from t = 1 to 0: noise tokens x [B, L, in_channels] -> latent tokens (float32).
// `cond` holds B rows, or 2B when options.cfg_scale != 1 (the prompts, then the empty prompt).
// `latent_height`/`latent_width` are in latent pixels (for the position ids).
torch::Tensor denoise_tokens(FluxImpl& transformer, const TextEmbeddings& cond, torch::Tensor x,
                             int64_t latent_height, int64_t latent_width,
                             const SampleOptions& options, torch::Device device);

// The latent tokens [1, L, C] of a control image (uint8 [h, w, 3]) for a height x width sample:
// centre-cropped to cover that size, through the autoencoder (its posterior mean, as training
// encodes control images), patchified. `canny`, when given, first replaces the image by its Canny
// edges with those thresholds and blur (a ControlNet is sampled with the edges it trained on).
torch::Tensor control_image_tokens(ImageAutoencoder& autoencoder, const torch::Tensor& hwc,
                                   int64_t height, int64_t width,
                                   const std::optional<CannyOptions>& canny, torch::Device device);

// Generates one image per prompt -> [B, 3, H, W] in [-1, 1] on the CPU. Image i's starting
// noise comes from (seed, i) alone, so an image does not depend on what else is in the batch.
torch::Tensor generate_images(Pipeline& pipeline, const std::vector<std::string>& prompts,
                              const SampleOptions& options);

}  // namespace fluxtrain
