// The one transformer call: inputs built from tokens, text and timesteps (position ids,
// guidance only where the model has a guidance input), and the call's casts and autocast.
#include "model/flux_call.h"

#include <gtest/gtest.h>

#include "model/latents.h"
#include "model/presets.h"

using namespace fluxtrain;

TEST(FluxCall, InputsCarryIdsAndGuidanceOnlyWhereTheModelTakesIt) {
  const auto p = model_preset("tiny").flux, g = model_preset("tiny-guidance").flux;
  const int64_t B = 3, h = 6, w = 4, Lt = 5;
  auto tokens = torch::randn({B, (h / 2) * (w / 2), p.in_channels});
  auto txt = torch::randn({B, Lt, p.context_in_dim}), vec = torch::randn({B, p.vec_in_dim});
  auto t = torch::rand({B});
  auto in = make_flux_inputs(p, tokens, h, w, txt, vec, t, 3.5);
  EXPECT_TRUE(torch::equal(in.img_ids, image_ids(B, h, w, torch::kCPU)));
  EXPECT_TRUE(torch::equal(in.txt_ids, torch::zeros({B, Lt, 3})));
  // Row 1 of the 3 x 2 token grid, column 1: ids (0, 1, 1) at token 1 * 2 + 1.
  EXPECT_TRUE(torch::equal(in.img_ids[0][3], torch::tensor({0.f, 1.f, 1.f})));
  EXPECT_FALSE(in.guidance.has_value());
  auto ing = make_flux_inputs(g, tokens, h, w, txt, vec, t, 3.5);
  ASSERT_TRUE(ing.guidance.has_value());
  EXPECT_TRUE(torch::equal(*ing.guidance, torch::full({B}, 3.5f)));
  EXPECT_TRUE(in.double_block_residuals.empty() && in.single_block_residuals.empty());
}

TEST(FluxCall, Bf16WeightsGetBf16InputsAndFp32WeightsAreUntouched) {
  torch::manual_seed(2);
  auto preset = model_preset("tiny-guidance");
  Flux model(preset.flux);
  {
    torch::NoGradGuard ng;
    for (auto& w : model->parameters()) w.add_(torch::randn_like(w) * 0.05);
  }
  torch::NoGradGuard ng;
  const int64_t B = 2, Lt = 4;
  auto in =
      make_flux_inputs(preset.flux, torch::randn({B, 16, preset.flux.in_channels}), 8, 8,
                       torch::randn({B, Lt, preset.flux.context_in_dim}),
                       torch::randn({B, preset.flux.vec_in_dim}), torch::tensor({0.2f, 0.7f}), 2.0);
  // fp32 weights, fp32 precision: exactly forward().
  EXPECT_TRUE(torch::equal(predict_velocity(*model, in, torch::kFloat), model->forward(in)));
  // bf16 weights: the same as forward() on inputs cast to bf16 by hand (fp32 inputs would not
  // even run against bf16 weights without autocast).
  model->to(torch::kBFloat16);
  FluxInputs cast = in;
  for (auto* x : {&cast.img, &cast.txt, &cast.timesteps, &cast.y}) *x = x->to(torch::kBFloat16);
  cast.guidance = cast.guidance->to(torch::kBFloat16);
  const auto out = predict_velocity(*model, in, torch::kFloat);
  EXPECT_EQ(out.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(out, model->forward(cast)));
  EXPECT_THROW(model->forward(in), c10::Error);
}
