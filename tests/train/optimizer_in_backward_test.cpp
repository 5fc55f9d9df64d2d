// The optimizer step inside backward: bit-identical to the ordinary step (fp32 and 8-bit AdamW
// moments), gradients freed during backward, max_grad_norm clipping each parameter by its own
// norm as a hand-run per-tensor clip does, and a training run whose losses equal the ordinary
// run's bit for bit.
#include "train/optimizer_in_backward.h"

#include <gtest/gtest.h>

#include "fixtures/fixtures.h"
#include "test_util.h"
#include "train/train_config.h"
#include "train/trainer.h"

namespace fs = std::filesystem;
using namespace fluxtrain;
using fluxtrain::testing::error_of;
using fluxtrain::testing::TempDir;

namespace {

// Three layers (one large enough for 8-bit moments), the same values for every seed.
struct Net {
  explicit Net(uint64_t seed) {
    torch::manual_seed(seed);
    for (auto shape : {std::vector<int64_t>{80, 64}, {64, 80}, {1, 64}})
      params.push_back(
          {fmt::format("w{}", params.size()), (torch::randn(shape) * 0.1).requires_grad_(true)});
  }
  torch::Tensor loss(const torch::Tensor& x, const torch::Tensor& y) {
    auto h = torch::tanh(torch::matmul(x, params[0].second.t()));
    h = torch::relu(torch::matmul(h, params[1].second.t()));
    return (torch::matmul(h, params[2].second.t()) - y).square().mean();
  }
  AdamW::Named params;
};

}  // namespace

TEST(OptimizerInBackward, EqualsTheOrdinaryStepBitForBitAndFreesTheGradients) {
  for (bool eight_bit : {false, true}) {
    AdamWOptions o;
    o.weight_decay = 0.01;
    o.state_8bit = eight_bit;
    o.block_size = 256;
    o.min_8bit_size = 4096;  // w0 and w1 (5120 values) get 8-bit moments, w2 stays fp32
    Net a(1), b(1);
    AdamW opt_a(a.params, o), opt_b(b.params, o);
    OptimizerInBackward in_backward(opt_b, /*max_grad_norm=*/0);
    torch::manual_seed(2);
    for (int step = 0; step < 6; ++step) {
      const auto x = torch::randn({16, 64}), y = torch::randn({16, 1});
      const double lr = 1e-2 * (step + 1);
      a.loss(x, y).backward();
      const double norm_a = clip_grad_norm(a.params, 0);
      opt_a.step(lr);
      opt_a.zero_grad();
      in_backward.arm(lr);
      b.loss(x, y).backward();
      const double norm_b = in_backward.finish();
      EXPECT_EQ(in_backward.updated(), 3);
      EXPECT_NEAR(norm_b, norm_a, 1e-12 * norm_a);
      for (size_t i = 0; i < 3; ++i) {
        EXPECT_FALSE(b.params[i].second.grad().defined()) << i;
        EXPECT_TRUE(torch::equal(a.params[i].second, b.params[i].second))
            << "8-bit " << eight_bit << " step " << step << " " << a.params[i].first;
      }
    }
    const auto sa = opt_a.state_tensors(), sb = opt_b.state_tensors();
    ASSERT_EQ(sa.size(), sb.size());
    for (size_t i = 0; i < sa.size(); ++i) EXPECT_TRUE(torch::equal(sa[i].second, sb[i].second));
    EXPECT_EQ(opt_b.steps_taken(), 6);
  }
}

TEST(OptimizerInBackward, ClipsEachParameterByItsOwnNorm) {
  const double max_norm = 0.02;
  Net a(3), b(3);
  AdamW opt_a(a.params, {}), opt_b(b.params, {});
  OptimizerInBackward in_backward(opt_b, max_norm);
  torch::manual_seed(4);
  for (int step = 0; step < 3; ++step) {
    const auto x = torch::randn({16, 64}), y = torch::randn({16, 1});
    a.loss(x, y).backward();
    double total_sq = 0;
    int clipped = 0;
    for (auto& [name, p] : a.params) {  // by hand: each gradient to at most max_norm
      const double n = p.grad().to(torch::kDouble).norm().item<double>();
      total_sq += n * n;
      if (n > max_norm) {
        p.grad().mul_(max_norm / (n + 1e-6));
        ++clipped;
      }
    }
    EXPECT_GT(clipped, 0);
    opt_a.step(1e-2);
    opt_a.zero_grad();
    in_backward.arm(1e-2);
    b.loss(x, y).backward();
    EXPECT_NEAR(in_backward.finish(), std::sqrt(total_sq), 1e-9);  // the norm before clipping
    for (size_t i = 0; i < 3; ++i)
      EXPECT_TRUE(torch::allclose(a.params[i].second, b.params[i].second, 1e-6, 1e-7))
          << a.params[i].first;
  }
}

TEST(OptimizerInBackward, ATrainingRunEqualsTheOrdinaryOneAndRefusesAccumulation) {
  TempDir out;
  auto args = [&](const std::string& dir, std::vector<std::string> extra) {
    Config c(train_schema());
    // The end-to-end tests' short run of the tiny preset, 4 steps, gradients unclipped.
    std::vector<std::string> a = fixtures::tiny_run_args("tiny", (out.path() / dir).string());
    a.insert(a.end(), {"--steps", "4", "--val_samples", "0", "--max_grad_norm", "0",
                       "--gradient_checkpointing", "true"});
    a.insert(a.end(), extra.begin(), extra.end());
    parse_args(c, a);
    return c;
  };
  auto plain = train(args("plain", {}));
  auto fused = train(args("fused", {"--optimizer_in_backward", "true"}));
  EXPECT_EQ(fixtures::train_losses(plain.run_dir), fixtures::train_losses(fused.run_dir));
  EXPECT_EQ(fixtures::checkpoint_differences(
                (fs::path(plain.run_dir) / "checkpoints" / "step-4").string(),
                (fs::path(fused.run_dir) / "checkpoints" / "step-4").string(),
                {"model.safetensors", "optimizer.safetensors"}),
            std::vector<std::string>{});
  EXPECT_NE(error_of([&] {
              train(args("accum", {"--optimizer_in_backward", "true", "--grad_accum", "2"}));
            }).find("grad_accum is 2"),
            std::string::npos);
}
