// `fluxtrain prepare` on a tiny real-layout model and an image folder the test writes: the cache
// round-trips (what training reads is what the encoders give), an interrupted prepare resumes
// without redoing finished shards, a cache from other settings is refused, and a fine-tune from
// raw images and from its cache gives the same losses.
#include "train/prepare.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "data/latent_cache.h"
#include "data/transforms.h"
#include "fixtures/fixtures.h"
#include "fixtures/flux_repo_fixture.h"
#include "io/image.h"
#include "model/vae.h"
#include "sample/model_files.h"
#include "sample/pipeline.h"
#include "test_util.h"
#include "train/train_config.h"
#include "train/trainer.h"

using namespace fluxtrain;
namespace fs = std::filesystem;
using fluxtrain::testing::error_of;
using fluxtrain::testing::TempDir;

namespace {

// Seven images of two shapes (square and 2:1) with side-car captions (two share one).
void write_images(const fs::path& dir) {
  const char* captions[] = {"a red square", "a green field", "a red square", "a blue sky",
                            "a tall tree",  "a wide road",   "a small cat"};
  for (int i = 0; i < 7; ++i) {
    const int64_t w = i % 3 == 0 ? 64 : 32, h = 32;
    auto hwc =
        torch::randint(0, 255, {h, w, 3}, torch::TensorOptions().dtype(torch::kUInt8)).contiguous();
    fixtures::write_text((dir / fmt::format("img{}.png", i)).string(), encode_png(hwc));
    fixtures::write_text((dir / fmt::format("img{}.txt", i)).string(), captions[i]);
  }
}

PrepareOptions prepare_options(const std::string& model, const fs::path& images,
                               const fs::path& out, std::vector<std::string> extra = {}) {
  Config c(prepare_schema());
  std::vector<std::string> args = {"--model",
                                   model,
                                   "--data",
                                   images.string(),
                                   "--out",
                                   out.string(),
                                   "--resolution",
                                   "32",
                                   "--threads",
                                   "1",
                                   "--cache_dtype",
                                   "fp32",
                                   "--batch_size",
                                   "1",
                                   "--shard_size",
                                   "3",
                                   "--bucket_min_side",
                                   "16"};
  args.insert(args.end(), extra.begin(), extra.end());
  parse_args(c, args);
  return PrepareOptions::from_config(c);
}

// A short fine-tune of `repo` on `data` (raw images or their cache), run `name` under `runs`.
Config cache_run_config(const std::string& repo, const fs::path& data, const fs::path& runs,
                        const std::string& name, const std::vector<std::string>& extra) {
  Config c(train_schema());
  std::vector<std::string> args = {
      "--model",      repo,   "--data",         data.string(), "--output_dir",      runs.string(),
      "--name",       name,   "--resolution",   "32",          "--batch_size",      "2",
      "--lr",         "1e-3", "--warmup_steps", "0",           "--val_samples",     "0",
      "--final_eval", "none", "--threads",      "1",           "--bucket_min_side", "16"};
  args.insert(args.end(), extra.begin(), extra.end());
  parse_args(c, args);
  return c;
}

}  // namespace

TEST(Prepare, TheCacheHoldsWhatTheEncodersGive) {
  TempDir tmp;
  torch::manual_seed(3);
  const std::string repo = tmp / "model";
  fixtures::write_tiny_flux_repo(repo, fixtures::RepoLayout::kDiffusers, true, 41);
  write_images(tmp.path() / "images");
  const auto r = prepare_cache(prepare_options(repo, tmp.path() / "images", tmp.path() / "cache",
                                               {"--validation_prompts", "[\"a dog\"]"}));
  EXPECT_EQ(r.train, 7);
  EXPECT_EQ(r.validation, 0);
  EXPECT_EQ(r.captions, 8);        // six distinct ("a red square" twice), the empty one and "a dog"
  EXPECT_EQ(r.shards_written, 3);  // 7 examples in shards of 3
  const LatentCacheManifest m = read_latent_cache_manifest(tmp / "cache", /*verify=*/true);
  // Two buckets: the four squares at 32x32, the three 2:1 images at the nearest 2:1 shape of
  // about 32^2 pixels in steps of 4 (44x20: 48x24 would hold more than 32^2).
  EXPECT_EQ(m.json["buckets"], nlohmann::json({{"32x32", 4}, {"44x20", 3}}));
  EXPECT_EQ(m.captions[0], "");
  // Each example: the posterior of its image exactly as the VAE gives it, and its caption's
  // encodings as the text encoders give them (one at a time, as --batch_size 1 encodes them).
  PipelineLoadOptions lo;
  lo.with_transformer = false;
  Pipeline pipe = Pipeline::load(resolve_model_files(repo), lo);
  LatentCacheDataset cache(tmp / "cache", false);
  ASSERT_EQ(cache.size(), 7);
  torch::NoGradGuard no_grad;
  for (int64_t i = 0; i < cache.size(); ++i) {
    const Example ex = cache.get(i);
    const auto hwc = read_image(tmp / ("images/" + ex.key));
    const auto& x = m.examples[static_cast<size_t>(i)];
    ASSERT_EQ(ex.latent_mean.sizes(), (std::vector<int64_t>{16, x.height / 2, x.width / 2}));
    const auto image = fit_to_bucket(hwc, Bucket{x.width, x.height}, {}, std::nullopt);
    auto [mean, logvar] = pipe.autoencoder->encode_moments(image.unsqueeze(0));
    EXPECT_TRUE(torch::equal(ex.latent_mean, mean[0])) << ex.key;
    EXPECT_TRUE(torch::equal(ex.latent_logvar, logvar[0])) << ex.key;
    const TextEmbeddings t = pipe.text->encode({ex.caption}, torch::kCPU);
    EXPECT_TRUE(torch::equal(ex.txt, t.txt[0])) << ex.caption;
    EXPECT_TRUE(torch::equal(ex.vec, t.vec[0])) << ex.caption;
  }
  EXPECT_TRUE(cache.text_of("a dog").has_value());
  EXPECT_FALSE(cache.text_of("a horse").has_value());
  // A finished cache is not prepared over.
  EXPECT_NE(error_of([&] {
              prepare_cache(prepare_options(repo, tmp.path() / "images", tmp.path() / "cache"));
            }).find("already a finished cache"),
            std::string::npos);
}

TEST(Prepare, AnInterruptedPrepareResumesWithoutRedoingFinishedShards) {
  TempDir tmp;
  torch::manual_seed(4);
  const std::string repo = tmp / "model";
  fixtures::write_tiny_flux_repo(repo, fixtures::RepoLayout::kBfl, false, 42);
  write_images(tmp.path() / "images");
  const fs::path cache = tmp.path() / "cache";
  prepare_cache(prepare_options(repo, tmp.path() / "images", cache, {"--val_split", "0"}));
  const LatentCacheManifest whole = read_latent_cache_manifest(cache.string(), true);
  std::vector<Example> before;  // read now: the files are about to change under their mapping
  {
    LatentCacheDataset d(cache.string(), false);
    for (int64_t i = 0; i < d.size(); ++i) before.push_back(d.get(i));
  }
  // As if it had stopped in shard 2: no manifest, the last shard half-written and not done.
  fs::remove(cache / "cache.json");
  fs::remove(cache / "latents-00002.safetensors.done");
  fs::resize_file(cache / "latents-00002.safetensors", 100);
  const auto r =
      prepare_cache(prepare_options(repo, tmp.path() / "images", cache, {"--val_split", "0"}));
  EXPECT_EQ(r.shards_skipped, 2);
  EXPECT_EQ(r.shards_written, 1);
  LatentCacheDataset after(cache.string(), false);
  ASSERT_EQ(after.size(), static_cast<int64_t>(before.size()));
  for (int64_t i = 0; i < after.size(); ++i) {
    EXPECT_TRUE(torch::equal(after.get(i).latent_mean, before[static_cast<size_t>(i)].latent_mean))
        << i;
    EXPECT_EQ(after.get(i).caption, before[static_cast<size_t>(i)].caption);
  }
  EXPECT_EQ(read_latent_cache_manifest(cache.string(), true).json["examples"],
            whole.json["examples"]);
  // Resuming with other settings is refused, naming the folder.
  fs::remove(cache / "cache.json");
  const auto e = error_of([&] {
    prepare_cache(prepare_options(repo, tmp.path() / "images", cache, {"--resolution", "64"}));
  });
  EXPECT_NE(e.find("prepared with other settings"), std::string::npos) << e;
}

TEST(Prepare, AValidationSplitCarriesTimestepIndicesInEqualNumbers) {
  TempDir tmp;
  torch::manual_seed(5);
  const std::string repo = tmp / "model";
  fixtures::write_tiny_flux_repo(repo, fixtures::RepoLayout::kDiffusers, true, 43);
  for (int k = 0; k < 3; ++k) write_images(tmp.path() / "images" / std::to_string(k));  // 21
  const auto r = prepare_cache(prepare_options(repo, tmp.path() / "images", tmp.path() / "cache",
                                               {"--val_split", "10", "--cache_dtype", "bf16"}));
  EXPECT_EQ(r.validation, 8);  // 10 rounded down to a multiple of 8
  EXPECT_EQ(r.train, 13);
  LatentCacheDataset val(tmp / "cache", true);
  std::vector<int> per(8, 0);
  for (int64_t i = 0; i < val.size(); ++i) ++per[static_cast<size_t>(val.get(i).timestep_index)];
  EXPECT_EQ(per, std::vector<int>(8, 1));
  // Examples come in the stored dtype (the trainer converts on the device); without text they
  // carry the latents alone.
  const Example ex = val.get(0);
  EXPECT_EQ(ex.latent_mean.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(ex.txt.scalar_type(), torch::kBFloat16);
  LatentCacheDataset latents_only(tmp / "cache", true, /*with_text=*/false);
  const Example bare = latents_only.get(0);
  EXPECT_TRUE(torch::equal(bare.latent_mean, ex.latent_mean));
  EXPECT_TRUE(torch::equal(bare.latent_logvar, ex.latent_logvar));
  EXPECT_FALSE(bare.txt.defined());
  EXPECT_FALSE(bare.vec.defined());
}

TEST(Prepare, AFineTuneFromRawImagesAndFromItsCacheGivesTheSameLosses) {
  TempDir tmp;
  torch::manual_seed(6);
  const std::string repo = tmp / "model";
  fixtures::write_tiny_flux_repo(repo, fixtures::RepoLayout::kDiffusers, true, 44);
  write_images(tmp.path() / "images");
  prepare_cache(prepare_options(repo, tmp.path() / "images", tmp.path() / "cache"));
  auto run = [&](const fs::path& data, const std::string& name) {
    return train(cache_run_config(repo, data, tmp.path() / "runs", name,
                                  {"--steps", "6", "--caption_dropout", "0.3", "--workers", "1"}));
  };
  const auto raw = run(tmp.path() / "images", "raw");
  const auto cached = run(tmp.path() / "cache", "cached");
  const auto a = fixtures::train_losses(raw.run_dir), b = fixtures::train_losses(cached.run_dir);
  ASSERT_EQ(a.size(), 6u);
  EXPECT_EQ(a, b);
  // A run asking for another resolution than the cache holds is refused, naming it.
  Config c(train_schema());
  parse_args(c, {"--model", repo, "--data", (tmp.path() / "cache").string(), "--output_dir",
                 (tmp.path() / "runs").string(), "--resolution", "64", "--steps", "1"});
  const auto e = error_of([&] { train(c); });
  EXPECT_NE(e.find("resolution: the cache has 32, this run 64"), std::string::npos) << e;
}

TEST(Prepare, ACacheOfManyCaptionsTrainsWithoutHoldingTheirText) {
  // 70 captions, more than the final grid samples: training reads each batch's encodings from
  // the cache and keeps only the empty caption in memory.
  TempDir tmp;
  torch::manual_seed(6);
  const std::string repo = tmp / "model";
  fixtures::write_tiny_flux_repo(repo, fixtures::RepoLayout::kDiffusers, true, 45);
  for (int i = 0; i < 70; ++i) {
    auto hwc = torch::randint(0, 255, {16, 16, 3}, torch::TensorOptions().dtype(torch::kUInt8));
    fixtures::write_text((tmp.path() / fmt::format("images/{}.png", i)).string(),
                         encode_png(hwc.contiguous()));
    fixtures::write_text((tmp.path() / fmt::format("images/{}.txt", i)).string(),
                         fmt::format("picture number {}", i));
  }
  prepare_cache(prepare_options(repo, tmp.path() / "images", tmp.path() / "cache",
                                {"--resolution", "16", "--shard_size", "32"}));
  Config c(train_schema());
  parse_args(c, {"--model", repo, "--data", (tmp.path() / "cache").string(), "--output_dir",
                 (tmp.path() / "runs").string(), "--batch_size", "7", "--steps", "2",
                 "--val_samples", "0", "--final_eval", "auto", "--threads", "1"});
  const auto r = train(c);
  EXPECT_EQ(fixtures::train_losses(r.run_dir).size(), 2u);
  EXPECT_FALSE(fs::exists(fs::path(r.run_dir) / "samples" / "captions.png"));  // 70 > 64
}

TEST(Prepare, AControlNetRunFromItsCacheOfControlLatentsGivesTheSameLosses) {
  // prepare --control_images canny stores each example's control latents beside its latents; a
  // ControlNet run on the cache equals the one computing Canny and encoding it, bit for bit.
  TempDir tmp;
  torch::manual_seed(8);
  const std::string repo = tmp / "model";
  fixtures::write_tiny_flux_repo(repo, fixtures::RepoLayout::kDiffusers, true, 45);
  write_images(tmp.path() / "images");
  const std::vector<std::string> canny = {"--control_images", "canny", "--canny_sigma", "0.8"};
  const auto r =
      prepare_cache(prepare_options(repo, tmp.path() / "images", tmp.path() / "cache", canny));
  const auto manifest = read_latent_cache_manifest(r.dir, true);
  EXPECT_EQ(manifest.json["control"]["source"], "canny");
  EXPECT_EQ(manifest.json["control"]["canny"]["sigma"], 0.8);
  SafetensorsFile shard((tmp.path() / "cache" / manifest.latent_shards[0]).string());
  EXPECT_TRUE(shard.contains("control.0"));
  EXPECT_EQ(shard.load("control.0").sizes(), shard.load("mean.0").sizes());
  auto run = [&](const fs::path& data, const std::string& name,
                 const std::vector<std::string>& control) {
    std::vector<std::string> extra = {"--steps",
                                      "4",
                                      "--method",
                                      "controlnet",
                                      "--controlnet_double_blocks",
                                      "1",
                                      "--controlnet_single_blocks",
                                      "1"};
    extra.insert(extra.end(), control.begin(), control.end());
    return train(cache_run_config(repo, data, tmp.path() / "runs", name, extra));
  };
  const auto raw = run(tmp.path() / "images", "raw", canny);
  const auto cached = run(tmp.path() / "cache", "cached", canny);
  const auto a = fixtures::train_losses(raw.run_dir), b = fixtures::train_losses(cached.run_dir);
  ASSERT_EQ(a.size(), 4u);
  EXPECT_EQ(a, b);
  // Other thresholds than the cache's, or a cache without control latents, are refused.
  const auto other = error_of([&] {
    run(tmp.path() / "cache", "other", {"--control_images", "canny", "--canny_sigma", "1.4"});
  });
  EXPECT_NE(other.find("control_images: the latent cache"), std::string::npos) << other;
  EXPECT_NE(other.find("\"sigma\":1.4"), std::string::npos) << other;
  prepare_cache(prepare_options(repo, tmp.path() / "images", tmp.path() / "plain"));
  const auto none = error_of([&] { run(tmp.path() / "plain", "none", canny); });
  EXPECT_NE(none.find("holds no control latents"), std::string::npos) << none;
}
