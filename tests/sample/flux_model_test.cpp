// A real FLUX.1 model run phase by phase (encode, denoise, decode) from tiny repositories in the
// diffusers and BFL layouts: defaults chosen from the weights, identical images from both layouts,
// offloading and batching that do not change the result, and the text phase checked against the
// encoders run directly.
#include "sample/flux_model.h"

#include <gtest/gtest.h>

#include "fixtures/flux_fixture.h"
#include "fixtures/flux_repo_fixture.h"
#include "model/clip_text.h"
#include "model/t5.h"
#include "test_util.h"
#include "text/clip_tokenizer.h"
#include "text/t5_tokenizer.h"

namespace fluxtrain {
namespace {
using fixtures::RepoLayout;
using fixtures::write_tiny_flux_repo;
using testing::error_of;
using testing::fresh_temp_dir;

FluxModel open_model(const std::string& dir, bool offload = false, bool keep_loaded = false) {
  FluxModelOptions o;
  o.offload = offload;
  o.keep_loaded = keep_loaded;
  return FluxModel(resolve_model_files(dir), o);
}

// Full text-to-image for `prompts`, one image each.
torch::Tensor generate(FluxModel& model, const std::vector<std::string>& prompts,
                       const SampleOptions& o, int64_t max_batch) {
  auto cond = model.encode(prompts);
  const int64_t f = model.preset().ae_factor;
  auto noise =
      initial_noise_tokens(static_cast<int64_t>(prompts.size()), model.preset().latent_channels,
                           o.height / f, o.width / f, o.seed, torch::kCPU);
  auto tokens = model.denoise(cond, noise, o, max_batch);
  return model.decode(tokens, o.height, o.width, max_batch);
}

SampleOptions small_options(const FluxModel& model) {
  SampleOptions o = model.default_options();
  o.height = 32;
  o.width = 24;
  o.steps = 3;
  o.seed = 7;
  return o;
}

TEST(FluxModel, DefaultsFollowTheGuidanceInput) {
  const auto root = fresh_temp_dir("fm_defaults");
  write_tiny_flux_repo((root / "dev").string(), RepoLayout::kDiffusers, /*guidance=*/true, 1);
  write_tiny_flux_repo((root / "schnell").string(), RepoLayout::kBfl, /*guidance=*/false, 1);
  FluxModel dev = open_model((root / "dev").string());
  EXPECT_EQ(dev.preset().name, "custom");
  EXPECT_TRUE(dev.preset().flux.guidance_embed);
  EXPECT_EQ(dev.preset().max_text_tokens, 512);
  EXPECT_EQ(dev.preset().ae_factor, 2);  // the tiny VAE has two levels
  EXPECT_EQ(dev.preset().latent_channels, 16);
  SampleOptions d = dev.default_options();
  EXPECT_EQ(d.steps, 28);
  EXPECT_TRUE(d.shift);
  EXPECT_DOUBLE_EQ(d.guidance, 3.5);

  FluxModel schnell = open_model((root / "schnell").string());
  EXPECT_FALSE(schnell.preset().flux.guidance_embed);
  EXPECT_EQ(schnell.transformer_weights().layout, WeightLayout::kBfl);
  EXPECT_EQ(schnell.preset().max_text_tokens, 256);
  SampleOptions s = schnell.default_options();
  EXPECT_EQ(s.steps, 4);
  EXPECT_FALSE(s.shift);

  EXPECT_EQ(error_of([&] { dev.check_resolution(30, 32); }),
            "resolution 30x32: height and width must be positive multiples of 4 for this model");
}

TEST(FluxModel, EncodeIsT5HiddenStatesAndClipPooledOutput) {
  const auto root = fresh_temp_dir("fm_encode");
  write_tiny_flux_repo(root.string(), RepoLayout::kDiffusers, true, 2);
  FluxModel model = open_model(root.string());
  const std::vector<std::string> prompts = {"the cat sat", "", "a dog, a fish!"};
  TextEmbeddings e = model.encode(prompts);
  ASSERT_EQ(e.txt.sizes(), (std::vector<int64_t>{3, 512, 32}));
  ASSERT_EQ(e.vec.sizes(), (std::vector<int64_t>{3, 32}));
  EXPECT_EQ(e.txt.scalar_type(), torch::kFloat);

  // The encoders run by hand: T5 on the padded ids without a mask, CLIP pooled output.
  const ModelFiles& f = model.files();
  T5Tokenizer t5_tok(f.tokenizer_2);
  ClipTokenizer clip_tok(f.tokenizer);
  T5Encoder t5 = load_t5_encoder(f.text_encoder_2);
  ClipTextModel clip = load_clip_text(f.text_encoder);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(e.txt, t5->forward(t5_tok.encode_batch(prompts, 512))));
  EXPECT_TRUE(torch::equal(e.vec, clip->forward(clip_tok.encode_batch(prompts, 77)).pooled));
  // Padding is part of the sequence (no mask): the last token's state differs between prompts
  // only through attention, and is not zero.
  EXPECT_GT(e.txt[0][511].abs().sum().item<double>(), 0.0);
}

TEST(FluxModel, BflAndDiffusersLayoutsGiveIdenticalImages) {
  const auto root = fresh_temp_dir("fm_layouts");
  write_tiny_flux_repo((root / "d").string(), RepoLayout::kDiffusers, true, 3);
  write_tiny_flux_repo((root / "b").string(), RepoLayout::kBfl, true, 3);
  FluxModel d = open_model((root / "d").string());
  FluxModel b = open_model((root / "b").string());
  EXPECT_EQ(d.transformer_weights().layout, WeightLayout::kDiffusers);
  EXPECT_EQ(b.transformer_weights().layout, WeightLayout::kBfl);
  const std::vector<std::string> prompts = {"a red cat", "the dog"};
  auto a = generate(d, prompts, small_options(d), 2);
  auto c = generate(b, prompts, small_options(b), 2);
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{2, 3, 32, 24}));
  EXPECT_TRUE(torch::equal(a, c));
  // Not a constant image, and the prompt matters.
  EXPECT_GT(a.std().item<double>(), 1e-3);
  EXPECT_GT((a[0] - a[1]).abs().max().item<double>(), 1e-4);
}

TEST(FluxModel, OffloadAndBatchingDoNotChangeTheImages) {
  const auto root = fresh_temp_dir("fm_offload");
  write_tiny_flux_repo(root.string(), RepoLayout::kDiffusers, false, 4);
  FluxModel plain = open_model(root.string());
  FluxModel offload = open_model(root.string(), /*offload=*/true);
  const std::vector<std::string> prompts = {"a cat", "a hat", "the fish"};
  auto o = small_options(plain);
  auto a = generate(plain, prompts, o, 3);
  auto b = generate(offload, prompts, o, 3);
  EXPECT_TRUE(torch::equal(a, b));
  // Offloaded components stay loaded: a second run gives the same images again.
  EXPECT_TRUE(torch::equal(generate(offload, prompts, o, 3), a));
  // One image per call: the same images up to float rounding of batched matmuls.
  auto one = generate(plain, prompts, o, 1);
  EXPECT_TRUE(torch::allclose(one, a, 1e-5, 1e-5)) << (one - a).abs().max().item<double>();
}

TEST(FluxModel, KeepLoadedGivesTheSameImagesCallAfterCall) {
  const auto root = fresh_temp_dir("fm_keep");
  write_tiny_flux_repo(root.string(), RepoLayout::kDiffusers, true, 8);
  FluxModel plain = open_model(root.string());
  FluxModel kept = open_model(root.string(), /*offload=*/false, /*keep_loaded=*/true);
  FluxModel both = open_model(root.string(), /*offload=*/true, /*keep_loaded=*/true);
  const std::vector<std::string> prompts = {"a cat", "the dog"};
  auto o = small_options(plain);
  // generate() is encode -> noise -> denoise -> decode, as done by hand.
  auto want = generate(plain, prompts, o, 2);
  auto a = plain.generate(prompts, o, 2);
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{2, 3, 32, 24}));
  EXPECT_EQ(a.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(a, want));
  auto b = kept.generate(prompts, o, 2);
  EXPECT_TRUE(torch::equal(b, a));
  EXPECT_TRUE(torch::equal(kept.generate(prompts, o, 2), a));  // resident: the same again
  EXPECT_TRUE(torch::equal(both.generate(prompts, o, 2), a));
  // With CFG: the empty prompt's row for every image, the same result resident or not.
  o.cfg_scale = 2.0;
  auto g = plain.generate(prompts, o, 2);
  EXPECT_TRUE(torch::equal(kept.generate(prompts, o, 1), plain.generate(prompts, o, 1)));
  EXPECT_TRUE(torch::allclose(kept.generate(prompts, o, 2), g, 1e-5, 1e-5));
  EXPECT_GT((g - a).abs().max().item<double>(), 1e-4);
  EXPECT_EQ(error_of([&] { kept.generate({}, o, 1); }), "generate: no prompts");
  // Two images per prompt, k-major: image 1 of each prompt is the seed + 1 image (with CFG on).
  auto two = kept.generate(prompts, o, 2, 2);
  ASSERT_EQ(two.size(0), 2 * static_cast<int64_t>(prompts.size()));
  SampleOptions next = o;
  next.seed = o.seed + 1;
  const int64_t P = static_cast<int64_t>(prompts.size());
  EXPECT_TRUE(torch::allclose(two.slice(0, 0, P), kept.generate(prompts, o, 2), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(two.slice(0, P, 2 * P), kept.generate(prompts, next, 2), 1e-5, 1e-5));
  EXPECT_GT((two.slice(0, 0, P) - two.slice(0, P, 2 * P)).abs().max().item<double>(), 1e-3);
}

TEST(FluxModel, ClassifierFreeGuidanceRowsAreSplitPerChunk) {
  const auto root = fresh_temp_dir("fm_cfg");
  write_tiny_flux_repo(root.string(), RepoLayout::kDiffusers, false, 5);
  FluxModel model = open_model(root.string());
  const std::vector<std::string> prompts = {"a cat", "the dog", "a fish"};
  std::vector<std::string> texts = prompts;
  texts.insert(texts.end(), 3, "");
  auto cond = model.encode(texts);
  auto o = small_options(model);
  o.cfg_scale = 2.5;
  auto noise = initial_noise_tokens(3, 16, 16, 12, o.seed, torch::kCPU);
  auto all = model.denoise(cond, noise, o, 3);
  auto split = model.denoise(cond, noise, o, 2);  // chunks {0, 1} and {2}, each with its empties
  EXPECT_TRUE(torch::allclose(all, split, 1e-5, 1e-5));
  o.cfg_scale = 1.0;
  auto plain = model.denoise({cond.txt.slice(0, 0, 3), cond.vec.slice(0, 0, 3)}, noise, o, 3);
  EXPECT_GT((plain - all).abs().max().item<double>(), 1e-4);  // guidance changes the result
}

TEST(FluxModel, MismatchedComponentsAreOneLineErrors) {
  const auto root = fresh_temp_dir("fm_mismatch");
  write_tiny_flux_repo((root / "a").string(), RepoLayout::kDiffusers, true, 6);
  // A transformer that takes 4 latent channels x 4 with a 16-channel VAE.
  ModelFiles files = resolve_model_files((root / "a").string());
  FluxParams p = fixtures::tiny_repo_flux_params(true);
  p.in_channels = p.out_channels = 16;
  const std::string other = (root / "other.safetensors").string();
  fixtures::write_tiny_flux_transformer(other, WeightLayout::kBfl, p, 1);
  files.transformer = other;
  EXPECT_EQ(error_of([&] { FluxModel m(files, {}); }),
            other +
                ": the transformer takes 16 input channels, but the VAE has 16 latent channels "
                "(x 4 for 2x2 patches = 64): the two do not belong together");
}

// On a CUDA device (skipped without CUDA; the GPU check runs it): fp32 matches the CPU, bf16
// stays close, and each phase leaves the device's memory to the next.
TEST(FluxModelGpu, CudaImagesMatchTheCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const auto root = fresh_temp_dir("fm_cuda");
  write_tiny_flux_repo(root.string(), RepoLayout::kDiffusers, true, 8);
  FluxModel cpu = open_model(root.string());
  FluxModelOptions o32;
  o32.device = torch::kCUDA;
  FluxModel cuda32(resolve_model_files(root.string()), o32);
  FluxModelOptions o16 = o32;
  o16.dtype = torch::kBFloat16;
  FluxModel cuda16(resolve_model_files(root.string()), o16);
  const std::vector<std::string> prompts = {"a red cat", "the dog"};
  auto o = small_options(cpu);
  auto a = generate(cpu, prompts, o, 2);
  auto b = generate(cuda32, prompts, o, 2);
  o.precision = torch::kBFloat16;
  auto c = generate(cuda16, prompts, o, 2);
  EXPECT_TRUE(b.device().is_cpu());
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-3);  // TF32 off by default in libtorch
  EXPECT_LT((a - c).abs().max().item<double>(), 0.15);  // bf16 weights and activations
}

}  // namespace
}  // namespace fluxtrain
