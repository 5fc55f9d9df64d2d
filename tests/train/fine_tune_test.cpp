// Fine-tuning a real FLUX.1 model: a tiny model in the published layouts (tests/fixtures), its
// own VAE and text encoders, the built-in shapes as data. The loss falls, both layouts train the
// same, only the selected blocks change, frozen ones are not saved, and resume is bit-exact.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "fixtures/fixtures.h"
#include "fixtures/flux_repo_fixture.h"
#include "io/checkpoint.h"
#include "model/flux_weights.h"
#include "sample/model_files.h"
#include "test_util.h"
#include "train/train_config.h"
#include "train/trainer.h"

using namespace fluxtrain;
namespace fs = std::filesystem;
using fixtures::RepoLayout;
using fluxtrain::testing::TempDir;

namespace {

Config fine_tune_config(const std::string& model, const fs::path& out,
                        std::vector<std::string> extra = {}) {
  Config c(train_schema());
  std::vector<std::string> args = fixtures::tiny_run_args(model, out.string());
  args.insert(args.end(), {"--lr", "2e-3"});  // (a later flag replaces an earlier one)
  args.insert(args.end(), extra.begin(), extra.end());
  parse_args(c, args);
  return c;
}

}  // namespace

TEST(FineTune, BothLayoutsTrainTheSameAndTheLossFalls) {
  TempDir tmp;
  fixtures::write_tiny_flux_repo(tmp / "diffusers", RepoLayout::kDiffusers, true, 21);
  fixtures::write_tiny_flux_repo(tmp / "bfl", RepoLayout::kBfl, true, 21);
  auto a = train(fine_tune_config(tmp / "diffusers", tmp.path() / "runs"));
  auto b = train(fine_tune_config(tmp / "bfl", tmp.path() / "runs"));
  const auto la = fixtures::train_losses(a.run_dir), lb = fixtures::train_losses(b.run_dir);
  ASSERT_EQ(la.size(), 12u);
  EXPECT_EQ(la, lb);  // the same model in either layout: the same run, bit for bit
  const double first = (la[0] + la[1] + la[2]) / 3, last = (la[9] + la[10] + la[11]) / 3;
  EXPECT_LT(last, 0.9 * first) << "first " << first << " last " << last;
  // A complete checkpoint (every parameter trained), recorded as a fine-tune of that model.
  auto ck = load_checkpoint_dir((fs::path(a.run_dir) / "checkpoints" / "step-12").string());
  EXPECT_EQ(ck.state["model"], fs::absolute(tmp / "diffusers").lexically_normal().string());
  EXPECT_EQ(ck.state["complete_model"], true);
  EXPECT_TRUE(ck.file("model.safetensors").contains("double_blocks.0.img_attn.qkv.weight"));
}

TEST(FineTune, OnlyTheSelectedBlocksTrainAndCheckpointsHoldOnlyThem) {
  TempDir tmp;
  const std::string repo = tmp / "model";
  fixtures::write_tiny_flux_repo(repo, RepoLayout::kDiffusers, true, 22);
  auto r = train(fine_tune_config(repo, tmp.path() / "runs",
                                  {"--train_blocks", "[\"single_blocks.0\", \"final_layer\"]"}));
  auto ck = load_checkpoint_dir((fs::path(r.run_dir) / "checkpoints" / "step-12").string());
  EXPECT_EQ(ck.state["complete_model"], false);
  const auto& model = ck.file("model.safetensors");
  const auto& optimizer = ck.file("optimizer.safetensors");
  const FluxWeights base_weights = inspect_flux_weights(resolve_model_files(repo).transformer);
  const NamedTensors base = read_flux_tensors_bfl(base_weights, torch::kFloat);
  int trained = 0;
  for (const auto& [name, tensor] : base) {
    const bool selected =
        name.rfind("single_blocks.0.", 0) == 0 || name.rfind("final_layer.", 0) == 0;
    EXPECT_EQ(model.contains(name), selected) << name;  // frozen tensors are not saved
    EXPECT_EQ(optimizer.contains("exp_avg." + name), selected) << name;  // nor have state
    if (selected) {
      trained += !torch::equal(model.load(name), tensor);
    }
  }
  EXPECT_GT(trained, 4);
  // The run's saved configuration names its selection (resume and export rebuild from it).
  Config c(train_schema());
  c.load_yaml_string(ck.state["config"].get<std::string>(), "saved");
  EXPECT_EQ(c.list("train_blocks"), (std::vector<std::string>{"single_blocks.0", "final_layer"}));
}

TEST(FineTune, ResumeIsBitIdentical) {
  TempDir tmp;
  const std::string repo = tmp / "model";
  fixtures::write_tiny_flux_repo(repo, RepoLayout::kBfl, false, 23);
  const std::vector<std::string> extra = {"--steps",           "6",
                                          "--ckpt_every",      "3",
                                          "--keep_last",       "0",
                                          "--caption_dropout", "0.2",
                                          "--train_blocks",    "double_blocks.0"};
  auto straight = train(fine_tune_config(repo, tmp.path() / "a", extra));
  auto first = train(fine_tune_config(repo, tmp.path() / "b", extra));
  fs::remove_all(fs::path(first.run_dir) / "checkpoints" / "step-6");
  Config resume(train_schema());
  parse_args(resume, {"--resume", first.run_dir});
  auto resumed = train(resume);
  EXPECT_EQ(resumed.steps, 6);
  EXPECT_EQ(fixtures::train_losses(straight.run_dir), fixtures::train_losses(resumed.run_dir));
  EXPECT_EQ(fixtures::checkpoint_differences(
                (fs::path(straight.run_dir) / "checkpoints" / "step-6").string(),
                (fs::path(resumed.run_dir) / "checkpoints" / "step-6").string(),
                {"model.safetensors", "optimizer.safetensors"}),
            std::vector<std::string>{});
}
