// `fluxtrain convert` as a user runs it: BFL <-> diffusers round trips that keep every tensor's
// bytes, dtype changes and shards, a training checkpoint exported in both forms, and one-line
// errors for bad flags and inputs.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "fixtures/flux_fixture.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace fluxtrain;

using fluxtrain::testing::run_fluxtrain;

namespace {

using Result = fluxtrain::testing::CommandResult;

fs::path convertdir(const std::string& name) {
  return fluxtrain::testing::fresh_temp_dir("convert_" + name);
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// name -> (dtype, raw bytes) of every tensor of a file or index.
std::map<std::string, std::pair<std::string, std::string>> tensor_bytes(const fs::path& path) {
  ShardedSafetensors st(path.string());
  std::map<std::string, std::pair<std::string, std::string>> out;
  for (const auto& name : st.names()) {
    const auto& info = st.info(name);
    const auto* data = reinterpret_cast<const char*>(st.shard_for(name).data(name));
    out[name] = {info.dtype, std::string(data, info.nbytes())};
  }
  return out;
}

size_t lines(const std::string& s) {
  return static_cast<size_t>(std::count(s.begin(), s.end(), '\n'));
}

}  // namespace

TEST(ConvertCli, BflToDiffusersAndBackKeepsEveryByte) {
  const auto dir = convertdir("roundtrip");
  const auto p = fixtures::tiny_repo_flux_params(true);
  const fs::path original = dir / "flux1-tiny.safetensors";
  fixtures::write_tiny_flux_transformer(original.string(), WeightLayout::kBfl, p, 21);
  fixtures::write_tiny_flux_transformer((dir / "fixture").string(), WeightLayout::kDiffusers, p,
                                        21);

  auto r = run_fluxtrain("convert --in " + original.string() + " --out " +
                         (dir / "transformer").string() + " --to diffusers");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(lines(r.out), 1u) << r.out;
  EXPECT_NE(r.out.find("(BFL) -> " + (dir / "transformer").string() + " (diffusers)"),
            std::string::npos)
      << r.out;
  // 52 BFL tensors; the 2 qkv weights and 2 qkv biases become 3 pieces each and linear1's
  // weight and bias 4 each: 52 + 4 * 2 + 2 * 3 = 66 diffusers tensors.
  EXPECT_NE(r.out.find("66 tensors"), std::string::npos) << r.out;
  EXPECT_EQ(tensor_bytes(dir / "transformer" / "diffusion_pytorch_model.safetensors"),
            tensor_bytes(dir / "fixture" / "diffusion_pytorch_model.safetensors"));
  EXPECT_TRUE(fs::exists(dir / "transformer" / "config.json"));

  r = run_fluxtrain("convert --in " + (dir / "transformer").string() + " --out " +
                    (dir / "back.safetensors").string() + " --to bfl");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("52 tensors"), std::string::npos) << r.out;
  EXPECT_EQ(read_bytes(dir / "back.safetensors"), read_bytes(original));
  fs::remove_all(dir);
}

TEST(ConvertCli, DtypeAndShardSize) {
  const auto dir = convertdir("dtype");
  const auto p = fixtures::tiny_repo_flux_params(false);
  const fs::path original = dir / "flux.safetensors";
  fixtures::write_tiny_flux_transformer(original.string(), WeightLayout::kBfl, p, 22);
  auto r = run_fluxtrain("convert --in " + original.string() + " --out " + (dir / "bf16").string() +
                         " --to diffusers --dtype bf16 --max_shard_size 100KB");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("(BF16)"), std::string::npos) << r.out;
  const fs::path index = dir / "bf16" / "diffusion_pytorch_model.safetensors.index.json";
  ASSERT_TRUE(fs::exists(index));
  const auto bytes = tensor_bytes(index);
  std::set<std::string> shards;
  for (const auto& e : fs::directory_iterator(dir / "bf16"))
    if (e.path().extension() == ".safetensors") {
      shards.insert(e.path().filename().string());
      EXPECT_LE(fs::file_size(e.path()), 100000u + 4096u) << e.path();
    }
  EXPECT_GT(shards.size(), 3u);
  for (const auto& [name, t] : bytes) EXPECT_EQ(t.first, "BF16") << name;
  // A sharded model named by its index file converts too (it is no LoRA file to open).
  r = run_fluxtrain("convert --in " + index.string() + " --out " +
                    (dir / "from-index.safetensors").string() + " --to bfl");
  ASSERT_EQ(r.code, 0) << r.out;
  // Back to fp32 BFL: the bf16 values, widened.
  r = run_fluxtrain("convert --in " + (dir / "bf16").string() + " --out " +
                    (dir / "back.safetensors").string() + " --to bfl --dtype fp32");
  ASSERT_EQ(r.code, 0) << r.out;
  SafetensorsFile back((dir / "back.safetensors").string()), orig(original.string());
  ASSERT_EQ(back.size(), orig.size());
  for (const auto& name : orig.names())
    EXPECT_TRUE(
        torch::equal(back.load(name), orig.load(name).to(torch::kBFloat16).to(torch::kFloat)))
        << name;
  fs::remove_all(dir);
}

TEST(ConvertCli, ExportsATrainingCheckpoint) {
  const auto dir = convertdir("checkpoint");
  auto t = run_fluxtrain(
      "train --output_dir " + dir.string() +
      " --name conv --steps 1 --batch_size 2 --val_samples 4 --final_eval none --threads 1");
  ASSERT_EQ(t.code, 0) << t.out;
  fs::path run_dir;
  for (auto& e : fs::directory_iterator(dir / "conv")) run_dir = e.path();
  const fs::path model = run_dir / "checkpoints" / "step-1" / "model.safetensors";
  ASSERT_TRUE(fs::exists(model));

  auto r = run_fluxtrain("convert --in " + run_dir.string() + " --out " +
                         (dir / "diffusers").string() + " --to diffusers");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("fluxtrain checkpoint"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("model tiny"), std::string::npos) << r.out;
  std::ifstream cin(dir / "diffusers" / "config.json");
  const auto config = nlohmann::json::parse(cin);
  EXPECT_EQ(config["axes_dims_rope"], nlohmann::json({8, 12, 12}));  // the tiny preset's
  EXPECT_EQ(config["num_layers"], 2);
  EXPECT_EQ(config["num_single_layers"], 4);
  EXPECT_EQ(config["in_channels"], 48);

  // Both exports hold exactly the checkpoint's tensors.
  r = run_fluxtrain("convert --in " + run_dir.string() + " --out " +
                    (dir / "bfl.safetensors").string() + " --to bfl");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(tensor_bytes(dir / "bfl.safetensors"), tensor_bytes(model));
  r = run_fluxtrain("convert --in " + (dir / "diffusers").string() + " --out " +
                    (dir / "back.safetensors").string() + " --to bfl");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(read_bytes(dir / "back.safetensors"), read_bytes(dir / "bfl.safetensors"));
  // The BFL file records the axes it cannot imply (head dim 32 would give 4, 14, 14).
  EXPECT_EQ(SafetensorsFile((dir / "bfl.safetensors").string()).metadata().at("fluxtrain.axes_dim"),
            "8,12,12");
  fs::remove_all(dir);
}

TEST(ConvertCli, BadFlagsAndInputsAreOneLineErrors) {
  const auto dir = convertdir("errors");
  const std::string flux = (dir / "flux.safetensors").string();
  fixtures::write_tiny_flux_transformer(flux, WeightLayout::kBfl,
                                        fixtures::tiny_repo_flux_params(false), 1);
  const std::string vae = (dir / "ae.safetensors").string();
  save_safetensors(vae, {{"encoder.conv_in.weight", torch::zeros({2, 3, 3, 3})}});
  const std::string out = (dir / "out").string();
  struct Case {
    std::string args, message;
  };
  const std::vector<Case> cases = {
      {"--in " + flux + " --out " + out,
       "--to: required (expected bfl or diffusers; comfyui, diffusers or kohya for a LoRA file)"},
      {"--in " + flux + " --out " + out + " --to onnx",
       "--to: bad value 'onnx' (expected bfl or diffusers; comfyui, diffusers or kohya for a LoRA "
       "file)"},
      {"--in " + flux + " --to bfl", "--out: required (a .safetensors file or a directory)"},
      {"--out " + out + " --to bfl", "--in: required (a FLUX transformer or a checkpoint)"},
      {"--in /nonexistent --out " + out + " --to bfl",
       "--in: '/nonexistent' for 'in' does not exist"},
      {"--in " + flux + " --out " + out + " --to bfl --dtype fp8",
       "--dtype: bad value 'fp8' for 'dtype': expected one of keep|bf16|fp16|fp32"},
      {"--in " + flux + " --out " + out + " --to diffusers --max_shard_size lots",
       "--max_shard_size: bad value 'lots': expected a size like 10GB, 500MB, 2GiB or a byte "
       "count"},
      {"--in " + flux + " --out " + out + " --to diffusers --max_shard_size 0GB",
       "--max_shard_size: bad value '0GB'"},
      {"--in " + flux + " --out " + out + " --to bfl --frobnicate 1",
       "--frobnicate: unknown key 'frobnicate'"},
      {"--in " + flux + " --out " + out + " --to bfl --weights ema",
       "--weights: only for a fluxtrain checkpoint, and '" + flux + "' is not one"},
      {"--in " + vae + " --out " + out + " --to diffusers",
       vae + ": holds no FLUX transformer (expected img_in.weight (BFL layout) or "
             "x_embedder.weight (diffusers layout))"},
      {"--in " + flux + " --out " + dir.string() + " --to bfl",
       dir.string() + ": is a directory (a BFL checkpoint is one .safetensors file)"},
  };
  for (const auto& c : cases) {
    auto r = run_fluxtrain("convert " + c.args);
    EXPECT_EQ(r.code, 2) << c.args << "\n" << r.out;
    EXPECT_EQ(lines(r.out), 1u) << r.out;
    EXPECT_EQ(r.out.rfind("fluxtrain convert: error: ", 0), 0u) << r.out;
    EXPECT_NE(r.out.find(c.message), std::string::npos) << c.args << "\n" << r.out;
  }
  EXPECT_FALSE(fs::exists(out));
  auto help = run_fluxtrain("convert --help");
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("usage: fluxtrain convert --in PATH --out PATH --to bfl|diffusers"),
            std::string::npos)
      << help.out;
  fs::remove_all(dir);
}
