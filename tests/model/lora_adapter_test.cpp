// fluxtrain's Linear and the LoRA / DoRA adapters on it: the layer initialises as
// torch::nn::Linear does; PEFT's initialisation leaves the output unchanged; the adapted output
// equals the merged weight's; DoRA against a plain-ATen re-implementation of its formula, values
// and gradients; dropout masks replayed by activation checkpointing.
#include "model/lora_adapter.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cmath>

#include "model/activation_checkpoint.h"

using namespace fluxtrain;
namespace F = torch::nn::functional;

namespace {

at::Generator generator(uint64_t seed) {
  return at::detail::createCPUGenerator(seed);
}

// A layer with a non-zero up matrix (a trained adapter) of rank r, alpha a.
std::shared_ptr<LoraAdapter> trained_adapter(Linear& layer, int64_t r, double a, bool dora,
                                             uint64_t seed) {
  auto ad =
      std::make_shared<LoraAdapter>(*layer, LoraAdapterOptions{r, a, 0.0, dora}, generator(seed));
  torch::NoGradGuard ng;
  torch::manual_seed(seed);
  ad->up.copy_(torch::randn(ad->up.sizes()) * 0.1);
  if (dora) ad->magnitude.mul_(1 + 0.2 * torch::rand(ad->magnitude.sizes()));
  layer->adapter = ad;
  return ad;
}

}  // namespace

TEST(Linear, InitialisesAsTorchLinearAndKeepsItsNames) {
  torch::manual_seed(7);
  torch::nn::Linear ref(12, 5);
  torch::manual_seed(7);
  Linear ours(12, 5);
  EXPECT_TRUE(torch::equal(ours->weight, ref->weight));
  EXPECT_TRUE(torch::equal(ours->bias, ref->bias));
  auto x = torch::randn({3, 12});
  EXPECT_TRUE(torch::equal(ours(x), ref(x)));
  std::vector<std::string> names;
  for (const auto& kv : ours->named_parameters()) names.push_back(kv.key());
  EXPECT_EQ(names, (std::vector<std::string>{"weight", "bias"}));
  Linear no_bias(4, 2, false);
  EXPECT_EQ(no_bias->named_parameters().size(), 1u);
  EXPECT_FALSE(no_bias->bias.defined());
}

TEST(LoraAdapter, PeftInitialisationLeavesTheOutputUnchanged) {
  torch::manual_seed(1);
  Linear layer(64, 48);
  auto x = torch::randn({2, 5, 64});
  const auto base = layer(x);
  for (bool dora : {false, true}) {
    auto a =
        std::make_shared<LoraAdapter>(*layer, LoraAdapterOptions{8, 16.0, 0.0, dora}, generator(3));
    layer->adapter = a;
    EXPECT_TRUE(torch::equal(layer(x), base)) << "dora " << dora;
    // A ~ U(-1/sqrt(in), 1/sqrt(in)) (Kaiming-uniform, a = sqrt(5)); B = 0.
    const double bound = 1.0 / std::sqrt(64.0);
    EXPECT_LE(a->down.abs().max().item<double>(), bound);
    EXPECT_NEAR(a->down.std().item<double>(), bound / std::sqrt(3.0), 0.1 * bound);
    EXPECT_EQ(a->up.abs().max().item<double>(), 0.0);
    EXPECT_EQ(a->scale, 2.0);
    EXPECT_TRUE(a->down.requires_grad() && a->up.requires_grad());
    if (dora) EXPECT_TRUE(torch::allclose(a->magnitude, layer->weight.norm(2, {1})));
  }
  // The same seed draws the same down matrix.
  LoraAdapter a1(*layer, {8, 8.0, 0.0, false}, generator(3)),
      a2(*layer, {8, 8.0, 0.0, false}, generator(3));
  EXPECT_TRUE(torch::equal(a1.down, a2.down));
}

TEST(LoraAdapter, ForwardEqualsTheMergedWeightsForward) {
  torch::manual_seed(2);
  Linear layer(32, 24);
  auto ad = trained_adapter(layer, 4, 8.0, false, 5);
  auto x = torch::randn({3, 7, 32});
  // Independent: W + (alpha / r) B A by hand.
  auto merged = layer->weight + 2.0 * torch::mm(ad->up, ad->down);
  EXPECT_TRUE(torch::allclose(layer(x), F::linear(x, merged, layer->bias), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(ad->merged_weight(layer->weight), merged, 1e-6, 1e-7));
}

TEST(LoraAdapter, DoraMatchesAPlainReimplementationInValueAndGradient) {
  torch::manual_seed(4);
  Linear layer(16, 12);
  for (auto& p : layer->parameters()) p.set_requires_grad(false);
  auto ad = trained_adapter(layer, 3, 6.0, true, 9);
  auto x = torch::randn({5, 16});
  auto g = torch::randn({5, 12});
  // fluxtrain (PEFT's rearranged form).
  auto y = layer(x);
  (y * g).sum().backward();
  // Plain formula: W' = m * V / ||V||_row, V = W + s B A, the norm detached (DoRA paper 4.3).
  auto m = ad->magnitude.detach().clone().requires_grad_(true);
  auto A = ad->down.detach().clone().requires_grad_(true);
  auto B = ad->up.detach().clone().requires_grad_(true);
  auto V = layer->weight + 2.0 * torch::mm(B, A);
  auto Wp = (m / V.norm(2, {1}).detach()).unsqueeze(1) * V;
  auto y_ref = torch::mm(x, Wp.t()) + layer->bias;
  (y_ref * g).sum().backward();
  EXPECT_TRUE(torch::allclose(y, y_ref, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(ad->magnitude.grad(), m.grad(), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(ad->down.grad(), A.grad(), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(ad->up.grad(), B.grad(), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(ad->merged_weight(layer->weight), Wp.detach(), 1e-5, 1e-6));
}

TEST(LoraAdapter, DropoutOnlyInTrainingAndReplayedByActivationCheckpointing) {
  torch::manual_seed(6);
  Linear layer(20, 10);
  for (auto& p : layer->parameters()) p.set_requires_grad(false);
  auto ad =
      std::make_shared<LoraAdapter>(*layer, LoraAdapterOptions{4, 4.0, 0.5, false}, generator(1));
  {
    torch::NoGradGuard ng;
    ad->up.normal_();
  }
  layer->adapter = ad;
  auto x = torch::randn({8, 20});
  layer->eval();
  const auto clean = layer(x);
  EXPECT_TRUE(torch::allclose(clean, F::linear(x, ad->merged_weight(layer->weight), layer->bias),
                              1e-5, 1e-6));
  layer->train();
  torch::manual_seed(11);
  EXPECT_FALSE(torch::allclose(layer(x), clean));
  // The same draws with and without checkpointing: equal gradients.
  auto grads = [&](bool checkpoint) {
    ad->down.mutable_grad() = torch::Tensor();
    ad->up.mutable_grad() = torch::Tensor();
    torch::manual_seed(21);
    auto fn = [&](const std::vector<torch::Tensor>& in) {
      return std::vector<torch::Tensor>{layer(in[0]).pow(2)};
    };
    auto y = checkpoint ? activation_checkpoint(fn, {x})[0] : fn({x})[0];
    y.sum().backward();
    return std::make_pair(ad->down.grad().clone(), ad->up.grad().clone());
  };
  auto plain = grads(false), checkpointed = grads(true);
  EXPECT_TRUE(torch::equal(plain.first, checkpointed.first));
  EXPECT_TRUE(torch::equal(plain.second, checkpointed.second));
}
