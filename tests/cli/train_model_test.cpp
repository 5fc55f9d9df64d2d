// `fluxtrain train --model PATH` end to end: a fine-tune of a tiny FLUX.1 repository with
// validation prompts sampled along the way, exported with `convert` to both layouts, and the
// export loaded by `sample --model`: the frozen tensors are the base model's, bit for bit.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "fixtures/flux_repo_fixture.h"
#include "io/checkpoint.h"
#include "io/image.h"
#include "model/flux_weights.h"
#include "sample/model_files.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace fluxtrain;
using fluxtrain::testing::run_fluxtrain;
using fluxtrain::testing::TempDir;

namespace {

std::string only_run(const fs::path& runs) {
  std::vector<fs::path> found;
  for (const auto& e : fs::directory_iterator(runs / "default")) found.push_back(e.path());
  EXPECT_EQ(found.size(), 1u);
  return found.empty() ? std::string() : found.front().string();
}

TEST(TrainModel, FineTuneSampleAlongTheWayExportAndSampleTheExport) {
  TempDir tmp;
  const std::string repo = tmp / "FLUX.1-tiny";
  fixtures::write_tiny_flux_repo(repo, fixtures::RepoLayout::kDiffusers, true, 31);
  auto r = run_fluxtrain(
      "train --model " + repo + " --output_dir " + (tmp / "runs") +
      " --resolution 32 --batch_size 2 --steps 4 --lr 1e-3 --warmup_steps 0 --val_samples 8"
      " --final_eval none --threads 1 --sample_steps 2 --sample_every 2"
      " --train_blocks '[\"double_blocks.0.img_attn\", \"final_layer\"]'"
      " --validation_prompts '[\"a red circle in the top left\", \"a photo of a cat\"]'");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("text encoders freed"), std::string::npos) << r.out;
  const fs::path run = only_run(tmp.path() / "runs");
  // Validation prompts at step 2 and at the end: one PNG per prompt and a captioned grid.
  for (const char* step : {"step-000002", "step-000004"}) {
    EXPECT_TRUE(fs::exists(run / "samples" / (std::string(step) + ".png"))) << step;
    auto text = read_png_text((run / "samples" / step / "01.png").string());
    EXPECT_EQ(text["prompt"], "a photo of a cat");
    EXPECT_EQ(text["steps"], "2");
  }
  EXPECT_TRUE(fs::exists(run / "train.log"));
  // `info` reads the run's checkpoint against the base model's shapes.
  auto info = run_fluxtrain("info --checkpoint " + run.string());
  ASSERT_EQ(info.code, 0) << info.out;
  EXPECT_NE(info.out.find("trains double_blocks.0.img_attn, final_layer"), std::string::npos)
      << info.out;
  // final_layer trains whole (parameters = trainable), the double blocks only in part.
  auto row = [&](const std::string& component) {
    std::istringstream lines(info.out);
    std::string line, name, blocks, params, trainable;
    while (std::getline(lines, line))
      if (line.rfind(component + " ", 0) == 0) {
        std::istringstream(line) >> name >> blocks >> params >> trainable;
        return std::make_pair(params, trainable);
      }
    return std::make_pair(std::string("?"), std::string("!"));
  };
  EXPECT_EQ(row("final_layer").first, row("final_layer").second) << info.out;
  EXPECT_NE(row("double_blocks").first, row("double_blocks").second) << info.out;
  EXPECT_EQ(row("img_in").second, "0") << info.out;

  // Export to both layouts; the frozen tensors are the base model's, the trained ones the
  // checkpoint's.
  const FluxWeights base_w = inspect_flux_weights(resolve_model_files(repo).transformer);
  const auto base = read_flux_tensors_bfl(base_w, torch::kFloat);
  auto ck = load_checkpoint_dir((run / "checkpoints" / "step-4").string());
  const auto& trained = ck.file("model.safetensors");
  for (const std::string to : {"bfl", "diffusers"}) {
    const std::string out = tmp / ("export-" + to + (to == "bfl" ? ".safetensors" : ""));
    auto c = run_fluxtrain("convert --in " + run.string() + " --out " + out + " --to " + to);
    ASSERT_EQ(c.code, 0) << c.out;
    EXPECT_NE(c.out.find("trained tensors over it"), std::string::npos) << c.out;
    const auto exported = read_flux_tensors_bfl(inspect_flux_weights(out), torch::kFloat);
    ASSERT_EQ(exported.size(), base.size());
    for (size_t i = 0; i < base.size(); ++i) {
      const auto& [name, t] = base[i];
      ASSERT_EQ(exported[i].first, name);
      if (trained.contains(name))
        EXPECT_TRUE(torch::equal(exported[i].second, trained.load(name))) << to << " " << name;
      else
        EXPECT_TRUE(torch::equal(exported[i].second, t)) << to << " " << name;
    }
    // The export loads as the transformer of the model.
    auto s = run_fluxtrain("sample --model " + repo + " --transformer " + out +
                           " --prompt \"a red circle\" --height 32 --width 32 --steps 2"
                           " --threads 1 --out " +
                           (tmp / (to + ".png")));
    ASSERT_EQ(s.code, 0) << s.out;
  }
  // Both exports are the same model: the same pixels.
  EXPECT_TRUE(torch::equal(read_image(tmp / "bfl.png"), read_image(tmp / "diffusers.png")));
  // And `sample --checkpoint` of the run gives what the export gives (same weights, same noise).
  auto s = run_fluxtrain("sample --checkpoint " + run.string() +
                         " --prompt \"a red circle\" --height 32 --width 32 --steps 2 --threads 1"
                         " --out " +
                         (tmp / "ckpt.png"));
  ASSERT_EQ(s.code, 0) << s.out;
  EXPECT_TRUE(torch::equal(read_image(tmp / "ckpt.png"), read_image(tmp / "bfl.png")));
}

}  // namespace
