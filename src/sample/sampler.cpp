// Euler flow-ODE sampler (see sampler.h).
#include "sample/sampler.h"

#include "core/autocast.h"
#include "core/rng.h"
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

torch::Tensor generate_images(Pipeline& p, const std::vector<std::string>& prompts,
                              const SampleOptions& o) {
  torch::NoGradGuard no_grad;
  p.check_resolution(o.height, o.width);
  const int64_t B = static_cast<int64_t>(prompts.size());
  const int64_t f = p.preset.ae_factor, h = o.height / f, w = o.width / f;
  const int64_t C = p.preset.latent_channels;
  std::vector<torch::Tensor> noise;
  for (int64_t i = 0; i < B; ++i) {
    auto gen = make_generator(o.seed, RngStream::kSample, static_cast<uint64_t>(i));
    noise.push_back(torch::randn({1, C, h, w}, gen));
  }
  auto x = patchify(torch::cat(noise, 0)).to(p.device);  // [B, L, 4C]
  const bool cfg = o.cfg_scale != 1.0;
  std::vector<std::string> texts = prompts;
  if (cfg) texts.insert(texts.end(), prompts.size(), std::string());  // unconditional half
  const int64_t N = static_cast<int64_t>(texts.size());
  auto cond = p.text->encode(texts, p.device);
  auto txt_ids = text_ids(N, cond.txt.size(1), p.device);
  auto ids = image_ids(N, h, w, p.device);
  std::optional<torch::Tensor> guidance;
  if (p.preset.flux.guidance_embed)
    guidance = torch::full({N}, o.guidance, torch::TensorOptions().device(p.device));
  auto schedule = flux_schedule(o.steps, x.size(1), o.shift);
  p.transformer->eval();
  for (size_t i = 0; i + 1 < schedule.size(); ++i) {
    auto t = torch::full({N}, schedule[i], torch::TensorOptions().device(p.device));
    torch::Tensor v;
    {
      AutocastScope autocast(p.device.type(), o.precision);
      v = p.transformer(cfg ? torch::cat({x, x}, 0) : x, ids, cond.txt, txt_ids, t, cond.vec,
                        guidance)
              .to(torch::kFloat);
    }
    if (cfg) {
      auto parts = v.chunk(2, 0);
      v = parts[1] + o.cfg_scale * (parts[0] - parts[1]);
    }
    x = x + (schedule[i + 1] - schedule[i]) * v;
  }
  return p.tokens_to_images(x, o.height, o.width).cpu();
}

}  // namespace fluxtrain
