// `fluxtrain convert`: a FLUX.1 transformer from one published form to the other (BFL
// flux1-dev.safetensors <-> diffusers transformer/ directory), optionally changing the dtype, or a
// fluxtrain checkpoint's transformer exported in either form. Tensor by tensor: a diffusers
// output holds one shard in memory at a time.
#include <fmt/ranges.h>

#include <cctype>
#include <cstdio>
#include <filesystem>

#include "cli/commands.h"
#include "core/config.h"
#include "core/device.h"
#include "core/errors.h"
#include "core/log.h"
#include "io/checkpoint.h"
#include "model/flux_weights.h"
#include "model/lora_merge.h"
#include "model/presets.h"
#include "model/weights.h"
#include "train/lora_model.h"
#include "train/resume.h"
#include "train/train_config.h"
#include "train/train_spec.h"

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
              "for a fluxtrain checkpoint: its model weights or its EMA weights")
      .list("convert", "lora",
            "LoRA files merged into the weights written, FILE or FILE:strength (any layout); "
            "give --lora again to stack several");
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

// A fluxtrain checkpoint's transformer, complete: rebuilt as its run built it (a preset's seeded
// initialisation, or the real model it fine-tuned) with the checkpoint's tensors over it (all of
// them, or the trained ones; --weights ema: the averaged ones on top).
struct CheckpointTransformer {
  NamedTensors bfl;
  FluxParams params;
  std::string preset, description;
};

CheckpointTransformer checkpoint_transformer(const std::string& path, const std::string& which,
                                             std::optional<torch::ScalarType> dtype) {
  const ResumePoint ck = open_checkpoint(path, /*prefer_best=*/true);
  const std::string& dir = ck.checkpoint.dir;
  const std::string file = which + ".safetensors";
  if (!ck.checkpoint.has_file(file))
    user_error("checkpoint '{}': has no {} (--weights {})", dir, file, which);
  const auto& model_file = ck.checkpoint.file("model.safetensors");
  const auto names = model_file.names();
  if (names.empty()) user_error("checkpoint '{}': model.safetensors holds no tensors", dir);
  const torch::ScalarType stored = safetensors_load_dtype(model_file.info(names.front()).dtype);
  Config run(train_schema());
  run.load_yaml_string(ck.state.config_yaml, "checkpoint '" + dir + "' configuration");
  run.set("device", "cpu", "convert");
  const torch::ScalarType build = stored == torch::kBFloat16 ? torch::kBFloat16 : torch::kFloat;
  run.set("weights", precision_name(build), "convert");
  run.set("precision", precision_name(build), "convert");
  const TrainOptions ro = TrainOptions::from_config(run);
  if (ro.method == "controlnet")
    user_error(
        "checkpoint '{}': a ControlNet run trains no transformer weights; the checkpoint "
        "is itself a diffusers ControlNet (config.json + diffusion_pytorch_model"
        ".safetensors: load it with FluxControlNetModel.from_pretrained or sample "
        "--controlnet)",
        dir);
  Flux transformer = build_transformer(ro);
  auto model = build_trained_model(ro, transformer);
  model->load_checkpoint(model_file);
  if (which == "ema") model->load_averaged(ck.checkpoint.file(file));
  CheckpointTransformer out;
  out.params = transformer->params;
  out.preset = ro.model_is_path ? flux_preset_of(out.params) : ro.model;
  NamedTensors merged = module_tensors(*transformer);
  if (const auto* lora = dynamic_cast<const LoraFineTune*>(model.get())) {
    for (auto& [name, t] : merged) t = t.clone();  // the run's adapters merged into a copy
    merge_lora(merged, lora->weights(), 1.0);
  }
  for (auto& [name, t] : merged)
    out.bfl.emplace_back(name, t.to(dtype ? *dtype : stored).contiguous());
  out.description =
      fmt::format("fluxtrain checkpoint {} ({} weights, model {}{})", dir, which, ck.state.model,
                  model->saves_complete_model() ? "" : ", trained tensors over it");
  return out;
}

// A .safetensors file of LoRA tensors (lora_A/B or lora_down/up keys) rather than a model.
bool is_lora_file(const std::string& path) {
  std::error_code ec;
  // (a sharded model's .index.json is a model, and no safetensors file to open)
  if (fs::path(path).extension() != ".safetensors" || !fs::is_regular_file(path, ec)) return false;
  const SafetensorsFile f(path);
  for (const auto& n : f.names())
    for (const char* k : {".lora_A.", ".lora_B.", ".lora_down.", ".lora_up."})
      if (n.find(k) != std::string::npos) return true;
  return false;
}

// One LoRA file rewritten in another layout (the adapters' deltas unchanged).
int convert_lora_file(const Config& cfg) {
  const std::string to = cfg.s("to");
  if (to != "comfyui" && to != "diffusers" && to != "kohya")
    user_error("--to: '{}' for a LoRA file ({}): expected comfyui, diffusers or kohya", to,
               cfg.s("in"));
  const auto layouts = parse_lora_formats(to);
  for (const char* k : {"lora", "weights", "max_shard_size"})
    if (cfg.is_set(k)) user_error("--{}: not for a LoRA file ({})", k, cfg.s("in"));
  const LoraWeights w = read_lora_file(cfg.s("in"));
  LoraDescription d;
  d.base_model =
      w.metadata.count("fluxtrain.base_model") ? w.metadata.at("fluxtrain.base_model") : "";
  d.architecture = "flux-1";
  d.targets = "converted from " + cfg.s("in");
  std::optional<torch::ScalarType> dtype;
  if (cfg.s("dtype") == "bf16") dtype = torch::kBFloat16;
  if (cfg.s("dtype") == "fp16") dtype = torch::kHalf;
  const torch::ScalarType out_dtype = dtype ? *dtype : torch::kFloat;
  write_lora_file(cfg.s("out"), w, layouts[0], d, out_dtype);
  std::vector<std::string> modules;
  for (const auto& m : w.modules) modules.push_back(m.module);
  for (const auto& g : lora_layout_gaps(modules, layouts)) log_warn("{}", g);
  std::printf("%s (%s) -> %s (%s): %zu adapted layers, %s\n", cfg.s("in").c_str(),
              fmt::format("{}", fmt::join(w.layouts, "+")).c_str(), cfg.s("out").c_str(),
              to.c_str(), w.modules.size(), safetensors_dtype_name(out_dtype).c_str());
  return 0;
}

}  // namespace

int cmd_convert(const Args& args) {
  Config cfg(convert_schema());
  if (!parse_args(cfg, args)) {
    std::printf(
        "usage: fluxtrain convert --in PATH --out PATH --to bfl|diffusers [--dtype "
        "keep|bf16|fp16|fp32] [--max_shard_size 10GB] [--lora FILE[:strength] ...]\n"
        "       fluxtrain convert --in LORA.safetensors --out PATH --to "
        "comfyui|diffusers|kohya\n%s",
        cfg.schema().help().c_str());
    return 0;
  }
  if (cfg.s("in").empty()) user_error("--in: required (a FLUX transformer or a checkpoint)");
  if (cfg.s("out").empty()) user_error("--out: required (a .safetensors file or a directory)");
  if (is_lora_file(cfg.s("in"))) return convert_lora_file(cfg);
  const std::string to = cfg.s("to");
  if (to != "bfl" && to != "diffusers")
    user_error("--to: {} (expected bfl or diffusers; comfyui, diffusers or kohya for a LoRA file)",
               to.empty() ? std::string("required") : "bad value '" + to + "'");
  const WeightLayout layout = to == "bfl" ? WeightLayout::kBfl : WeightLayout::kDiffusers;
  const int64_t max_shard = parse_size(cfg.s("max_shard_size"));
  std::optional<torch::ScalarType> dtype;
  if (cfg.s("dtype") == "bf16") dtype = torch::kBFloat16;
  if (cfg.s("dtype") == "fp16") dtype = torch::kHalf;
  if (cfg.s("dtype") == "fp32") dtype = torch::kFloat;

  std::string source, preset;
  FluxParams params;
  int64_t bytes = 0, num_params = 0;
  std::vector<LoraSpec> loras;
  for (const auto& l : cfg.list("lora")) loras.push_back(parse_lora_spec(l));
  auto merge = [&](NamedTensors& bfl) {
    for (const auto& spec : loras) merge_lora(bfl, read_lora_file(spec.path), spec.strength);
  };
  if (is_checkpoint_or_run(cfg.s("in"))) {
    CheckpointTransformer ct = checkpoint_transformer(cfg.s("in"), cfg.s("weights"), dtype);
    merge(ct.bfl);
    export_flux_weights(ct.bfl, ct.params, cfg.s("out"), layout, max_shard);
    for (const auto& [n, t] : ct.bfl) {
      bytes += static_cast<int64_t>(t.nbytes());
      num_params += t.numel();
    }
    source = ct.description;
    preset = ct.preset;
    params = ct.params;
  } else {
    if (cfg.is_set("weights"))
      user_error("--weights: only for a fluxtrain checkpoint, and '{}' is not one", cfg.s("in"));
    const FluxWeights w = inspect_flux_weights(cfg.s("in"));
    source = fmt::format("{} ({})", cfg.s("in"), weight_layout_name(w.layout));
    if (loras.empty()) {
      bytes = convert_flux_weights(w, cfg.s("out"), layout, dtype, max_shard);
    } else {  // the whole model in memory once, the adapters merged into it
      NamedTensors bfl = read_flux_tensors_bfl(w, dtype ? *dtype : w.stored_dtype);
      merge(bfl);
      export_flux_weights(bfl, w.params, cfg.s("out"), layout, max_shard);
      for (const auto& [n, t] : bfl) bytes += static_cast<int64_t>(t.nbytes());
    }
    preset = w.preset;
    params = w.params;
    num_params = w.num_params;
  }
  const FluxWeightTable table(params);
  size_t tensors = 0;
  for (const auto& e : table.entries())
    tensors += layout == WeightLayout::kBfl ? 1 : e.diffusers.size();
  std::printf("%s -> %s (%s): %s, %s; %s parameters, %zu tensors, %s bytes (%s)\n", source.c_str(),
              cfg.s("out").c_str(), weight_layout_name(layout).c_str(), preset.c_str(),
              table.describe().c_str(), format_thousands(num_params).c_str(), tensors,
              format_thousands(bytes).c_str(),
              dtype ? safetensors_dtype_name(*dtype).c_str() : "dtype as stored");
  return 0;
}

}  // namespace fluxtrain
