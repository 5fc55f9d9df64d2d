// `fluxtrain sample --model PATH` end to end on tiny FLUX.1 repositories in the real layouts:
// PNGs with their settings, defaults from the model, batches and prompt files, layouts that give
// the same pixels, and the one-line errors for what is missing.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "fixtures/flux_fixture.h"
#include "fixtures/flux_repo_fixture.h"
#include "io/image.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

using fluxtrain::fixtures::RepoLayout;
using fluxtrain::fixtures::write_tiny_flux_repo;

fluxtrain::testing::CommandResult run(const std::string& args) {
  return fluxtrain::testing::run_fluxtrain(args);
}

TEST(SampleModel, DiffusersRepositoryToPng) {
  auto dir = fluxtrain::testing::fresh_temp_dir("cli_sample_model");
  write_tiny_flux_repo((dir / "FLUX.1-tiny").string(), RepoLayout::kDiffusers, true, 11);
  const auto out = dir / "cat.png";
  auto r = run("sample --model " + (dir / "FLUX.1-tiny").string() +
               " --prompt \"a photo of a cat, with a hat!\" --height 32 --width 16 --steps 3"
               " --seed 5 --threads 1 --out " +
               out.string());
  ASSERT_EQ(r.code, 0) << r.out;
  auto img = fluxtrain::read_image(out.string());
  EXPECT_EQ(img.sizes(), (std::vector<int64_t>{32, 16, 3}));
  EXPECT_GT(img.to(torch::kFloat).std().item<double>(), 0.5);  // not a flat image
  auto text = fluxtrain::read_png_text(out.string());
  EXPECT_EQ(text["prompt"], "a photo of a cat, with a hat!");
  EXPECT_EQ(text["steps"], "3");
  EXPECT_EQ(text["guidance"], "3.5");  // dev-like default: the weights have a guidance input
  EXPECT_EQ(text["shift"], "on");
  EXPECT_EQ(text["seed"], "5");
  EXPECT_EQ(text["size"], "16x32");
  EXPECT_EQ(text["dtype"], "fp32");
  EXPECT_EQ(text["model"], (dir / "FLUX.1-tiny").string());

  // The same model in BFL files gives the same pixels; so does --offload.
  write_tiny_flux_repo((dir / "bfl").string(), RepoLayout::kBfl, true, 11);
  auto r2 = run("sample --model " + (dir / "bfl").string() +
                " --prompt \"a photo of a cat, with a hat!\" --height 32 --width 16 --steps 3"
                " --seed 5 --threads 1 --offload --out " +
                (dir / "cat-bfl.png").string());
  ASSERT_EQ(r2.code, 0) << r2.out;
  EXPECT_TRUE(torch::equal(img, fluxtrain::read_image((dir / "cat-bfl.png").string())));
  // --transformer FILE alone: the other components are found beside it.
  auto r3 = run("sample --transformer " + (dir / "bfl" / "flux1-dev.safetensors").string() +
                " --prompt \"a photo of a cat, with a hat!\" --height 32 --width 16 --steps 3"
                " --seed 5 --threads 1 --out " +
                (dir / "cat-file.png").string());
  ASSERT_EQ(r3.code, 0) << r3.out;
  EXPECT_TRUE(torch::equal(img, fluxtrain::read_image((dir / "cat-file.png").string())));

  // Prompts from a file, two images each, a schnell-like guidance override.
  std::ofstream(dir / "prompts.txt") << "the dog\n\ncafé 日本\n";
  auto m = run("sample --model " + (dir / "FLUX.1-tiny").string() + " --prompts_file " +
               (dir / "prompts.txt").string() +
               " --batch 2 --max_batch 3 --height 16 --width 16 --steps 2 --guidance 2 --seed 7"
               " --threads 1 --out " +
               (dir / "many/").string());
  ASSERT_EQ(m.code, 0) << m.out;
  for (int k = 0; k < 4; ++k)
    EXPECT_TRUE(fs::exists(dir / "many" / fmt::format("sample-{:03d}.png", k))) << k;
  auto t2 = fluxtrain::read_png_text((dir / "many" / "sample-003.png").string());
  EXPECT_EQ(t2["prompt"], "café 日本");
  EXPECT_EQ(t2["seed"], "8");
  EXPECT_EQ(t2["guidance"], "2");
  // Image k of a prompt does not depend on the batch around it: sample-002 (the dog, seed 8)
  // alone with --seed 8 is the same picture.
  auto one = run("sample --model " + (dir / "FLUX.1-tiny").string() +
                 " --prompt \"the dog\" --height 16 --width 16 --steps 2 --guidance 2 --seed 8"
                 " --threads 1 --out " +
                 (dir / "dog8.png").string());
  ASSERT_EQ(one.code, 0) << one.out;
  auto a = fluxtrain::read_image((dir / "dog8.png").string()).to(torch::kInt);
  auto b = fluxtrain::read_image((dir / "many" / "sample-002.png").string()).to(torch::kInt);
  EXPECT_LE((a - b).abs().max().item<int>(), 1);  // batched matmul rounding, at most 1/255
}

TEST(SampleModel, BlockSwapGivesTheSamePixels) {
  fluxtrain::testing::TempDir tmp;
  const std::string transformer = write_tiny_flux_repo(tmp / "model", RepoLayout::kBfl, true, 13);
  // 2 double + 4 single blocks, so that there are blocks to swap (3: the last double block and
  // the 4 single ones).
  fluxtrain::FluxParams deeper = fluxtrain::fixtures::tiny_repo_flux_params(true);
  deeper.depth = 2;
  deeper.depth_single_blocks = 4;
  fluxtrain::fixtures::write_tiny_flux_transformer(transformer, fluxtrain::WeightLayout::kBfl,
                                                   deeper, 4);
  const std::string common = "sample --model " + (tmp / "model") +
                             " --prompt \"a cat\" --height 32 --width 32 --steps 3 --threads 1";
  auto a = run(common + " --out " + (tmp / "a.png"));
  ASSERT_EQ(a.code, 0) << a.out;
  auto b = run(common + " --blocks_to_swap 3 --out " + (tmp / "b.png"));
  ASSERT_EQ(b.code, 0) << b.out;
  EXPECT_TRUE(
      torch::equal(fluxtrain::read_image(tmp / "a.png"), fluxtrain::read_image(tmp / "b.png")));
  auto bad = run(common + " --blocks_to_swap 5 --out " + (tmp / "c.png"));
  EXPECT_EQ(bad.code, 2) << bad.out;
  EXPECT_NE(bad.out.find("blocks_to_swap 5: expected 0 to 4"), std::string::npos) << bad.out;
}

TEST(SampleModel, MissingComponentsNameTheFileNeeded) {
  auto dir = fluxtrain::testing::fresh_temp_dir("cli_sample_missing");
  write_tiny_flux_repo(dir.string(), RepoLayout::kDiffusers, false, 12);
  fs::remove_all(dir / "text_encoder_2");
  auto r = run("sample --model " + dir.string() + " --prompt hi --height 16 --width 16");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("text_encoder_2"), std::string::npos) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;

  // A component given by flag replaces the missing one.
  write_tiny_flux_repo((dir / "full").string(), RepoLayout::kDiffusers, false, 12);
  auto ok = run("sample --model " + dir.string() + " --text_encoder_2 " +
                (dir / "full" / "text_encoder_2").string() +
                " --prompt hi --height 16 --width 16 --steps 1 --threads 1 --out " +
                (dir / "hi.png").string());
  EXPECT_EQ(ok.code, 0) << ok.out;
  EXPECT_TRUE(fs::exists(dir / "hi.png"));

  auto bad = run("sample --model " + dir.string() + " --text_encoder_2 " +
                 (dir / "full" / "text_encoder_2").string() +
                 " --prompt hi --height 18 --width 16 --threads 1");
  EXPECT_EQ(bad.out,
            "fluxtrain sample: error: resolution 18x16: height and width must be positive "
            "multiples of 4 for this model\n");
}

}  // namespace

namespace {

TEST(InfoModel, ReadsAModelOnDiskFromItsHeaders) {
  auto dir = fluxtrain::testing::fresh_temp_dir("cli_info_model");
  write_tiny_flux_repo((dir / "repo").string(), RepoLayout::kDiffusers, true, 13);
  auto r = run("info --model " + (dir / "repo").string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("transformer      " + (dir / "repo" / "transformer").string() +
                       " (diffusers layout, custom, F32 stored)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("(16 latent channels, x2, scale 0.3611, shift 0.1159)"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("(CLIP: hidden 32, 2 layers)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(T5: d_model 32, 2 layers)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("hidden 64, heads 2, 1 double + 1 single blocks, guidance input yes"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("not loaded (read from headers)"), std::string::npos) << r.out;
  // A transformer file alone: the missing components are reported, not fatal.
  write_tiny_flux_repo((dir / "bfl").string(), RepoLayout::kBfl, false, 13);
  fs::create_directories(dir / "alone");
  fs::copy_file(dir / "bfl" / "flux1-schnell.safetensors", dir / "alone" / "x.safetensors");
  auto a = run("info --model " + (dir / "alone" / "x.safetensors").string());
  ASSERT_EQ(a.code, 0) << a.out;
  EXPECT_NE(a.out.find("(BFL layout, custom, F32 stored)"), std::string::npos) << a.out;
  EXPECT_NE(a.out.find("other components: model '" + (dir / "alone" / "x.safetensors").string() +
                       "': missing vae/ (diffusers) or ae.safetensors (BFL)"),
            std::string::npos)
      << a.out;
  EXPECT_NE(a.out.find("guidance input no"), std::string::npos) << a.out;
}

}  // namespace
