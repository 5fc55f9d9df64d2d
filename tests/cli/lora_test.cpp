// LoRA end to end on a tiny FLUX.1 repository: `train --method lora` lowers the loss with the
// base frozen, checkpoints hold the adapters and the three layouts' files (equal deltas), resume
// is bit-identical (dropout under activation checkpointing included), DoRA runs; the files load
// in `sample --lora`, merge with `convert --lora` and convert between layouts; the run's own
// `sample --checkpoint` and `convert` use its adapters.
#include <gtest/gtest.h>

#include <filesystem>

#include "fixtures/fixtures.h"
#include "fixtures/flux_repo_fixture.h"
#include "io/checkpoint.h"
#include "io/image.h"
#include "model/flux_weights.h"
#include "model/lora_file.h"
#include "model/lora_merge.h"
#include "sample/model_files.h"
#include "test_util.h"
#include "train/train_config.h"
#include "train/trainer.h"

namespace fs = std::filesystem;
using namespace fluxtrain;
using fluxtrain::fixtures::mean_of;
using fluxtrain::testing::run_fluxtrain;
using fluxtrain::testing::TempDir;

namespace {

Config lora_config(const std::string& model, const fs::path& out,
                   std::vector<std::string> extra = {}, bool adapter_keys = true) {
  Config c(train_schema());
  std::vector<std::string> args = fixtures::tiny_run_args(model, out.string());
  args.insert(args.end(), {"--method", "lora"});
  if (adapter_keys)
    for (const char* a : {"--lora_rank", "4", "--lora_alpha", "8", "--lora_targets", "all"})
      args.push_back(a);
  args.insert(args.end(), extra.begin(), extra.end());
  parse_args(c, args);
  return c;
}

}  // namespace

TEST(Lora, TrainsAdaptersOnlyAndSavesEveryLayoutWithTheSameDeltas) {
  TempDir tmp;
  const std::string repo = tmp / "model";
  fixtures::write_tiny_flux_repo(repo, fixtures::RepoLayout::kBfl, true, 41);
  auto r = train(lora_config(repo, tmp.path() / "runs", {"--lora_save_dtype", "fp32"}));
  const auto losses = fixtures::train_losses(r.run_dir);
  ASSERT_EQ(losses.size(), 12u);
  EXPECT_LT(mean_of(losses, 9, 3), 0.9 * mean_of(losses, 0, 3));
  const fs::path step = fs::path(r.run_dir) / "checkpoints" / "step-12";
  auto ck = load_checkpoint_dir(step.string());
  EXPECT_EQ(ck.state["method"], "lora");
  EXPECT_EQ(ck.state["complete_model"], false);
  const auto& model = ck.file("model.safetensors");
  for (const auto& n : model.names())
    EXPECT_TRUE(n.find(".lora_A.weight") != std::string::npos ||
                n.find(".lora_B.weight") != std::string::npos)
        << n;
  // Every linear layer of the model has an adapter ("all").
  const FluxWeights base_w = inspect_flux_weights(resolve_model_files(repo).transformer);
  int64_t linears = 0;
  const FluxWeightTable table(base_w.params);
  for (const auto& e : table.entries()) linears += e.shape.size() == 2;
  EXPECT_EQ(static_cast<int64_t>(model.size()), 2 * linears);
  EXPECT_EQ(ck.file("optimizer.safetensors").size(), 2 * model.size());  // two moments each
  auto info = run_fluxtrain("info --checkpoint " + r.run_dir);
  ASSERT_EQ(info.code, 0) << info.out;
  EXPECT_NE(info.out.find("LoRA: " + std::to_string(model.size()) + " tensors"), std::string::npos)
      << info.out;
  // The three files are the adapters, each in its layout.
  LoraWeights saved;
  for (const auto& n : model.names()) {
    const bool down = n.find(".lora_A.weight") != std::string::npos;
    const std::string layer = n.substr(0, n.size() - 14);
    auto* m = const_cast<LoraModuleWeights*>(saved.find(layer));
    if (!m) {
      saved.modules.push_back({layer, {}, {}, 8.0, {}});
      m = &saved.modules.back();
    }
    (down ? m->down : m->up) = model.load(n);
  }
  int moved = 0;
  for (const auto& m : saved.modules) moved += m.up.abs().max().item<double>() > 0;
  EXPECT_EQ(moved, static_cast<int>(saved.modules.size()));  // every adapter trained
  for (const std::string file :
       {"lora_comfyui.safetensors", "pytorch_lora_weights.safetensors", "lora_kohya.safetensors"}) {
    const auto w = read_lora_file((step / file).string());
    EXPECT_EQ(w.metadata.at("fluxtrain.steps"), "12") << file;
    ASSERT_EQ(w.modules.size(), saved.modules.size()) << file;
    for (const auto& m : saved.modules) {
      const auto* o = w.find(m.module);
      ASSERT_NE(o, nullptr) << file << " " << m.module;
      EXPECT_TRUE(torch::allclose(o->delta(), m.delta(), 1e-5, 1e-6)) << file << " " << m.module;
    }
  }
  // The run's checkpoint merged by convert = the base + each delta; `sample --model --lora`
  // with the kohya file merges the same weights: the same pixels.
  const auto base = read_flux_tensors_bfl(base_w, torch::kFloat);
  const std::string merged = tmp / "merged.safetensors";
  auto c = run_fluxtrain("convert --in " + r.run_dir + " --out " + merged + " --to bfl");
  ASSERT_EQ(c.code, 0) << c.out;
  auto expected = base;
  for (auto& [n, t] : expected) t = t.clone();
  merge_lora(expected, saved, 1.0);
  const auto got = read_flux_tensors_bfl(inspect_flux_weights(merged), torch::kFloat);
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_TRUE(torch::equal(got[i].second, expected[i].second)) << got[i].first;
  const std::string sample_args =
      " --prompt \"a red circle\" --height 32 --width 32 --steps 2 --threads 1 --out ";
  auto s1 = run_fluxtrain("sample --model " + repo + " --transformer " + merged + sample_args +
                          (tmp / "merged.png"));
  ASSERT_EQ(s1.code, 0) << s1.out;
  auto s2 =
      run_fluxtrain("sample --model " + repo + " --lora " +
                    (step / "lora_kohya.safetensors").string() + sample_args + (tmp / "lora.png"));
  ASSERT_EQ(s2.code, 0) << s2.out;
  EXPECT_NE(s2.out.find("kohya layout, " + std::to_string(linears) + " layers, rank 4"),
            std::string::npos)
      << s2.out;
  EXPECT_TRUE(torch::equal(read_image(tmp / "merged.png"), read_image(tmp / "lora.png")));
  auto s0 = run_fluxtrain("sample --model " + repo + sample_args + (tmp / "base.png"));
  ASSERT_EQ(s0.code, 0) << s0.out;
  EXPECT_FALSE(torch::equal(read_image(tmp / "base.png"), read_image(tmp / "lora.png")));
  // The checkpoint itself samples with its adapters attached (not merged): the same image up to
  // rounding.
  auto s3 = run_fluxtrain("sample --checkpoint " + r.run_dir + sample_args + (tmp / "ckpt.png"));
  ASSERT_EQ(s3.code, 0) << s3.out;
  const auto a = read_image(tmp / "ckpt.png").to(torch::kFloat),
             b = read_image(tmp / "lora.png").to(torch::kFloat);
  EXPECT_LE((a - b).abs().max().item<double>(), 2.0);

  // convert rewrites a LoRA file in another layout, deltas unchanged.
  const std::string d = tmp / "as_diffusers.safetensors";
  auto cv = run_fluxtrain("convert --in " + (step / "lora_kohya.safetensors").string() + " --out " +
                          d + " --to diffusers");
  ASSERT_EQ(cv.code, 0) << cv.out;
  const auto dw = read_lora_file(d);
  EXPECT_EQ(dw.layouts, std::vector<std::string>{"diffusers"});
  for (const auto& m : saved.modules)
    EXPECT_TRUE(torch::allclose(dw.find(m.module)->delta(), m.delta(), 1e-5, 1e-6)) << m.module;
  auto bad = run_fluxtrain("convert --in " + d + " --out " + (tmp / "x.safetensors") + " --to bfl");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(
      bad.out.find("--to: 'bfl' for a LoRA file (" + d + "): expected comfyui, diffusers or kohya"),
      std::string::npos)
      << bad.out;
}

TEST(Lora, ResumeIsBitIdenticalWithDropoutUnderCheckpointing) {
  TempDir tmp;
  const std::string repo = tmp / "model";
  fixtures::write_tiny_flux_repo(repo, fixtures::RepoLayout::kDiffusers, false, 42);
  const std::vector<std::string> extra = {"--steps",
                                          "6",
                                          "--ckpt_every",
                                          "3",
                                          "--keep_last",
                                          "0",
                                          "--lora_dropout",
                                          "0.3",
                                          "--gradient_checkpointing",
                                          "true",
                                          "--lora_targets",
                                          "attn"};
  auto straight = train(lora_config(repo, tmp.path() / "a", extra));
  auto first = train(lora_config(repo, tmp.path() / "b", extra));
  fs::remove_all(fs::path(first.run_dir) / "checkpoints" / "step-6");
  Config resume(train_schema());
  parse_args(resume, {"--resume", first.run_dir});
  auto resumed = train(resume);
  EXPECT_EQ(fixtures::train_losses(straight.run_dir), fixtures::train_losses(resumed.run_dir));
  EXPECT_EQ(fixtures::checkpoint_differences(
                (fs::path(straight.run_dir) / "checkpoints" / "step-6").string(),
                (fs::path(resumed.run_dir) / "checkpoints" / "step-6").string(),
                {"model.safetensors", "optimizer.safetensors"}),
            std::vector<std::string>{});
}

TEST(Lora, DoraTrainsAndSavesTheDiffusersLayoutAndAFileStartsARun) {
  TempDir tmp;
  const std::string repo = tmp / "model";
  fixtures::write_tiny_flux_repo(repo, fixtures::RepoLayout::kBfl, false, 43);
  auto r = train(lora_config(repo, tmp.path() / "runs", {"--use_dora", "true"}));
  const auto losses = fixtures::train_losses(r.run_dir);
  EXPECT_LT(mean_of(losses, 9, 3), 0.9 * mean_of(losses, 0, 3));
  const fs::path step = fs::path(r.run_dir) / "checkpoints" / "step-12";
  EXPECT_TRUE(fs::exists(step / "pytorch_lora_weights.safetensors"));
  EXPECT_FALSE(fs::exists(step / "lora_kohya.safetensors"));  // kohya has no DoRA
  const auto w = read_lora_file((step / "pytorch_lora_weights.safetensors").string());
  EXPECT_TRUE(w.dora());
  // A new run starts from that file: step 0's model is the trained one.
  auto next =
      train(lora_config(repo, tmp.path() / "next",
                        {"--lora_init", (step / "pytorch_lora_weights.safetensors").string(),
                         "--steps", "1", "--lr", "0"},
                        /*adapter_keys=*/false));
  const auto again = read_lora_file(
      (fs::path(next.run_dir) / "checkpoints" / "step-1" / "pytorch_lora_weights.safetensors")
          .string());
  for (const auto& m : w.modules) {
    const auto* o = again.find(m.module);
    ASSERT_NE(o, nullptr) << m.module;
    EXPECT_TRUE(torch::allclose(o->delta(), m.delta(), 1e-2, 1e-3)) << m.module;  // bf16 files
    EXPECT_TRUE(torch::allclose(o->magnitude, m.magnitude, 1e-2, 1e-3)) << m.module;
  }
  // Keys that make no sense together are refused in one line.
  EXPECT_EQ(fluxtrain::testing::error_of([&] {
              TrainOptions::from_config(lora_config(
                  repo, tmp.path() / "x", {"--use_dora", "true", "--lora_format", "kohya"}));
            }),
            "--lora_format kohya: DoRA adapters have no kohya form (only diffusers/PEFT stores "
            "DoRA's per-output magnitude); use lora_format diffusers");
  EXPECT_EQ(fluxtrain::testing::error_of([&] {
              Config c(train_schema());
              parse_args(c, {"--lora_rank", "4"});
              TrainOptions::from_config(c);
            }),
            "--lora_rank: only with method lora (method is full)");
}

TEST(Lora, TrainsOnAnInt8OrFp8BaseAndTheFilesHoldOnlyAdapters) {
  TempDir tmp;
  const std::string repo = tmp / "model";
  fixtures::write_tiny_flux_repo(repo, fixtures::RepoLayout::kBfl, true, 44);
  for (const std::string kind : {"int8", "fp8"}) {
    auto r = train(lora_config(repo, tmp.path() / kind, {"--base_weights", kind}));
    const auto losses = fixtures::train_losses(r.run_dir);
    EXPECT_LT(mean_of(losses, 9, 3), 0.9 * mean_of(losses, 0, 3)) << kind;
    const auto w = read_lora_file(
        (fs::path(r.run_dir) / "checkpoints" / "step-12" / "lora_kohya.safetensors").string());
    EXPECT_GT(w.modules.size(), 0u) << kind;
  }
  auto bad = run_fluxtrain("train --model " + repo + " --base_weights int8 --steps 1");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.out.find("method full trains the base"), std::string::npos) << bad.out;
}
