// The memory plan: its weight, gradient and optimizer parts equal what the built models hold
// (parameters counted on real FluxImpl / LoRA / ControlNet / 8-bit modules); the savers move the
// parts they should by the amounts they should; the activations by hand for the tiny preset; and
// memory_budget_gb turns savers on in order, never one the user set.
#include "train/memory_plan.h"

#include <gtest/gtest.h>

#include "model/controlnet.h"
#include "model/presets.h"
#include "test_util.h"
#include "train/lora_model.h"
#include "train/train_config.h"

using namespace fluxtrain;
using fluxtrain::testing::error_of;

namespace {

TrainOptions cpu_options(const std::string& method) {
  TrainOptions o;
  o.method = method;
  o.device = torch::kCPU;
  o.weights = o.precision = torch::kFloat;
  o.resolution = 32;
  o.batch_size = 2;
  return o;
}

// A flux-dev LoRA at 512 px, batch 1, bf16, on a GPU.
TrainOptions flux_dev_lora_512() {
  TrainOptions o;
  o.method = "lora";
  o.device = torch::Device(torch::kCUDA, 0);
  o.weights = o.precision = torch::kBFloat16;
  o.resolution = 512;
  o.batch_size = 1;
  return o;
}

int64_t values(torch::nn::Module& m, bool trainable_only) {
  int64_t n = 0;
  for (const auto& p : m.parameters())
    if (!trainable_only || p.requires_grad()) n += p.numel();
  return n;
}

}  // namespace

TEST(MemoryPlan, WeightsGradientsAndOptimizerEqualTheBuiltModels) {
  const ModelPreset tiny = model_preset("tiny");
  const FluxParams& p = tiny.flux;
  Flux model(p);
  const int64_t all = values(*model, false);
  // full, fp32: 4 B weights and gradients, 8 B of moments per value.
  const auto full = plan_training_memory(cpu_options("full"), p, 4, 12);
  EXPECT_EQ(full.part("weights"), 4.0 * all);
  EXPECT_EQ(full.part("gradients"), 4.0 * all);
  EXPECT_EQ(full.part("optimizer"), 8.0 * all);
  EXPECT_EQ(full.part("ema"), 0.0);
  // lora: the adapters LoraFineTune builds, in fp32, beside the frozen base.
  auto lo = cpu_options("lora");
  lo.lora.adapter.rank = 4;
  lo.lora.targets = {"attn_mlp"};
  LoraOptions l;
  l.adapter.rank = 4;
  l.targets = {"attn_mlp"};
  LoraFineTune lora(Flux(p), l);
  const int64_t adapters = lora.trainable_parameters();
  const auto lp = plan_training_memory(lo, p, 4, 12);
  EXPECT_EQ(lp.part("weights"), 4.0 * all + 4.0 * adapters);
  EXPECT_EQ(lp.part("gradients"), 4.0 * adapters);
  EXPECT_EQ(lp.part("optimizer"), 8.0 * adapters);
  // controlnet: FluxControlNet's parameters.
  auto co = cpu_options("controlnet");
  co.controlnet.double_blocks = 1;
  co.controlnet.single_blocks = 1;
  FluxControlNet net(p, 1, 1);
  const auto cp = plan_training_memory(co, p, 4, 12);
  EXPECT_EQ(cp.part("gradients"), 4.0 * values(*net, false));
  // 8-bit base: what quantize_block_weights leaves (codes + scales of the blocks' layers, the
  // rest as it was).
  co.base_weights = BaseWeights::kInt8;
  Flux q(p);
  const double linear_bytes = static_cast<double>(quantize_block_weights(*q, BaseWeights::kInt8));
  double other = 0;
  for (const auto& item : q->named_parameters()) other += 4.0 * item.value().numel();
  double linear_dense = 0;
  for (const auto& [name, layer] : flux_linear_layers(*q))
    if (!layer->is_quantized()) linear_dense += 4.0 * layer->weight.numel();
  const auto qp = plan_training_memory(co, p, 4, 12);
  EXPECT_EQ(qp.part("weights"), linear_bytes + (other - linear_dense) + 4.0 * values(*net, false));
}

TEST(MemoryPlan, SaversMoveTheirParts) {
  const FluxParams p = model_preset("tiny").flux;
  auto o = cpu_options("full");
  const auto base = plan_training_memory(o, p, 4, 12);
  // 8-bit moments: 2 B per value + 8 B per block of 256 for tensors of 4096 values or more.
  auto q = o;
  q.adamw.state_8bit = true;
  double expected = 0;
  for (const auto& s : flux_parameter_shapes(p)) {
    const double n = static_cast<double>(s.numel());
    expected += s.numel() >= 4096 ? 2 * n + 8 * std::ceil(n / 256) : 8 * n;
  }
  EXPECT_EQ(plan_training_memory(q, p, 4, 12).part("optimizer"), expected);
  // The step in backward: the largest tensor's gradient only.
  auto b = o;
  b.optimizer_in_backward = true;
  int64_t largest = 0;
  for (const auto& s : flux_parameter_shapes(p)) largest = std::max(largest, s.numel());
  EXPECT_EQ(plan_training_memory(b, p, 4, 12).part("gradients"), 4.0 * largest);
  // EMA: fp32 copies; on the CPU device they are still in this memory.
  auto e = o;
  e.ema_decay = 0.99;
  e.ema_on_cpu = true;
  EXPECT_EQ(plan_training_memory(e, p, 4, 12).part("ema"), base.part("gradients"));
  // Checkpointing keeps each block's inputs and recomputes one block at a time.
  auto c = o;
  c.gradient_checkpointing = true;
  const double act = base.part("activations"),
               ckpt = plan_training_memory(c, p, 4, 12).part("activations");
  EXPECT_LT(ckpt, act);
  auto every2 = c;
  every2.gradient_checkpointing_every = 2;
  const double half = plan_training_memory(every2, p, 4, 12).part("activations");
  EXPECT_GT(half, ckpt);
  EXPECT_LT(half, act);
}

TEST(MemoryPlan, ActivationsByHandForTheTinyPreset) {
  const FluxParams p = model_preset("tiny").flux;
  auto o = cpu_options("full");
  const double H = p.hidden_size, heads = p.num_heads, B = 2;
  const double Li = 4, Lt = 12, L = Li + Lt;  // 32 px: a 2 x 2 grid of tokens; 12 text tokens
  const double D = p.depth, S = p.depth_single_blocks;
  // Each block: its tensors per token (27 H double, 24 H single) in fp32 and, on the CPU, its
  // attention probabilities; the final layer keeps 2 H per image token.
  const double expected =
      B * ((D * 27 + S * 24) * H * L * 4 + (D + S) * heads * L * L * 4) + B * 2 * H * Li * 4;
  EXPECT_DOUBLE_EQ(plan_training_memory(o, p, 4, 12).part("activations"), expected);
  o.device = torch::Device(torch::kCUDA, 0);  // flash attention keeps no probabilities
  o.precision = torch::kBFloat16;
  const double gpu = B * ((D * 27 + S * 24) * H * L * 2) + B * 2 * H * Li * 2;
  EXPECT_DOUBLE_EQ(plan_training_memory(o, p, 4, 12).part("activations"), gpu);
}

TEST(MemoryPlan, BudgetTurnsSaversOnInOrderAndNeverOneTheUserSet) {
  const FluxParams p = model_preset("flux-dev").flux;
  TrainOptions o = flux_dev_lora_512();
  const double gib = 1024.0 * 1024 * 1024;
  const double dense = plan_training_memory(o, p, 1024, 512).total();
  auto ckpt = o;
  ckpt.gradient_checkpointing = true;
  const double with_ckpt = plan_training_memory(ckpt, p, 1024, 512).total();
  ASSERT_LT(with_ckpt, dense);
  // A budget between the two: checkpointing alone.
  auto a = o;
  EXPECT_EQ(fit_memory_budget(a, p, 1024, 512, (dense + with_ckpt) / 2, {}),
            std::vector<std::string>{"gradient_checkpointing"});
  EXPECT_TRUE(a.gradient_checkpointing);
  EXPECT_FALSE(a.adamw.state_8bit);
  // 16 GiB for flux-dev LoRA needs the int8 base too.
  auto b = o;
  const auto on = fit_memory_budget(b, p, 1024, 512, 16 * gib, {});
  EXPECT_NE(std::find(on.begin(), on.end(), "base_weights"), on.end());
  EXPECT_EQ(b.base_weights, BaseWeights::kInt8);
  EXPECT_LE(plan_training_memory(b, p, 1024, 512).total(), 16 * gib);
  // Checkpointing the user set (off) stays off: the budget is met by the others.
  auto u = o;
  const auto without = fit_memory_budget(u, p, 1024, 512, 16 * gib, {"gradient_checkpointing"});
  EXPECT_FALSE(u.gradient_checkpointing);
  EXPECT_EQ(std::find(without.begin(), without.end(), "gradient_checkpointing"), without.end());
  EXPECT_LE(plan_training_memory(u, p, 1024, 512).total(), 16 * gib);
  auto c = o;
  EXPECT_NE(error_of([&] {
              fit_memory_budget(c, p, 1024, 512, 16 * gib, {"base_weights", "blocks_to_swap"});
            }).find("memory_budget_gb 16.0: the plan needs"),
            std::string::npos);
  EXPECT_FALSE(c.base_weights != BaseWeights::kDense);
}

TEST(MemoryPlan, BlockSwapKeepsTheSwappedWeightsAndTheirTrainingStateOnTheHost) {
  const FluxParams p = model_preset("tiny").flux;  // 2 double, 4 single blocks
  auto o = cpu_options("full");
  o.device = torch::Device(torch::kCUDA, 0);  // (a plan for a GPU: host and device memory differ)
  const auto base = plan_training_memory(o, p, 4, 12);
  auto s = o;
  s.blocks_to_swap = 3;  // double block 1 and the 4 single blocks
  const auto swapped = plan_training_memory(s, p, 4, 12);
  // By hand: the swapped linear weights by block.
  std::map<std::string, double> block_values;
  double values = 0, largest = 0;
  for (const auto& t : flux_parameter_shapes(p)) {
    const bool linear = t.shape.size() == 2;
    const bool in_swap =
        t.name.rfind("double_blocks.1.", 0) == 0 || t.name.rfind("single_blocks.", 0) == 0;
    if (!linear || !in_swap) continue;
    const auto dot = t.name.find('.', t.name.find('.') + 1);
    block_values[t.name.substr(0, dot)] += static_cast<double>(t.numel());
    values += static_cast<double>(t.numel());
    largest = std::max(largest, static_cast<double>(t.numel()));
  }
  ASSERT_EQ(block_values.size(), 5u);
  std::vector<double> per_block;
  for (const auto& [name, n] : block_values) per_block.push_back(n);
  std::sort(per_block.rbegin(), per_block.rend());
  // Weights: the swapped ones leave, three blocks' worth (the largest three: two held, one
  // evicted and not yet reusable) come back as copies.
  EXPECT_DOUBLE_EQ(swapped.part("weights"), base.part("weights") - 4 * values +
                                                4 * (per_block[0] + per_block[1] + per_block[2]));
  // Their gradients and AdamW moments are on the host; one weight gradient passes through.
  EXPECT_DOUBLE_EQ(swapped.part("gradients"), base.part("gradients") - 4 * values);
  EXPECT_DOUBLE_EQ(swapped.part("optimizer"), base.part("optimizer") - 8 * values);
  EXPECT_DOUBLE_EQ(swapped.part("workspace"), base.part("workspace") + 4 * largest);
  EXPECT_DOUBLE_EQ(swapped.part("activations"), base.part("activations"));
  EXPECT_NE(swapped.setting.find("blocks_to_swap 3"), std::string::npos);
  // On the CPU the host is the device: the swap adds its two blocks' copies and moves nothing.
  auto c = s;
  c.device = torch::kCPU;
  auto c0 = o;
  c0.device = torch::kCPU;
  const auto cpu = plan_training_memory(c, p, 4, 12), cpu0 = plan_training_memory(c0, p, 4, 12);
  EXPECT_DOUBLE_EQ(cpu.part("weights"), cpu0.part("weights") + 4 * (per_block[0] + per_block[1]));
  EXPECT_DOUBLE_EQ(cpu.part("gradients"), cpu0.part("gradients"));
  EXPECT_DOUBLE_EQ(cpu.part("optimizer"), cpu0.part("optimizer"));
  // A LoRA: only the frozen weights move.
  auto l = cpu_options("lora");
  l.device = torch::Device(torch::kCUDA, 0);
  const auto lora = plan_training_memory(l, p, 4, 12);
  l.blocks_to_swap = 3;
  const auto lora_swapped = plan_training_memory(l, p, 4, 12);
  EXPECT_DOUBLE_EQ(
      lora_swapped.part("weights"),
      lora.part("weights") - 4 * values + 4 * (per_block[0] + per_block[1] + per_block[2]));
  EXPECT_DOUBLE_EQ(lora_swapped.part("gradients"), lora.part("gradients"));
  auto bad = o;
  bad.blocks_to_swap = 5;
  EXPECT_NE(error_of([&] {
              plan_training_memory(bad, p, 4, 12);
            }).find("blocks_to_swap 5: expected 0 to 4"),
            std::string::npos);
}

TEST(MemoryPlan, BudgetSwapsTheFewestBlocksThatFitLast) {
  const FluxParams p = model_preset("flux-dev").flux;
  TrainOptions o = flux_dev_lora_512();
  o.gradient_checkpointing = true;
  const double gib = 1024.0 * 1024 * 1024;
  // A 12 GiB card, the base kept in bf16 by the user: only block swap gets there.
  auto a = o;
  const auto on = fit_memory_budget(a, p, 1024, 512, 12 * gib, {"base_weights"});
  ASSERT_FALSE(on.empty());
  EXPECT_EQ(on.back(), "blocks_to_swap");
  EXPECT_EQ(a.base_weights, BaseWeights::kDense);
  ASSERT_GT(a.blocks_to_swap, 0);
  EXPECT_LE(plan_training_memory(a, p, 1024, 512).total(), 12 * gib);
  auto fewer = a;
  --fewer.blocks_to_swap;
  EXPECT_GT(plan_training_memory(fewer, p, 1024, 512).total(), 12 * gib);
  // The user's own blocks_to_swap is never changed: then 12 GiB cannot be met.
  auto b = o;
  EXPECT_NE(error_of([&] {
              fit_memory_budget(b, p, 1024, 512, 12 * gib, {"base_weights", "blocks_to_swap"});
            }).find("memory_budget_gb 12.0"),
            std::string::npos);
  EXPECT_EQ(b.blocks_to_swap, 0);
}
