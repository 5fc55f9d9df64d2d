// Euler flow-ODE sampler (see sampler.h).
#include "sample/sampler.h"

#include "core/rng.h"
#include "data/control_images.h"
#include "model/autoencoder.h"
#include "model/flux_call.h"
#include "model/latents.h"
#include "model/time_shift.h"

namespace fluxtrain {

std::vector<double> flux_schedule(int64_t steps, int64_t image_tokens, bool shift) {
  auto t = torch::linspace(1.0, 0.0, steps + 1, torch::kDouble);
  if (shift) t = time_shift(flux_shift_mu(image_tokens), 1.0, t);
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

SampleOptions default_sample_options(const ModelPreset& preset) {
  SampleOptions o;
  o.height = o.width = preset.default_resolution;
  o.steps = preset.sample_steps;
  o.shift = preset.sample_shift;
  o.guidance = preset.sample_guidance;
  return o;
}

torch::Tensor initial_noise_tokens(int64_t batch, int64_t latent_channels, int64_t latent_height,
                                   int64_t latent_width, uint64_t seed, torch::Device device) {
  std::vector<torch::Tensor> noise;
  for (int64_t i = 0; i < batch; ++i) {
    auto gen = make_generator(seed, RngStream::kSample, static_cast<uint64_t>(i));
    noise.push_back(torch::randn({1, latent_channels, latent_height, latent_width}, gen));
  }
  return patchify(torch::cat(noise, 0)).to(device);  // [B, L, 4C]
}

torch::Tensor denoise_tokens(FluxImpl& transformer, const TextEmbeddings& cond, torch::Tensor x,
                             int64_t latent_height, int64_t latent_width, const SampleOptions& o,
                             torch::Device device) {
  torch::NoGradGuard no_grad;
  const bool cfg = o.cfg_scale != 1.0;
  const int64_t N = cond.txt.size(0);
  TORCH_CHECK(N == (cfg ? 2 : 1) * x.size(0), "denoise_tokens: ", N, " text rows for ", x.size(0),
              " images", cfg ? " with CFG" : "");
  auto txt = cond.txt.to(device), vec = cond.vec.to(device);
  auto schedule = flux_schedule(o.steps, x.size(1), o.shift);
  transformer.eval();
  x = x.to(device, torch::kFloat);
  const int64_t total = static_cast<int64_t>(schedule.size()) - 1;
  ControlInput control;  // on the device once, the same every step
  if (o.controlnet) {
    control.net = o.controlnet;
    control.latents = o.control_tokens.to(device).expand({N, x.size(1), x.size(2)});
    control.scale = o.controlnet_scale;
  }
  for (int64_t i = 0; i < total; ++i) {
    auto t = torch::full({N}, schedule[i], torch::TensorOptions().device(device));
    auto in = make_flux_inputs(transformer.params, cfg ? torch::cat({x, x}, 0) : x, latent_height,
                               latent_width, txt, vec, t, o.guidance);
    auto v = predict_velocity(transformer, std::move(in), o.precision, control).to(torch::kFloat);
    if (cfg) {
      auto parts = v.chunk(2, 0);
      v = parts[1] + o.cfg_scale * (parts[0] - parts[1]);
    }
    x = x + (schedule[i + 1] - schedule[i]) * v;
    if (o.on_step) o.on_step(i + 1, total);
  }
  return x;
}

torch::Tensor control_image_tokens(ImageAutoencoder& autoencoder, const torch::Tensor& hwc,
                                   int64_t height, int64_t width,
                                   const std::optional<CannyOptions>& canny, torch::Device device) {
  torch::NoGradGuard no_grad;
  torch::Tensor image = fit_to_bucket(hwc, Bucket{width, height}, {}, std::nullopt);  // [3, H, W]
  if (canny) image = canny_control_image(image, *canny);
  auto [mean, logvar] = autoencoder.encode_moments(image.unsqueeze(0).to(device));
  return patchify(autoencoder.latents_from_moments(mean, logvar, torch::Tensor())
                      .to(torch::kFloat));  // [1, L, C]
}

torch::Tensor generate_images(Pipeline& p, const std::vector<std::string>& prompts,
                              const SampleOptions& o) {
  torch::NoGradGuard no_grad;
  p.check_resolution(o.height, o.width);
  const int64_t B = static_cast<int64_t>(prompts.size());
  const int64_t f = p.preset.ae_factor, h = o.height / f, w = o.width / f;
  auto x = initial_noise_tokens(B, p.preset.latent_channels, h, w, o.seed, p.device);
  std::vector<std::string> texts = prompts;
  if (o.cfg_scale != 1.0) texts.insert(texts.end(), prompts.size(), std::string());  // uncond
  auto cond = p.text->encode(texts, p.device);
  x = denoise_tokens(*p.transformer, cond, x, h, w, o, p.device);
  return p.tokens_to_images(x, o.height, o.width).cpu();
}

}  // namespace fluxtrain
