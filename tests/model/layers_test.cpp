// FLUX building blocks against hand-worked values and plain ATen re-computations.
#include "model/layers.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace fluxtrain;

TEST(TimestepEmbedding, HandWorkedValues) {
  // dim 4: half 2, freqs [1, exp(-ln(1e4)/2) = 0.01], t = 0.5 -> args [500, 5]; [cos, sin].
  auto e = timestep_embedding(torch::tensor({0.5f}), 4);
  ASSERT_EQ(e.sizes(), (std::vector<int64_t>{1, 4}));
  const double want[4] = {std::cos(500.0), std::cos(5.0), std::sin(500.0), std::sin(5.0)};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(e[0][i].item<float>(), want[i], 2e-4) << i;
  // t = 0 -> cos = 1, sin = 0.
  auto z = timestep_embedding(torch::zeros({2}), 256);
  EXPECT_TRUE(torch::equal(z.narrow(1, 0, 128), torch::ones({2, 128})));
  EXPECT_TRUE(torch::equal(z.narrow(1, 128, 128), torch::zeros({2, 128})));
}

TEST(Rope, HandWorkedRotation) {
  // One position (1), dim 4, theta 1e4: w = [1, 0.01]. x = [1, 0, 0, 1] -> pairs rotated by 1 and
  // 0.01 rad: [cos 1, sin 1, -sin 0.01, cos 0.01].
  auto pe = rope(torch::ones({1, 1}), 4, 10000.0);  // [1, 1, 2, 2, 2]
  ASSERT_EQ(pe.sizes(), (std::vector<int64_t>{1, 1, 2, 2, 2}));
  auto x = torch::tensor({1.f, 0.f, 0.f, 1.f}).view({1, 1, 1, 4});
  auto y = apply_rope(x, pe.unsqueeze(1)).flatten();
  const double want[4] = {std::cos(1.0), std::sin(1.0), -std::sin(0.01), std::cos(0.01)};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[i].item<float>(), want[i], 1e-6) << i;
}

TEST(Rope, ThreeAxesConcatenateAndScoresDependOnRelativePosition) {
  std::vector<int64_t> axes = {2, 4, 6};
  auto ids = torch::tensor({0.f, 3.f, 5.f, 0.f, 1.f, 2.f}).view({1, 2, 3});
  auto pe = rope_nd(ids, axes, 10000.0);
  ASSERT_EQ(pe.sizes(), (std::vector<int64_t>{1, 1, 2, 6, 2, 2}));
  // Axis 1 (dims 2..5 -> pairs 1..2) of token 0 uses position 3 with w = theta^(-2i/4).
  EXPECT_NEAR(pe[0][0][0][1][0][0].item<float>(), std::cos(3.0), 1e-6);
  EXPECT_NEAR(pe[0][0][0][2][1][0].item<float>(), std::sin(3.0 * std::pow(1e4, -0.5)), 1e-6);
  // Axis 2 pair 0 of token 1: position 2, w = 1.
  EXPECT_NEAR(pe[0][0][1][3][0][1].item<float>(), -std::sin(2.0), 1e-6);
  // q.k after RoPE depends only on the position difference.
  torch::manual_seed(0);
  auto q = torch::randn({1, 1, 1, 12}, torch::kDouble),
       k = torch::randn({1, 1, 1, 12}, torch::kDouble);
  auto score = [&](float a, float b) {
    auto pa = rope_nd(torch::full({1, 1, 3}, a), axes, 10000.0);
    auto pb = rope_nd(torch::full({1, 1, 3}, b), axes, 10000.0);
    return (apply_rope(q, pa) * apply_rope(k, pb)).sum().item<double>();
  };
  EXPECT_NEAR(score(5, 2), score(13, 10), 1e-5);
  EXPECT_GT(std::abs(score(5, 2) - score(5, 4)), 1e-3);
}

TEST(Attention, MatchesPlainSoftmaxAttentionWithRope) {
  torch::manual_seed(1);
  const int64_t B = 2, h = 3, L = 5, D = 8;
  auto q = torch::randn({B, h, L, D}), k = torch::randn({B, h, L, D}),
       v = torch::randn({B, h, L, D});
  auto ids = torch::randint(0, 7, {B, L, 3}).to(torch::kFloat);
  auto pe = rope_nd(ids, {2, 2, 4}, 10000.0);
  auto out = attention(q, k, v, pe);  // [B, L, h*D]
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{B, L, h * D}));
  // Reference: rotate pairs by explicit angles in float64, then softmax(q k^T / sqrt(D)) v.
  auto rot = [&](const torch::Tensor& x) {
    auto y = x.to(torch::kDouble).clone();
    std::vector<int64_t> axes = {2, 2, 4};
    for (int64_t b = 0; b < B; ++b)
      for (int64_t l = 0; l < L; ++l) {
        int64_t pair = 0;
        for (int a = 0; a < 3; ++a)
          for (int64_t i = 0; i < axes[a] / 2; ++i, ++pair) {
            double w = std::pow(10000.0, -2.0 * i / axes[a]);
            double ang = ids[b][l][a].item<double>() * w;
            auto x0 = x.index({b, torch::indexing::Slice(), l, 2 * pair}).to(torch::kDouble);
            auto x1 = x.index({b, torch::indexing::Slice(), l, 2 * pair + 1}).to(torch::kDouble);
            y.index_put_({b, torch::indexing::Slice(), l, 2 * pair},
                         x0 * std::cos(ang) - x1 * std::sin(ang));
            y.index_put_({b, torch::indexing::Slice(), l, 2 * pair + 1},
                         x0 * std::sin(ang) + x1 * std::cos(ang));
          }
      }
    return y;
  };
  auto qr = rot(q), kr = rot(k);
  auto w = torch::softmax(torch::matmul(qr, kr.transpose(-1, -2)) / std::sqrt(double(D)), -1);
  auto ref = torch::matmul(w, v.to(torch::kDouble)).permute({0, 2, 1, 3}).reshape({B, L, h * D});
  EXPECT_LT((out.to(torch::kDouble) - ref).abs().max().item<double>(), 1e-5);
}

TEST(Modulation, HandWorkedModulateAndChunkOrder) {
  // LayerNorm([1,2,3,4]) = (x - 2.5) / sqrt(1.25 + 1e-6); x_mod = (1 + scale) * that + shift.
  auto x = torch::tensor({1.f, 2.f, 3.f, 4.f}).view({1, 1, 4});
  ModulationOut m{torch::full({1, 1, 4}, 0.5f), torch::full({1, 1, 4}, 1.0f), torch::Tensor()};
  auto y = modulate(x, m).flatten();
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(y[i].item<float>(), 2.0 * (i + 1 - 2.5) / std::sqrt(1.25 + 1e-6) + 0.5, 1e-5);
  // lin(silu(vec)) is chunked as (shift, scale, gate) x 2.
  Modulation mod(2, true);
  torch::NoGradGuard ng;
  mod->lin->weight.zero_();
  mod->lin->bias.copy_(torch::arange(12).to(torch::kFloat));
  auto out = mod(torch::zeros({1, 2}));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_TRUE(torch::equal(out[0].shift.flatten(), torch::tensor({0.f, 1.f})));
  EXPECT_TRUE(torch::equal(out[0].scale.flatten(), torch::tensor({2.f, 3.f})));
  EXPECT_TRUE(torch::equal(out[0].gate.flatten(), torch::tensor({4.f, 5.f})));
  EXPECT_TRUE(torch::equal(out[1].gate.flatten(), torch::tensor({10.f, 11.f})));
  EXPECT_EQ(Modulation(2, false)(torch::zeros({1, 2})).size(), 1u);
}

TEST(RMSNorm, MatchesFormula) {
  RMSNorm n(4);
  torch::NoGradGuard ng;
  n->scale.copy_(torch::tensor({1.f, 2.f, 3.f, 4.f}));
  auto x = torch::tensor({1.f, -2.f, 3.f, 0.5f}).view({1, 4});
  double ms = (1 + 4 + 9 + 0.25) / 4.0;
  auto y = n(x).flatten();
  const float xs[4] = {1, -2, 3, 0.5};
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(y[i].item<float>(), xs[i] / std::sqrt(ms + 1e-6) * (i + 1), 1e-5);
}

TEST(Blocks, ShapesAndLastLayerShiftScaleOrder) {
  torch::manual_seed(2);
  const int64_t B = 2, Li = 6, Lt = 3, H = 16, heads = 2;
  auto pe = rope_nd(torch::zeros({B, Li + Lt, 3}), {2, 2, 4}, 10000.0);
  DoubleStreamBlock dbl(H, heads, 4.0, true);
  auto [img, txt] =
      dbl(torch::randn({B, Li, H}), torch::randn({B, Lt, H}), torch::randn({B, H}), pe);
  EXPECT_EQ(img.sizes(), (std::vector<int64_t>{B, Li, H}));
  EXPECT_EQ(txt.sizes(), (std::vector<int64_t>{B, Lt, H}));
  SingleStreamBlock sgl(H, heads, 4.0);
  EXPECT_EQ(sgl->linear1->weight.sizes(), (std::vector<int64_t>{3 * H + 4 * H, H}));
  EXPECT_EQ(sgl->linear2->weight.sizes(), (std::vector<int64_t>{H, H + 4 * H}));
  EXPECT_EQ(sgl(torch::randn({B, Li + Lt, H}), torch::randn({B, H}), pe).sizes(),
            (std::vector<int64_t>{B, Li + Lt, H}));
  // Final layer: first half of adaLN output is shift, second half scale.
  LastLayer last(4, 3);
  torch::NoGradGuard ng;
  auto lin = last->adaLN_modulation[1]->as<Linear>();
  lin->weight.zero_();
  lin->bias.copy_(torch::tensor({1.f, 1.f, 1.f, 1.f, 0.f, 0.f, 0.f, 0.f}));  // shift 1, scale 0
  last->linear->weight.copy_(torch::eye(3, 4));
  last->linear->bias.zero_();
  auto x = torch::tensor({1.f, 2.f, 3.f, 4.f}).view({1, 1, 4});
  auto y = last(x, torch::zeros({1, 4})).flatten();
  EXPECT_NEAR(y[0].item<float>(), (1 - 2.5) / std::sqrt(1.25 + 1e-6) + 1, 1e-5);
}
