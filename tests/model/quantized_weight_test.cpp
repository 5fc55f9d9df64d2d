// 8-bit frozen weights: int8 and FP8 E4M3 codes and scales by hand, their error bounds, the
// linear layer's forward within the bound that follows from them and its input gradient equal to
// plain ATen's with the dequantized weight; a FLUX model loaded straight into 8 bits.
#include "model/quantized_weight.h"

#include <gtest/gtest.h>

#include <cmath>

#include "fixtures/flux_repo_fixture.h"
#include "model/flux_weights.h"
#include "model/linear.h"
#include "test_util.h"

using namespace fluxtrain;
using fluxtrain::testing::TempDir;

namespace {

// Rows of very different magnitudes, a zero row, both signs.
torch::Tensor test_weight(uint64_t seed) {
  torch::manual_seed(seed);
  auto w =
      torch::randn({6, 40}) * torch::tensor({1.0f, 0.01f, 30.0f, 1e-4f, 0.0f, 2.0f}).view({6, 1});
  return w;
}

}  // namespace

TEST(QuantizedWeight, Int8IsRowAbsmaxOver127RoundedToNearest) {
  const auto w = test_weight(1);
  const auto q = QuantizedWeight::quantize(w, BaseWeights::kInt8);
  EXPECT_EQ(q.codes.scalar_type(), torch::kInt8);
  EXPECT_EQ(q.scale.sizes(), (std::vector<int64_t>{6, 1}));
  const auto amax = w.abs().amax({1}, true);
  for (int64_t i = 0; i < 6; ++i) {
    const float expected = i == 4 ? 1.0f : amax[i][0].item<float>() / 127.0f;  // a zero row: 1
    EXPECT_EQ(q.scale[i][0].item<float>(), expected) << i;
  }
  EXPECT_EQ(q.codes.abs().amax({1})[0].item<int>(), 127);  // each row's largest hits 127
  const auto d = q.dequantize(torch::kFloat);
  const auto err = (d - w).abs();
  EXPECT_TRUE((err <= q.scale / 2 * (1 + 1e-6)).all().item<bool>());
  EXPECT_EQ(d[4].abs().max().item<float>(), 0.0f);
  EXPECT_EQ(q.bytes(), 6 * 40 + 6 * 4);
}

TEST(QuantizedWeight, Fp8CodesAreTheE4M3FNBytes) {
  // A row whose largest value is 448 has scale 1: 448 = 0 1111 110 (0x7e), 1 = 0 0111 000 (0x38),
  // -2 = 1 1000 000 (0xc0), 0.5 = 0 0110 000 (0x30), 2^-9 (the least subnormal) = 0x01,
  // 1.0625 lies halfway between 1 and 1.125: the smaller magnitude, 0x38; 1.07 rounds to 1.125
  // (0x39); 500 saturates to 448.
  auto w = torch::tensor({448.0f, 1.0f, -2.0f, 0.5f, std::ldexp(1.0f, -9), 1.0625f, 1.07f, 0.0f,
                          -448.0f, 500.0f})
               .view({1, 10});
  const auto q = QuantizedWeight::quantize(w, BaseWeights::kFp8);
  EXPECT_EQ(q.codes.scalar_type(), torch::kUInt8);
  EXPECT_FLOAT_EQ(q.scale[0][0].item<float>(), 500.0f / 448.0f);
  // With scale 500/448 the codes are of w * 448/500: check the scale-1 case separately.
  auto w1 = w.clone();
  w1[0][9] = 3.0f;
  const auto q1 = QuantizedWeight::quantize(w1, BaseWeights::kFp8);
  EXPECT_EQ(q1.scale[0][0].item<float>(), 1.0f);
  const std::vector<int> expected = {0x7e, 0x38, 0xc0, 0x30, 0x01, 0x38, 0x39, 0x00, 0xfe, 0x44};
  for (int64_t j = 0; j < 10; ++j) EXPECT_EQ(q1.codes[0][j].item<int>(), expected[j]) << j;
  const auto d = q1.dequantize(torch::kFloat);
  for (int64_t j : {0, 1, 2, 3, 4, 7, 8, 9})
    EXPECT_EQ(d[0][j].item<float>(), w1[0][j].item<float>());
  EXPECT_EQ(d[0][5].item<float>(), 1.0f);
  EXPECT_EQ(d[0][6].item<float>(), 1.125f);
  // Every finite E4M3 value comes back exactly.
  auto values = fp8_e4m3_values(torch::kCPU);
  auto finite = values.index({torch::isfinite(values)}).view({1, -1});
  EXPECT_EQ(finite.numel(), 254);
  EXPECT_TRUE(torch::equal(
      QuantizedWeight::quantize(finite, BaseWeights::kFp8).dequantize(torch::kFloat), finite));
}

TEST(QuantizedWeight, Fp8ErrorIsAtMostOneSixteenthOrTheSubnormalStep) {
  const auto w = test_weight(2);
  const auto q = QuantizedWeight::quantize(w, BaseWeights::kFp8);
  const auto err = (q.dequantize(torch::kFloat) - w).abs();
  const auto bound = w.abs() / 16 + q.scale * std::ldexp(1.0, -10);
  EXPECT_TRUE((err <= bound * (1 + 1e-6)).all().item<bool>());
}

TEST(QuantizedWeight, LinearForwardWithinTheBoundAndInputGradientAsPlainAten) {
  torch::manual_seed(3);
  const auto w = test_weight(4);
  const auto bias = torch::randn({6});
  const auto x = torch::randn({3, 5, 40});
  for (BaseWeights kind : {BaseWeights::kInt8, BaseWeights::kFp8}) {
    const auto q = QuantizedWeight::quantize(w, kind);
    const auto y = quantized_linear(x, q, bias);
    const auto exact =
        torch::matmul(x.to(torch::kDouble), w.to(torch::kDouble).t()) + bias.to(torch::kDouble);
    // |y_q - y|_i <= sum_j |x_j| e_ij with e the per-element bound of the kind.
    const auto e = kind == BaseWeights::kInt8 ? (q.scale / 2).expand_as(w)
                                              : w.abs() / 16 + q.scale * std::ldexp(1.0, -10);
    const auto bound = torch::matmul(x.abs().to(torch::kDouble), e.to(torch::kDouble).t());
    EXPECT_TRUE(((y.to(torch::kDouble) - exact).abs() <= bound + 1e-5).all().item<bool>())
        << base_weights_name(kind);
    // The input's gradient is g W_q, W_q the dequantized weight; the weight gets none.
    auto xg = x.clone().requires_grad_(true);
    auto bg = bias.clone().requires_grad_(true);
    const auto g = torch::randn({3, 5, 6});
    const auto yg = quantized_linear(xg, q, bg);  // (the autograd function's path)
    (yg * g).sum().backward();
    const auto wq = q.dequantize(torch::kFloat);
    EXPECT_LT((xg.grad() - torch::matmul(g, wq)).abs().max().item<float>(), 1e-5);
    EXPECT_LT((bg.grad() - g.sum(0).sum(0)).abs().max().item<float>(), 1e-5);
    // The no-grad path (y) and the autograd path compute the same values; both are linear with
    // the dequantized weight.
    EXPECT_TRUE(torch::equal(yg.detach(), y));
    EXPECT_TRUE(torch::equal(y, torch::nn::functional::linear(x, wq, bias)));
  }
}

TEST(QuantizedWeight, LinearLayerQuantizesInPlaceAndWaitsForItsWeightsInAScope) {
  torch::manual_seed(5);
  Linear dense(40, 6);
  const auto w = dense->weight.detach().clone();
  const auto x = torch::randn({2, 40});
  dense->quantize_weight(BaseWeights::kInt8);
  EXPECT_EQ(dense->weight.numel(), 0);
  EXPECT_FALSE(dense->weight.requires_grad());
  ASSERT_TRUE(dense->is_quantized());
  EXPECT_TRUE(
      torch::equal(dense->dense_weight(),
                   QuantizedWeight::quantize(w, BaseWeights::kInt8).dequantize(torch::kFloat)));
  EXPECT_TRUE(torch::equal(
      dense->forward(x),
      torch::nn::functional::linear(
          x, QuantizedWeight::quantize(w, BaseWeights::kInt8).dequantize(torch::kFloat),
          dense->bias)));
  Linear waiting{nullptr};
  {
    LinearStorageScope scope(BaseWeights::kFp8);
    waiting = Linear(40, 6);
  }
  EXPECT_EQ(LinearStorageScope::current(), BaseWeights::kDense);
  EXPECT_EQ(waiting->weight.numel(), 0);
  EXPECT_THROW(waiting->forward(x), c10::Error);
  waiting->set_quantized(QuantizedWeight::quantize(w, BaseWeights::kFp8));
  // Plain ATen with the dequantised fp8 weight of `w`: the layer uses what it was given.
  const auto fp8_w = QuantizedWeight::quantize(w, BaseWeights::kFp8).dequantize(torch::kFloat);
  EXPECT_TRUE(torch::allclose(waiting->forward(x),
                              torch::nn::functional::linear(x, fp8_w, waiting->bias), 1e-5, 1e-6));
  // A layer without a bias, under grad (the FLUX variant with qkv_bias false).
  Linear no_bias(40, 6, /*with_bias=*/false);
  no_bias->quantize_weight(BaseWeights::kInt8);
  auto xg = x.clone().requires_grad_(true);
  const auto g = torch::randn({2, 6});
  (no_bias->forward(xg) * g).sum().backward();
  EXPECT_LT((xg.grad() - torch::matmul(g, no_bias->dense_weight())).abs().max().item<float>(),
            1e-5);
}

TEST(QuantizedWeight, FluxLoadsStraightInto8BitsWithEmbeddersDense) {
  TempDir tmp;
  const std::string path =
      fixtures::write_tiny_flux_repo(tmp / "model", fixtures::RepoLayout::kBfl, true, 6);
  const FluxWeights weights = inspect_flux_weights(path);
  Flux dense(weights.params);
  load_flux_weights(*dense, weights);
  dense->eval();
  for (BaseWeights kind : {BaseWeights::kInt8, BaseWeights::kFp8}) {
    Flux q{nullptr};
    {
      LinearStorageScope scope(kind);
      q = Flux(weights.params);
    }
    load_flux_weights(*q, weights);
    q->eval();
    auto original = dense->named_parameters();
    int64_t quantized = 0;
    for (const auto& [name, layer] : flux_linear_layers(*q)) {
      const bool block = is_flux_block_name(name);
      EXPECT_EQ(layer->is_quantized(), block) << name;
      const auto& w = original[name + ".weight"];
      if (!block) {
        EXPECT_TRUE(torch::equal(layer->weight, w)) << name;
        continue;
      }
      ++quantized;
      EXPECT_TRUE(torch::equal(layer->dense_weight(),
                               QuantizedWeight::quantize(w, kind).dequantize(torch::kFloat)))
          << name;
    }
    EXPECT_GT(quantized, 0);
    for (const auto& item : q->named_parameters())
      if (item.value().numel() > 0)
        EXPECT_TRUE(torch::equal(item.value(), original[item.key()])) << item.key();
    // The whole model's output stays close to the dense one's (measured: int8 0.42 %, fp8 1.7 %
    // relative L2 on this model).
    torch::NoGradGuard no_grad;
    torch::manual_seed(7);
    const auto& p = weights.params;
    FluxInputs in;
    in.img = torch::randn({1, 16, p.in_channels});
    in.img_ids = torch::zeros({1, 16, 3});
    in.txt = torch::randn({1, 4, p.context_in_dim});
    in.txt_ids = torch::zeros({1, 4, 3});
    in.timesteps = torch::full({1}, 0.5);
    in.y = torch::randn({1, p.vec_in_dim});
    if (p.guidance_embed) in.guidance = torch::full({1}, 3.5);
    const auto a = dense->forward(in), b = q->forward(in);
    const double rel = ((b - a).norm() / a.norm()).item<double>();
    std::printf("%s base: relative L2 error of the output %.4f\n", base_weights_name(kind).c_str(),
                rel);
    EXPECT_LT(rel, kind == BaseWeights::kInt8 ? 0.008 : 0.035) << base_weights_name(kind);
  }
}
