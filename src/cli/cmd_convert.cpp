// `fluxtrain convert`: a FLUX.1 transformer from one published form to the other (BFL
// flux1-dev.safetensors <-> diffusers transformer/ directory), optionally changing the dtype, or a
// fluxtrain checkpoint's transformer exported in either form. Tensor by tensor: a diffusers
// output holds one shard in memory at a time.
#include <cctype>
#include <cstdio>
#include <filesystem>

#include "cli/commands.h"
#include "core/config.h"
#include "core/errors.h"
#include "io/checkpoint.h"
#include "model/flux_weights.h"
#include "model/presets.h"
#include "train/trainer.h"

namespace fluxtrain {
namespace fs = std::filesystem;
namespace {

ConfigSchema convert_schema() {
  ConfigSchema s;
  s.path("convert", "in",
         "a BFL .safetensors file, a sharded .index.json, a diffusers transformer/ (or pipeline) "
         "directory, or a fluxtrain checkpoint or run directory",
         true)
      .string("convert", "out", "", "output: a .safetensors file (bfl) or a directory (diffusers)")
      .string("convert", "to", "", "bfl | diffusers")
      .choice("convert", "dtype", "keep", {"keep", "bf16", "fp16", "fp32"},
              "dtype of the written tensors (keep: as stored)")
      .string("convert", "max_shard_size", "10GB",
              "largest diffusers shard, e.g. 10GB, 500MB, 2GiB or a byte count")
      .choice("convert", "weights", "model", {"model", "ema"},
              "for a fluxtrain checkpoint: its model weights or its EMA weights");
  return s;
}

// "10GB" -> 10^10, "2GiB" -> 2^31, "1000" -> 1000 (as Hugging Face's max_shard_size).
int64_t parse_size(const std::string& text) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  std::string unit = text.substr(used);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const std::map<std::string, double> units = {
      {"", 1},      {"B", 1},        {"KB", 1e3},        {"MB", 1e6},          {"GB", 1e9},
      {"TB", 1e12}, {"KIB", 1024.0}, {"MIB", 1048576.0}, {"GIB", 1073741824.0}};
  if (used == 0 || !units.count(unit) || !(value > 0) || value * units.at(unit) > 9e18)
    user_error(
        "--max_shard_size: bad value '{}': expected a size like 10GB, 500MB, 2GiB or a "
        "byte count",
        text);
  return static_cast<int64_t>(value * units.at(unit));
}

bool is_checkpoint_or_run(const std::string& path) {
  const fs::path p(path);
  std::error_code ec;
  return fs::is_directory(p, ec) &&
         (fs::exists(p / "manifest.json", ec) || fs::is_directory(p / "checkpoints", ec));
}

std::string thousands(int64_t n) {
  std::string s = std::to_string(n), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out;
}

// A fluxtrain checkpoint's transformer as FluxWeights (its axes come from the preset).
FluxWeights checkpoint_weights(const std::string& path, const std::string& which,
                               std::string* described) {
  const std::string dir = find_checkpoint(path, true);
  const auto ck = load_checkpoint_dir(dir);
  const std::string model = ck.state.value("model", "");
  if (model.empty()) user_error("checkpoint '{}': manifest state names no model", dir);
  const ModelPreset preset = model_preset(model);
  const std::string file = which + ".safetensors";
  if (!ck.has_file(file)) user_error("checkpoint '{}': has no {} (--weights {})", dir, file, which);
  FluxWeights w = inspect_flux_weights(ck.file(file).path(), preset.flux.axes_dim);
  const FluxWeightTable want(preset.flux), got(w.params);
  if (want.describe() != got.describe() || w.params.in_channels != preset.flux.in_channels ||
      w.params.out_channels != preset.flux.out_channels ||
      w.params.context_in_dim != preset.flux.context_in_dim ||
      w.params.vec_in_dim != preset.flux.vec_in_dim)
    user_error("checkpoint '{}': {} holds a transformer with {}, but its model '{}' has {}", dir,
               file, got.describe(), model, want.describe());
  w.params = preset.flux;
  w.preset = model;
  *described = fmt::format("fluxtrain checkpoint {} ({} weights, model {})", dir, which, model);
  return w;
}

}  // namespace

int cmd_convert(const Args& args) {
  Config cfg(convert_schema());
  if (!parse_args(cfg, args)) {
    std::printf(
        "usage: fluxtrain convert --in PATH --out PATH --to bfl|diffusers [--dtype "
        "keep|bf16|fp16|fp32] [--max_shard_size 10GB]\n%s",
        cfg.schema().help().c_str());
    return 0;
  }
  if (cfg.s("in").empty()) user_error("--in: required (a FLUX transformer or a checkpoint)");
  if (cfg.s("out").empty()) user_error("--out: required (a .safetensors file or a directory)");
  const std::string to = cfg.s("to");
  if (to != "bfl" && to != "diffusers")
    user_error("--to: {} (expected bfl or diffusers)",
               to.empty() ? std::string("required") : "bad value '" + to + "'");
  const WeightLayout layout = to == "bfl" ? WeightLayout::kBfl : WeightLayout::kDiffusers;
  const int64_t max_shard = parse_size(cfg.s("max_shard_size"));
  std::optional<torch::ScalarType> dtype;
  if (cfg.s("dtype") == "bf16") dtype = torch::kBFloat16;
  if (cfg.s("dtype") == "fp16") dtype = torch::kHalf;
  if (cfg.s("dtype") == "fp32") dtype = torch::kFloat;

  std::string source;
  FluxWeights w;
  if (is_checkpoint_or_run(cfg.s("in"))) {
    w = checkpoint_weights(cfg.s("in"), cfg.s("weights"), &source);
  } else {
    if (cfg.is_set("weights"))
      user_error("--weights: only for a fluxtrain checkpoint, and '{}' is not one", cfg.s("in"));
    w = inspect_flux_weights(cfg.s("in"));
    source = fmt::format("{} ({})", cfg.s("in"), weight_layout_name(w.layout));
  }
  const int64_t bytes = convert_flux_weights(w, cfg.s("out"), layout, dtype, max_shard);
  const FluxWeightTable table(w.params);
  size_t tensors = 0;
  for (const auto& e : table.entries())
    tensors += layout == WeightLayout::kBfl ? 1 : e.diffusers.size();
  std::printf("%s -> %s (%s): %s, %s; %s parameters, %zu tensors, %s bytes (%s)\n", source.c_str(),
              cfg.s("out").c_str(), weight_layout_name(layout).c_str(), w.preset.c_str(),
              table.describe().c_str(), thousands(w.num_params).c_str(), tensors,
              thousands(bytes).c_str(),
              dtype ? safetensors_dtype_name(*dtype).c_str() : "dtype as stored");
  return 0;
}

}  // namespace fluxtrain
