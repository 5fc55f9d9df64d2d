// A real FLUX.1 model on disk (model_files.h) run phase by phase for text-to-image: the text
// encoders (T5-XXL + CLIP-L) encode every prompt first and are freed, then the transformer
// denoises, then the VAE decodes. Only one component is on the device at a time, so bf16
// FLUX.1-dev fits a 24 GB GPU; with `offload` every component stays loaded on the CPU and visits
// the device only for its phase (no reload when a phase runs again); with `keep_loaded` every
// component stays on the device once loaded (a served model, a latency benchmark).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "model/flux.h"
#include "model/flux_weights.h"
#include "model/lora_merge.h"
#include "model/presets.h"
#include "model/vae.h"
#include "sample/model_files.h"
#include "sample/sampler.h"
#include "text/conditioner.h"

namespace fluxtrain {

struct FluxModelOptions {
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat;  // weights of every component (fp32 or bf16)
  bool offload = false;
  // Components stay loaded on the device after their phase (no reload, no move; the device must
  // hold all of them). Takes precedence over `offload`.
  bool keep_loaded = false;
  // Block swap for the transformer (model/block_swap.h): 0 off.
  int64_t blocks_to_swap = 0;
  // LoRA files merged into the transformer's weights when it is loaded, in order.
  std::vector<LoraSpec> loras;
};

class FluxModel {
 public:
  // Reads the transformer's and VAE's shapes (nothing is loaded yet). UserError for unreadable
  // or inconsistent files.
  FluxModel(ModelFiles files, FluxModelOptions options);
  ~FluxModel();

  const ModelFiles& files() const { return files_; }
  const FluxWeights& transformer_weights() const { return weights_; }
  // flux-dev / flux-schnell when the shapes match one, else "custom"; sampling defaults follow
  // the guidance input: dev-like (28 steps, shifted schedule, guidance 3.5, 512 T5 tokens) or
  // schnell-like (4 steps, no shift, 256 T5 tokens).
  const ModelPreset& preset() const { return preset_; }
  SampleOptions default_options() const;

  // Text embeddings (float32, on the CPU) of every prompt, through the encoders, which are then
  // freed (or, with offload, moved back to the CPU).
  TextEmbeddings encode(const std::vector<std::string>& prompts);
  // Latent tokens [N, L, C] (CPU) from noise tokens [N, L, C], `max_batch` images per transformer
  // call; `cond` has N rows, or 2N with CFG (the N prompts' rows, then the N empty prompts').
  // The transformer is loaded for the call, then freed (or moved back to the CPU with offload).
  torch::Tensor denoise(const TextEmbeddings& cond, const torch::Tensor& noise_tokens,
                        const SampleOptions& options, int64_t max_batch = 1);
  // A control image's latent tokens [1, L, C] (CPU) for a height x width sample
  // (control_image_tokens); the VAE is loaded for it and stays for decode (or, with offload,
  // goes back to the CPU).
  torch::Tensor control_tokens(const torch::Tensor& hwc, int64_t height, int64_t width,
                               const std::optional<CannyOptions>& canny);
  // Images [N, 3, H, W] in [-1, 1] (CPU) from latent tokens, `max_batch` at a time.
  torch::Tensor decode(const torch::Tensor& tokens, int64_t height, int64_t width,
                       int64_t max_batch = 1);
  // Full text-to-image: K = images_per_prompt images of each of the P prompts, [K P, 3, H, W] in
  // [-1, 1] (CPU, float32), rows k-major: row k P + i is image k of prompt i, from noise
  // (options.seed + k, slot i) as initial_noise_tokens draws it. Every prompt is encoded once
  // (with the empty prompt once when options.cfg_scale != 1), then denoise and decode,
  // `max_batch` images per call.
  torch::Tensor generate(const std::vector<std::string>& prompts, const SampleOptions& options,
                         int64_t max_batch = 1, int64_t images_per_prompt = 1);
  // Throws UserError unless height and width are positive multiples of 16.
  void check_resolution(int64_t height, int64_t width) const;

 private:
  ModelFiles files_;
  FluxModelOptions options_;
  FluxWeights weights_;
  VaeConfig vae_config_;
  ModelPreset preset_;
  std::shared_ptr<TextConditioner> text_;
  Flux transformer_{nullptr};
  std::shared_ptr<FluxAutoencoder> vae_;
};

// The ModelPreset (shapes and sampling defaults) for a transformer read from files.
ModelPreset preset_for_weights(const FluxWeights& weights, const VaeConfig& vae);

}  // namespace fluxtrain
