// A text-to-image pipeline: the transformer plus the components around it (text conditioner,
// autoencoder), built from a model preset, with the conversions between images, latents and
// tokens that training and sampling share.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/autoencoder.h"
#include "model/flux.h"
#include "model/presets.h"
#include "text/conditioner.h"

namespace fluxtrain {

struct ModelFiles;

// How a real model's components are loaded.
struct PipelineLoadOptions {
  torch::Device device = torch::kCPU;
  torch::ScalarType transformer_dtype = torch::kFloat;  // the transformer's weights
  torch::ScalarType encoder_dtype = torch::kFloat;      // VAE, T5 and CLIP weights
  bool with_transformer = true;  // false: the preset from its headers, no weights (prepare)
  bool with_text = true;         // false: no text encoders (training from a latent cache)
  // The blocks' linear weights in 8 bits, read straight from the file tensor by tensor
  // (model/quantized_weight.h); the rest in transformer_dtype.
  BaseWeights base_weights = BaseWeights::kDense;
  // Block swap (model/block_swap.h): the last blocks' linear weights stay in host memory.
  int64_t blocks_to_swap = 0;
};

struct Pipeline {
  ModelPreset preset;
  torch::Device device = torch::kCPU;
  Flux transformer{nullptr};
  std::shared_ptr<TextConditioner> text;
  std::shared_ptr<ImageAutoencoder> autoencoder;

  // Random-initialised transformer (seeded) and the built-in components. Presets that need real
  // encoders (flux-dev, flux-schnell) get a UserError unless `stand_in_encoders`, which gives
  // them weight-free stand-ins of the real shapes (hashed words at T5/CLIP widths and token count,
  // a projection autoencoder with 16 latent channels at x8) for benchmarks.
  static Pipeline create(const std::string& preset_name, torch::Device device, uint64_t seed,
                         bool zero_init_output = true, bool stand_in_encoders = false);
  // create() without the transformer (null): the preset's text conditioner and autoencoder only,
  // for encoding (`fluxtrain prepare`).
  static Pipeline create_encoders(const std::string& preset_name, torch::Device device,
                                  uint64_t seed, bool stand_in_encoders);

  // A real FLUX.1 model (files as resolve_model_files gives them): its transformer weights, its
  // VAE and its T5 + CLIP encoders, all on options.device. `text` is a CachedTextConditioner,
  // so captions known up front can be encoded once and the encoders released (null without
  // with_text; `transformer` null without with_transformer).
  static Pipeline load(const ModelFiles& files, const PipelineLoadOptions& options);

  // Throws UserError unless height and width are positive multiples of 2 x autoencoder factor.
  void check_resolution(int64_t height, int64_t width) const;
  int64_t image_tokens(int64_t height, int64_t width) const;
  // images [B, 3, H, W] in [-1, 1] -> tokens [B, L, in_channels].
  torch::Tensor images_to_tokens(const torch::Tensor& images);
  // tokens [B, L, C] -> images [B, 3, H, W] in [-1, 1] (clamped).
  torch::Tensor tokens_to_images(const torch::Tensor& tokens, int64_t height, int64_t width);
};

}  // namespace fluxtrain
