// Finding a model's components on disk: diffusers repositories, BFL files, the Hugging Face cache
// layout, single files with overrides, and the errors that name what is missing.
#include "sample/model_files.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "test_util.h"

namespace fluxtrain {
namespace {
namespace fs = std::filesystem;
using testing::error_of;
using testing::fresh_temp_dir;

void touch(const fs::path& p) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << "x";
}

// The files of a diffusers FLUX repository (contents do not matter to the resolver).
void diffusers_repo(const fs::path& root) {
  touch(root / "model_index.json");
  touch(root / "transformer" / "config.json");
  touch(root / "transformer" / "diffusion_pytorch_model.safetensors.index.json");
  touch(root / "vae" / "config.json");
  touch(root / "text_encoder" / "config.json");
  touch(root / "text_encoder_2" / "config.json");
  touch(root / "tokenizer" / "vocab.json");
  touch(root / "tokenizer" / "merges.txt");
  touch(root / "tokenizer_2" / "spiece.model");
}

TEST(ModelFiles, DiffusersRepository) {
  auto root = fresh_temp_dir("mf_diffusers");
  diffusers_repo(root);
  auto f = resolve_model_files(root.string());
  EXPECT_EQ(f.root, root.string());
  EXPECT_EQ(f.transformer, (root / "transformer").string());
  EXPECT_EQ(f.vae, (root / "vae").string());
  EXPECT_EQ(f.text_encoder, (root / "text_encoder").string());
  EXPECT_EQ(f.text_encoder_2, (root / "text_encoder_2").string());
  EXPECT_EQ(f.tokenizer, (root / "tokenizer").string());
  EXPECT_EQ(f.tokenizer_2, (root / "tokenizer_2" / "spiece.model").string());
}

TEST(ModelFiles, BflFilesBesideDiffusersEncoders) {
  // BFL's repositories hold flux1-dev.safetensors and ae.safetensors at the top and the encoders
  // in diffusers folders.
  auto root = fresh_temp_dir("mf_bfl");
  diffusers_repo(root);
  fs::remove_all(root / "transformer");
  fs::remove_all(root / "vae");
  touch(root / "flux1-dev.safetensors");
  touch(root / "ae.safetensors");
  auto f = resolve_model_files(root.string());
  EXPECT_EQ(f.transformer, (root / "flux1-dev.safetensors").string());
  EXPECT_EQ(f.vae, (root / "ae.safetensors").string());

  touch(root / "flux1-schnell.safetensors");
  auto e = error_of([&] { resolve_model_files(root.string()); });
  EXPECT_NE(e.find("several transformer files"), std::string::npos) << e;
  EXPECT_NE(e.find("--transformer"), std::string::npos) << e;
  auto g = resolve_model_files(root.string(), {(root / "flux1-schnell.safetensors").string()});
  EXPECT_EQ(g.transformer, (root / "flux1-schnell.safetensors").string());
}

TEST(ModelFiles, SingleTransformerFileFindsItsNeighbours) {
  auto root = fresh_temp_dir("mf_single");
  diffusers_repo(root);
  touch(root / "weights" / "my-finetune.safetensors");
  const auto file = (root / "weights" / "my-finetune.safetensors").string();
  // Nothing beside it: the first missing component is named, with the flag that supplies it.
  auto e = error_of([&] { resolve_model_files(file); });
  EXPECT_NE(e.find("missing vae/ (diffusers) or ae.safetensors"), std::string::npos) << e;
  EXPECT_NE(e.find("--vae PATH"), std::string::npos) << e;
  ModelFileOverrides o;
  o.vae = (root / "vae").string();
  o.text_encoder = (root / "text_encoder").string();
  o.text_encoder_2 = (root / "text_encoder_2").string();
  o.tokenizer = (root / "tokenizer").string();
  o.tokenizer_2 = (root / "tokenizer_2" / "spiece.model").string();
  auto f = resolve_model_files(file, o);
  EXPECT_EQ(f.transformer, file);
  EXPECT_EQ(f.vae, o.vae);
  EXPECT_EQ(f.tokenizer_2, o.tokenizer_2);
  // Only the transformer is needed for commands that read nothing else.
  EXPECT_EQ(resolve_model_files(file, {}, false, false).transformer, file);
}

TEST(ModelFiles, HuggingFaceCacheLayout) {
  auto entry = fresh_temp_dir("mf_cache") / "models--black-forest-labs--FLUX.1-schnell";
  diffusers_repo(entry / "snapshots" / "aaaa");
  // One snapshot: taken whether the entry or its snapshots/ folder is given.
  EXPECT_EQ(resolve_model_files(entry.string()).root, (entry / "snapshots" / "aaaa").string());
  EXPECT_EQ(resolve_hf_cache_dir((entry / "snapshots").string()),
            (entry / "snapshots" / "aaaa").string());
  // Two snapshots: refs/main decides; without it, an error listing them.
  diffusers_repo(entry / "snapshots" / "bbbb");
  auto e = error_of([&] { resolve_model_files(entry.string()); });
  EXPECT_NE(e.find("2 snapshots and no refs/main"), std::string::npos) << e;
  EXPECT_NE(e.find("aaaa, bbbb"), std::string::npos) << e;
  fs::create_directories(entry / "refs");
  std::ofstream(entry / "refs" / "main") << "bbbb\n";
  EXPECT_EQ(resolve_model_files(entry.string()).root, (entry / "snapshots" / "bbbb").string());
  std::ofstream(entry / "refs" / "main") << "cccc";
  e = error_of([&] { resolve_model_files(entry.string()); });
  EXPECT_NE(e.find("refs/main names revision 'cccc'"), std::string::npos) << e;
  // A snapshot directory given directly is used as is.
  EXPECT_EQ(resolve_hf_cache_dir((entry / "snapshots" / "aaaa").string()),
            (entry / "snapshots" / "aaaa").string());
}

TEST(ModelFiles, MissingComponentsAreNamed) {
  auto root = fresh_temp_dir("mf_missing");
  diffusers_repo(root);
  struct Case {
    fs::path remove;
    std::string expect;
  } cases[] = {
      {"text_encoder_2", "missing text_encoder_2/ (the T5-XXL text encoder)"},
      {"text_encoder/config.json", "missing text_encoder/config.json (the CLIP-L text encoder)"},
      {"tokenizer_2/spiece.model", "missing tokenizer_2/spiece.model"},
      {"tokenizer/merges.txt", "missing tokenizer/merges.txt (the CLIP tokenizer)"},
      {"vae", "missing vae/ (diffusers) or ae.safetensors (BFL)"},
      {"transformer", "missing transformer/ (diffusers) or flux1-*.safetensors (BFL)"},
  };
  for (const auto& c : cases) {
    auto fresh = fresh_temp_dir("mf_missing_case");
    diffusers_repo(fresh);
    fs::remove_all(fresh / c.remove);
    auto e = error_of([&] { resolve_model_files(fresh.string()); });
    EXPECT_NE(e.find(c.expect), std::string::npos) << c.remove << ": " << e;
    EXPECT_NE(e.find("does not download"), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
  auto e = error_of([&] { resolve_model_files((root / "nope").string()); });
  EXPECT_NE(e.find("no such file or directory"), std::string::npos) << e;
  ModelFileOverrides o;
  o.text_encoder = (root / "nope").string();
  e = error_of([&] { resolve_model_files(root.string(), o); });
  EXPECT_NE(e.find("--text_encoder"), std::string::npos) << e;
}

TEST(ModelFiles, PathsAndPresetNamesAreTold) {
  auto root = fresh_temp_dir("mf_names");
  EXPECT_TRUE(looks_like_model_path(root.string()));
  EXPECT_TRUE(looks_like_model_path("models/flux"));
  EXPECT_FALSE(looks_like_model_path("flux-dev"));
  EXPECT_FALSE(looks_like_model_path("tiny"));
}

}  // namespace
}  // namespace fluxtrain
