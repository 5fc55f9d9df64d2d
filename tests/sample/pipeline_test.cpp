// Pipeline assembly, autoencoders, and the sampler's determinism and guidance arithmetic.
#include "sample/pipeline.h"

#include <gtest/gtest.h>

#include "core/errors.h"
#include "model/autoencoder.h"
#include "model/latents.h"
#include "sample/sampler.h"

using namespace fluxtrain;

TEST(Autoencoder, IdentityFoldsPixelBlocksLosslessly) {
  IdentityAutoencoder ae(2);
  auto x = torch::arange(2 * 3 * 4 * 4).to(torch::kFloat).view({2, 3, 4, 4});
  auto z = ae.encode(x);
  ASSERT_EQ(z.sizes(), (std::vector<int64_t>{2, 12, 2, 2}));
  // Channel c*4 + dy*2 + dx of latent pixel (i, j) is pixel (2i+dy, 2j+dx) of channel c.
  EXPECT_EQ(z[1][4 * 2 + 3][1][0].item<float>(), x[1][2][3][1].item<float>());
  EXPECT_TRUE(torch::equal(ae.decode(z), x));
}

TEST(Autoencoder, ProjectionStandInHasTheVaeShapeAndOrthonormalRows) {
  ProjectionAutoencoder ae(8, 16, 3);
  torch::manual_seed(0);
  auto x = torch::randn({2, 3, 32, 48});
  auto z = ae.encode(x);
  ASSERT_EQ(z.sizes(), (std::vector<int64_t>{2, 16, 4, 6}));
  // Orthonormal rows: encode(decode(z)) == z.
  EXPECT_LT((ae.encode(ae.decode(z)) - z).abs().max().item<float>(), 1e-5);
  EXPECT_EQ(ae.decode(z).sizes(), x.sizes());
}

TEST(Pipeline, PresetsNeedingRealEncodersAreRefusedUnlessStandIns) {
  EXPECT_THROW(Pipeline::create("flux-schnell", torch::kCPU, 0), UserError);
  auto p = Pipeline::create("tiny", torch::kCPU, 0);
  EXPECT_EQ(p.text->context_dim(), p.preset.flux.context_in_dim);
  EXPECT_EQ(p.text->vec_dim(), p.preset.flux.vec_in_dim);
  EXPECT_EQ(4 * p.autoencoder->latent_channels(), p.preset.flux.in_channels);
  EXPECT_EQ(p.image_tokens(32, 32), 64);
  EXPECT_THROW(p.check_resolution(30, 32), UserError);
  // zero_init: the untrained model predicts zero velocity.
  auto tokens = p.images_to_tokens(torch::rand({1, 3, 32, 32}) * 2 - 1);
  auto cond = p.text->encode({"a red circle"}, torch::kCPU);
  auto v = p.transformer(FluxInputs{tokens, image_ids(1, 16, 16, torch::kCPU), cond.txt,
                                    text_ids(1, cond.txt.size(1), torch::kCPU),
                                    torch::tensor({0.5f}), cond.vec});
  EXPECT_EQ(v.abs().max().item<float>(), 0.0f);
}

TEST(Sampler, ImagesDoNotDependOnTheRestOfTheBatchAndFollowTheSeed) {
  auto p = Pipeline::create("tiny", torch::kCPU, 1, /*zero_init_output=*/false);
  SampleOptions o = default_sample_options(p.preset);
  o.steps = 3;
  o.seed = 9;
  auto both = generate_images(p, {"a red circle in the center", "a blue square at the top"}, o);
  auto first = generate_images(p, {"a red circle in the center"}, o);
  ASSERT_EQ(both.sizes(), (std::vector<int64_t>{2, 3, 32, 32}));
  EXPECT_LT((both[0] - first[0]).abs().max().item<float>(), 1e-5);
  o.seed = 10;
  EXPECT_GT((generate_images(p, {"a red circle in the center"}, o)[0] - first[0])
                .abs()
                .max()
                .item<float>(),
            0.1);
}

TEST(Sampler, ClassifierFreeGuidanceExtrapolatesFromTheEmptyPrompt) {
  // One Euler step from t = 1: image = noise - v, so with guidance s the result is
  // img(empty) + s (img(prompt) - img(empty)) wherever nothing was clamped.
  auto p = Pipeline::create("tiny", torch::kCPU, 2, false);
  SampleOptions o = default_sample_options(p.preset);
  o.steps = 1;
  auto cond = generate_images(p, {"a green triangle on the left"}, o);
  auto uncond = generate_images(p, {""}, o);
  o.cfg_scale = 3.0;
  auto guided = generate_images(p, {"a green triangle on the left"}, o);
  auto expected = uncond + 3.0 * (cond - uncond);
  auto inside = (cond.abs() < 0.99) & (uncond.abs() < 0.99) & (expected.abs() < 0.99);
  ASSERT_GT(inside.sum().item<int64_t>(), 100);
  EXPECT_LT((guided - expected).masked_select(inside).abs().max().item<float>(), 1e-4);
  EXPECT_GT((guided - cond).abs().max().item<float>(), 1e-3);
}
