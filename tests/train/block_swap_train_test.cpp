// Block swap in training runs of a real-layout tiny FLUX.1 model (its swap set up while it loads):
// the same losses, gradient norms, weights and optimizer state bit for bit as without it, for a
// full fine-tune (with checkpointing, 8-bit AdamW, an EMA and the step inside backward), a LoRA
// with dropout on an int8 base, and a ControlNet.
#include <gtest/gtest.h>

#include <filesystem>

#include "fixtures/fixtures.h"
#include "fixtures/flux_fixture.h"
#include "fixtures/flux_repo_fixture.h"
#include "test_util.h"
#include "train/train_config.h"
#include "train/trainer.h"

using namespace fluxtrain;
namespace fs = std::filesystem;
using fluxtrain::testing::TempDir;

namespace {

Config swap_config(const std::string& model, const fs::path& out, std::vector<std::string> extra,
                   int64_t blocks_to_swap) {
  Config c(train_schema());
  std::vector<std::string> args = fixtures::tiny_run_args(model, out.string());
  args.insert(args.end(),
              {"--steps", "4", "--val_samples", "0", "--zero_init", "false", "--max_grad_norm",
               "0.1", "--blocks_to_swap", std::to_string(blocks_to_swap)});
  args.insert(args.end(), extra.begin(), extra.end());
  parse_args(c, args);
  return c;
}

// Trains with and without block swap and expects the very same run; `files` are compared in the
// last checkpoint. The repository's transformer is replaced by one with 2 double and 4 single
// blocks, of which blocks_to_swap 3 swaps the last double block and all single blocks.
void expect_same_run(const std::string& what, const std::vector<std::string>& extra,
                     const std::vector<std::string>& files) {
  TempDir tmp;
  const std::string transformer =
      fixtures::write_tiny_flux_repo(tmp / "model", fixtures::RepoLayout::kBfl, true, 5);
  FluxParams deeper = fixtures::tiny_repo_flux_params(true);
  deeper.depth = 2;
  deeper.depth_single_blocks = 4;
  fixtures::write_tiny_flux_transformer(transformer, WeightLayout::kBfl, deeper, 8);
  auto plain = train(swap_config(tmp / "model", tmp / "plain", extra, 0));
  auto swapped = train(swap_config(tmp / "model", tmp / "swapped", extra, 3));
  const auto ra = fixtures::metrics_rows(plain.run_dir, "train");
  const auto rb = fixtures::metrics_rows(swapped.run_dir, "train");
  ASSERT_EQ(ra.size(), 4u) << what;
  ASSERT_EQ(rb.size(), 4u) << what;
  for (size_t i = 0; i < ra.size(); ++i) {
    EXPECT_EQ(ra[i]["loss"].get<double>(), rb[i]["loss"].get<double>()) << what << " step " << i;
    EXPECT_EQ(ra[i]["grad_norm"].get<double>(), rb[i]["grad_norm"].get<double>())
        << what << " step " << i;
  }
  EXPECT_GT(ra[0]["grad_norm"].get<double>(), 0.1) << what;  // clipping was exercised
  EXPECT_EQ(fixtures::checkpoint_differences(
                (fs::path(plain.run_dir) / "checkpoints" / "step-4").string(),
                (fs::path(swapped.run_dir) / "checkpoints" / "step-4").string(), files),
            std::vector<std::string>{})
      << what;
}

}  // namespace

TEST(BlockSwapTraining, FullFineTuneIsBitIdentical) {
  expect_same_run("full", {}, {"model.safetensors", "optimizer.safetensors"});
  expect_same_run("full, checkpointing, 8-bit AdamW, step in backward",
                  {"--gradient_checkpointing", "true", "--optimizer_state", "int8",
                   "--optimizer_in_backward", "true", "--ema_decay", "0.9"},
                  {"model.safetensors", "optimizer.safetensors", "ema.safetensors"});
}

// (bf16 autocast: tests/model/block_swap_test.cpp; a bf16 run on the CPU takes a minute)
TEST(BlockSwapTraining, LoraOnAnInt8BaseIsBitIdentical) {
  expect_same_run("lora int8",
                  {"--method", "lora", "--lora_rank", "4", "--base_weights", "int8",
                   "--gradient_checkpointing", "true", "--lora_dropout", "0.2"},
                  {"model.safetensors", "optimizer.safetensors", "lora_comfyui.safetensors"});
}

TEST(BlockSwapTraining, ControlNetIsBitIdentical) {
  expect_same_run(
      "controlnet",
      {"--method", "controlnet", "--control_images", "canny", "--canny_sigma", "0",
       "--controlnet_double_blocks", "1", "--controlnet_single_blocks", "1"},
      {"model.safetensors", "optimizer.safetensors", "diffusion_pytorch_model.safetensors"});
}
