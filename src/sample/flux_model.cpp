#include "sample/flux_model.h"

#include <algorithm>

#include "core/dtype_scope.h"
#include "core/errors.h"
#include "core/torch_compat.h"
#include "model/block_swap.h"
#include "model/latents.h"
#include "text/flux_conditioner.h"

namespace fluxtrain {

namespace {

// Rows [begin, end) of each block of `n` rows of `t` (one block, or two with CFG), concatenated.
torch::Tensor rows_of_blocks(const torch::Tensor& t, int64_t n, int64_t begin, int64_t end) {
  std::vector<torch::Tensor> parts;
  for (int64_t block = 0; block * n < t.size(0); ++block)
    parts.push_back(t.slice(0, block * n + begin, block * n + end));
  return torch::cat(parts, 0);
}

}  // namespace

ModelPreset preset_for_weights(const FluxWeights& weights, const VaeConfig& vae) {
  const bool dev_like = weights.params.guidance_embed;
  ModelPreset preset = model_preset(weights.preset != "custom" ? weights.preset
                                    : dev_like                 ? "flux-dev"
                                                               : "flux-schnell");
  preset.name = weights.preset;
  preset.flux = weights.params;
  preset.autoencoder = "flux-vae";
  preset.ae_factor = vae.factor();
  preset.latent_channels = vae.z_channels;
  preset.text_encoder = "t5+clip";
  // Sampling defaults follow the guidance input: guidance-distilled (dev) or timestep-distilled
  // (schnell), as BFL's reference sampler chooses them.
  preset.max_text_tokens = dev_like ? 512 : 256;
  preset.sample_steps = dev_like ? 28 : 4;
  preset.sample_shift = dev_like;
  preset.sample_guidance = dev_like ? 3.5 : 0.0;
  if (weights.params.in_channels != 4 * vae.z_channels)
    user_error(
        "{}: the transformer takes {} input channels, but the VAE has {} latent channels (x 4 "
        "for 2x2 patches = {}): the two do not belong together",
        weights.path, weights.params.in_channels, vae.z_channels, 4 * vae.z_channels);
  return preset;
}

FluxModel::FluxModel(ModelFiles files, FluxModelOptions options)
    : files_(std::move(files)), options_(options) {
  if (options_.dtype != torch::kFloat && options_.dtype != torch::kBFloat16 &&
      options_.dtype != torch::kHalf)
    user_error("model dtype must be fp32, bf16 or fp16");
  weights_ = inspect_flux_weights(files_.transformer);
  vae_config_ = read_vae_config(files_.vae);
  preset_ = preset_for_weights(weights_, vae_config_);
}

FluxModel::~FluxModel() = default;

SampleOptions FluxModel::default_options() const {
  SampleOptions o = default_sample_options(preset_);
  o.precision = options_.dtype;
  return o;
}

void FluxModel::check_resolution(int64_t height, int64_t width) const {
  const int64_t m = 2 * preset_.ae_factor;
  if (height <= 0 || width <= 0 || height % m || width % m)
    user_error("resolution {}x{}: height and width must be positive multiples of {} for this model",
               height, width, m);
}

TextEmbeddings FluxModel::encode(const std::vector<std::string>& prompts) {
  const bool park = options_.offload && !options_.keep_loaded;  // on the CPU between phases
  const torch::Device load_device = park ? torch::Device(torch::kCPU) : options_.device;
  if (!text_) {
    FluxTextFiles text_files{files_.tokenizer, files_.text_encoder, files_.tokenizer_2,
                             files_.text_encoder_2};
    text_ = std::make_shared<FluxTextConditioner>(text_files, preset_.max_text_tokens, load_device,
                                                  options_.dtype);
  }
  auto* conditioner = static_cast<FluxTextConditioner*>(text_.get());
  if (park) conditioner->to(options_.device);
  TextEmbeddings cond = text_->encode(prompts, torch::kCPU);
  if (park) {
    conditioner->to(torch::kCPU);
  } else if (!options_.keep_loaded) {
    text_.reset();  // T5-XXL alone is 9.5 GB in bf16: gone before the transformer loads
  }
  if (!options_.keep_loaded) compat::empty_cuda_cache();
  if (cond.txt.size(2) != preset_.flux.context_in_dim ||
      cond.vec.size(1) != preset_.flux.vec_in_dim)
    user_error(
        "the text encoders give {}-wide tokens and a {}-wide pooled vector, but the transformer "
        "in {} expects {} and {}",
        cond.txt.size(2), cond.vec.size(1), weights_.path, preset_.flux.context_in_dim,
        preset_.flux.vec_in_dim);
  return cond;
}

torch::Tensor FluxModel::denoise(const TextEmbeddings& cond, const torch::Tensor& noise_tokens,
                                 const SampleOptions& options, int64_t max_batch) {
  torch::NoGradGuard no_grad;
  check_resolution(options.height, options.width);
  if (max_batch < 1) user_error("max batch must be positive, got {}", max_batch);
  if (!transformer_) {
    DefaultDtypeScope dtype_scope(options_.dtype);
    transformer_ = Flux(weights_.params);
    load_flux_weights(*transformer_, weights_);
    for (const auto& spec : options_.loras) merge_lora_file(*transformer_, spec);
    transformer_->eval();
    for (auto& p : transformer_->parameters()) p.set_requires_grad(false);
    enable_block_swap(*transformer_, options_.blocks_to_swap, options_.device);
  }
  transformer_->to(options_.device);
  const int64_t f = preset_.ae_factor, h = options.height / f, w = options.width / f;
  const int64_t n = noise_tokens.size(0);
  std::vector<torch::Tensor> out;
  for (int64_t begin = 0; begin < n; begin += max_batch) {
    const int64_t end = std::min(n, begin + max_batch);
    TextEmbeddings part{rows_of_blocks(cond.txt, n, begin, end),
                        rows_of_blocks(cond.vec, n, begin, end)};
    out.push_back(denoise_tokens(*transformer_, part, noise_tokens.slice(0, begin, end), h, w,
                                 options, options_.device)
                      .cpu());
  }
  if (options_.keep_loaded) return torch::cat(out, 0);
  if (options_.offload) {
    transformer_->to(torch::kCPU);
    if (transformer_->block_swap) transformer_->block_swap->release_all();  // its device copies
  } else {
    transformer_ = nullptr;
  }
  compat::empty_cuda_cache();
  return torch::cat(out, 0);
}

torch::Tensor FluxModel::control_tokens(const torch::Tensor& hwc, int64_t height, int64_t width,
                                        const std::optional<CannyOptions>& canny) {
  check_resolution(height, width);
  const bool park = options_.offload && !options_.keep_loaded;
  if (!vae_) vae_ = load_flux_vae(files_.vae, options_.device, options_.dtype);
  vae_->vae()->to(options_.device);
  auto tokens = control_image_tokens(*vae_, hwc, height, width, canny, options_.device).cpu();
  if (park) vae_->vae()->to(torch::kCPU);
  return tokens;
}

torch::Tensor FluxModel::decode(const torch::Tensor& tokens, int64_t height, int64_t width,
                                int64_t max_batch) {
  torch::NoGradGuard no_grad;
  check_resolution(height, width);
  if (max_batch < 1) user_error("max batch must be positive, got {}", max_batch);
  const bool park = options_.offload && !options_.keep_loaded;
  const torch::Device load_device = park ? torch::Device(torch::kCPU) : options_.device;
  if (!vae_) vae_ = load_flux_vae(files_.vae, load_device, options_.dtype);
  vae_->vae()->to(options_.device);
  const int64_t f = preset_.ae_factor;
  std::vector<torch::Tensor> images;
  for (int64_t begin = 0; begin < tokens.size(0); begin += max_batch) {
    const int64_t end = std::min(tokens.size(0), begin + max_batch);
    auto latents = unpatchify(tokens.slice(0, begin, end), height / f, width / f);
    images.push_back(
        vae_->decode(latents.to(options_.device, options_.dtype)).to(torch::kFloat).cpu());
  }
  if (options_.keep_loaded) return torch::cat(images, 0);
  if (park) {
    vae_->vae()->to(torch::kCPU);
  } else {
    vae_.reset();
  }
  compat::empty_cuda_cache();
  return torch::cat(images, 0);
}

torch::Tensor FluxModel::generate(const std::vector<std::string>& prompts,
                                  const SampleOptions& options, int64_t max_batch,
                                  int64_t images_per_prompt) {
  check_resolution(options.height, options.width);
  if (prompts.empty()) user_error("generate: no prompts");
  if (max_batch < 1) user_error("max batch must be positive, got {}", max_batch);
  if (images_per_prompt < 1)
    user_error("images per prompt must be positive, got {}", images_per_prompt);
  const int64_t P = static_cast<int64_t>(prompts.size()), K = images_per_prompt, n = K * P;
  const bool cfg = options.cfg_scale != 1.0;
  std::vector<std::string> texts = prompts;
  if (cfg) texts.push_back("");  // encoded once, its row repeated for every image
  const TextEmbeddings enc = encode(texts);
  // The conditional rows k-major, then (CFG) the empty prompt's row once per image.
  std::vector<int64_t> rows;
  for (int64_t k = 0; k < K; ++k)
    for (int64_t i = 0; i < P; ++i) rows.push_back(i);
  if (cfg) rows.insert(rows.end(), static_cast<size_t>(n), P);
  const auto index = torch::tensor(rows, torch::kLong);
  const TextEmbeddings cond{enc.txt.index_select(0, index), enc.vec.index_select(0, index)};
  const int64_t f = preset_.ae_factor;
  std::vector<torch::Tensor> noise;
  for (int64_t k = 0; k < K; ++k)
    noise.push_back(initial_noise_tokens(P, preset_.latent_channels, options.height / f,
                                         options.width / f, options.seed + static_cast<uint64_t>(k),
                                         torch::kCPU));
  auto tokens = denoise(cond, torch::cat(noise, 0), options, max_batch);
  return decode(tokens, options.height, options.width, max_batch);
}

}  // namespace fluxtrain
