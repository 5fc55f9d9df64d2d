// The whole transformer: parameter names and counts, shapes, gradients (float64 finite
// differences), and the latent token layout.
#include "model/flux.h"

#include <gtest/gtest.h>

#include "model/latents.h"
#include "model/presets.h"

using namespace fluxtrain;

static FluxParams micro(bool guidance) {
  FluxParams p;
  p.in_channels = p.out_channels = 8;
  p.vec_in_dim = 6;
  p.context_in_dim = 5;
  p.hidden_size = 16;
  p.num_heads = 2;
  p.depth = 1;
  p.depth_single_blocks = 1;
  p.axes_dim = {2, 2, 4};
  p.guidance_embed = guidance;
  return p;
}

TEST(Flux, ParameterCountsOfTheRealPresets) {
  auto count = [](const std::string& name) {
    int64_t n = 0;
    for (const auto& s : flux_parameter_shapes(model_preset(name).flux)) n += s.numel();
    return n;
  };
  EXPECT_EQ(count("flux-dev"), 11901408320LL);
  EXPECT_EQ(count("flux-schnell"), 11891178560LL);
}

TEST(Flux, ShapeTableMatchesTheModuleExactly) {
  for (const std::string name : {"tiny", "tiny-guidance"}) {
    auto p = model_preset(name).flux;
    Flux model(p);
    auto params = model->named_parameters();
    auto shapes = flux_parameter_shapes(p);
    ASSERT_EQ(params.size(), shapes.size()) << name;
    size_t i = 0;
    for (const auto& kv : params) {
      EXPECT_EQ(kv.key(), shapes[i].name);
      EXPECT_EQ(kv.value().sizes().vec(), shapes[i].shape) << shapes[i].name;
      ++i;
    }
  }
  // BFL names, spot checks.
  Flux m(model_preset("tiny-guidance").flux);
  auto params = m->named_parameters();
  for (const char* n :
       {"img_in.weight", "guidance_in.in_layer.weight", "txt_in.bias",
        "double_blocks.1.img_attn.qkv.weight", "double_blocks.0.txt_mlp.2.bias",
        "double_blocks.0.img_attn.norm.query_norm.scale", "single_blocks.3.linear2.weight",
        "single_blocks.0.norm.key_norm.scale", "single_blocks.0.modulation.lin.bias",
        "final_layer.adaLN_modulation.1.weight", "final_layer.linear.weight"})
    EXPECT_TRUE(params.contains(n)) << n;
}

TEST(Flux, ForwardShapesAndGuidanceMatters) {
  torch::manual_seed(3);
  auto p = micro(true);
  Flux model(p);
  const int64_t B = 2, Li = 4, Lt = 3;
  auto img = torch::randn({B, Li, 8}), txt = torch::randn({B, Lt, 5});
  auto ids = image_ids(B, 4, 4, torch::kCPU), tids = text_ids(B, Lt, torch::kCPU);
  auto t = torch::tensor({0.3f, 0.9f}), y = torch::randn({B, 6});
  auto out = model(FluxInputs{img, ids, txt, tids, t, y, torch::tensor({1.f, 1.f})});
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{B, Li, 8}));
  auto out2 = model(FluxInputs{img, ids, txt, tids, t, y, torch::tensor({4.f, 4.f})});
  EXPECT_GT((out - out2).abs().max().item<float>(), 1e-4);
  EXPECT_THROW(model(FluxInputs{img, ids, txt, tids, t, y}), c10::Error);
  // Batch items are independent.
  auto single = model(FluxInputs{img.narrow(0, 1, 1), ids.narrow(0, 1, 1), txt.narrow(0, 1, 1),
                                 tids.narrow(0, 1, 1), t.narrow(0, 1, 1), y.narrow(0, 1, 1),
                                 torch::tensor({1.f})});
  EXPECT_LT((single[0] - out[1]).abs().max().item<float>(), 1e-5);
}

TEST(Flux, GradientsOfTheTinyModelMatchFloat64FiniteDifferences) {
  torch::manual_seed(4);
  auto params = model_preset("tiny-guidance").flux;
  params.in_channels = params.out_channels = 8;  // small inputs; the blocks are the tiny preset's
  params.context_in_dim = 5;
  params.vec_in_dim = 6;
  Flux model(params);
  model->to(torch::kDouble);
  // Perturb every parameter away from its init so that no gate or scale is trivially zero.
  {
    torch::NoGradGuard ng;
    for (auto& p : model->parameters()) p.add_(torch::randn_like(p) * 0.3);
  }
  const int64_t B = 2, Li = 4, Lt = 3;
  auto opt = torch::kDouble;
  auto img = torch::randn({B, Li, 8}, opt).requires_grad_(true),
       txt = torch::randn({B, Lt, 5}, opt);
  auto ids = image_ids(B, 4, 4, torch::kCPU).to(opt), tids = text_ids(B, Lt, torch::kCPU).to(opt);
  auto t = torch::tensor({0.3, 0.7}, opt), y = torch::randn({B, 6}, opt),
       g = torch::tensor({2.0, 3.0}, opt);
  auto w = torch::randn({B, Li, 8}, opt);
  auto loss_fn = [&] { return (model(FluxInputs{img, ids, txt, tids, t, y, g}) * w).sum(); };
  auto loss = loss_fn();
  loss.backward();
  // Check d loss / d p for a sample of entries in every parameter tensor and in the input.
  std::vector<std::pair<std::string, torch::Tensor>> checks;
  for (const auto& kv : model->named_parameters()) checks.emplace_back(kv.key(), kv.value());
  checks.emplace_back("input", img);
  torch::NoGradGuard ng;
  int checked = 0;
  for (auto& [name, p] : checks) {
    auto flat = p.view(-1);
    auto grad = p.grad().view(-1);
    for (int64_t j : {int64_t{0}, flat.numel() / 2, flat.numel() - 1}) {
      const double eps = 1e-5,
                   orig = flat[j].item<double>();  // central differences: O(eps^2) error
      flat[j] = orig + eps;
      double up = loss_fn().item<double>();
      flat[j] = orig - eps;
      double down = loss_fn().item<double>();
      flat[j] = orig;
      double fd = (up - down) / (2 * eps), an = grad[j].item<double>();
      EXPECT_NEAR(an, fd, 1e-6 * std::max(1.0, std::abs(fd))) << name << "[" << j << "]";
      ++checked;
    }
  }
  EXPECT_GT(checked, 60);
}

TEST(Latents, PatchifyLayoutAndInverse) {
  // [1, 1, 4, 4] with values 0..15: the first token is the top-left 2x2 block (0, 1, 4, 5).
  auto x = torch::arange(16).to(torch::kFloat).view({1, 1, 4, 4});
  auto t = patchify(x);
  ASSERT_EQ(t.sizes(), (std::vector<int64_t>{1, 4, 4}));
  EXPECT_TRUE(torch::equal(t[0][0], torch::tensor({0.f, 1.f, 4.f, 5.f})));
  EXPECT_TRUE(torch::equal(t[0][1], torch::tensor({2.f, 3.f, 6.f, 7.f})));
  // Channels outermost within a token: (c 2 2).
  auto y = torch::randn({2, 3, 6, 8});
  auto ty = patchify(y);
  EXPECT_EQ(ty.size(2), 12);
  EXPECT_EQ(ty[1][5][4].item<float>(), y[1][1][2][2].item<float>());  // token (1,1), channel 1
  EXPECT_TRUE(torch::equal(unpatchify(ty, 6, 8), y));
  auto ids = image_ids(1, 6, 8, torch::kCPU);
  EXPECT_TRUE(torch::equal(ids[0][5], torch::tensor({0.f, 1.f, 1.f})));
  EXPECT_TRUE(torch::equal(ids[0][11], torch::tensor({0.f, 2.f, 3.f})));
}

TEST(Flux, ControlResidualsAreAddedAfterTheirBlocks) {
  // Three double and three single blocks with two residuals each: as diffusers indexes them,
  // residual i / ceil(3 / 2) follows block i, so blocks 0 and 1 get residual 0 and block 2
  // residual 1; single-block residuals go to the image part of [txt, img] only.
  torch::manual_seed(5);
  auto p = micro(false);
  p.depth = 3;
  p.depth_single_blocks = 3;
  Flux model(p);
  {
    torch::NoGradGuard ng;  // non-zero modulations so that every block does something
    for (auto& w : model->parameters()) w.add_(torch::randn_like(w) * 0.1);
  }
  torch::NoGradGuard ng;
  const int64_t B = 2, Li = 4, Lt = 3, H = p.hidden_size;
  FluxInputs in{torch::randn({B, Li, 8}),    image_ids(B, 4, 4, torch::kCPU),
                torch::randn({B, Lt, 5}),    text_ids(B, Lt, torch::kCPU),
                torch::tensor({0.3f, 0.9f}), torch::randn({B, 6})};
  const auto plain = model->forward(in);
  // No residuals and all-zero residuals: the plain output.
  FluxInputs zeros = in;
  zeros.double_block_residuals = {torch::zeros({B, Li, H}), torch::zeros({B, Li, H})};
  zeros.single_block_residuals = {torch::zeros({B, Li, H})};
  EXPECT_TRUE(torch::equal(model->forward(zeros), plain));

  FluxInputs control = in;
  control.double_block_residuals = {torch::randn({B, Li, H}), torch::randn({B, Li, H})};
  control.single_block_residuals = {torch::randn({B, Li, H}), torch::randn({B, Li, H})};
  // The same pass written out block by block.
  auto img = model->img_in(in.img);
  auto vec = model->time_in(timestep_embedding(in.timesteps, 256)) + model->vector_in(in.y);
  auto txt = model->txt_in(in.txt);
  auto pe = rope_nd(torch::cat({in.txt_ids, in.img_ids}, 1), p.axes_dim, p.theta);
  const int64_t double_for[3] = {0, 0, 1}, single_for[3] = {0, 0, 1};
  for (int64_t i = 0; i < 3; ++i) {
    std::tie(img, txt) =
        model->double_blocks->ptr<DoubleStreamBlockImpl>(i)->forward(img, txt, vec, pe);
    img = img + control.double_block_residuals[double_for[i]];
  }
  auto x = torch::cat({txt, img}, 1);
  for (int64_t i = 0; i < 3; ++i) {
    x = model->single_blocks->ptr<SingleStreamBlockImpl>(i)->forward(x, vec, pe);
    x = torch::cat(
        {x.narrow(1, 0, Lt), x.narrow(1, Lt, Li) + control.single_block_residuals[single_for[i]]},
        1);
  }
  const auto expected = model->final_layer(x.narrow(1, Lt, Li), vec);
  const auto got = model->forward(control);
  EXPECT_TRUE(torch::allclose(got, expected, 1e-5, 1e-6));
  EXPECT_GT((got - plain).abs().max().item<float>(), 1e-3);
  // More residuals than blocks is a bug in the caller.
  control.single_block_residuals.resize(4, torch::zeros({B, Li, H}));
  EXPECT_THROW(model->forward(control), c10::Error);
}
