// `fluxtrain info`: components of a model preset, a checkpoint's model or a FLUX.1 model on disk
// with parameter counts, dtypes and devices, and the memory full training needs. Nothing is
// allocated: presets are counted by shape, files are read from their headers.
#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <set>

#include "cli/commands.h"
#include "core/config.h"
#include "core/device.h"
#include "core/errors.h"
#include "core/log.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model/clip_text.h"
#include "model/controlnet.h"
#include "model/flux.h"
#include "model/flux_weights.h"
#include "model/presets.h"
#include "model/t5.h"
#include "model/vae.h"
#include "sample/model_files.h"
#include "train/memory_plan.h"
#include "train/resume.h"
#include "train/train_config.h"
#include "train/trained_model.h"

namespace fluxtrain {

// A FLUX.1 model on disk: where each component is and what its headers and configs say. Missing
// text encoders or VAE are reported, not fatal (a transformer file alone is a valid input).
static void print_model_files(const std::string& path, const FluxWeights& w) {
  std::printf("transformer      %s (%s layout, %s, %s stored)\n", w.path.c_str(),
              weight_layout_name(w.layout).c_str(), w.preset.c_str(),
              safetensors_dtype_name(w.stored_dtype).c_str());
  ModelFiles files;
  try {
    files = resolve_model_files(path);
  } catch (const UserError& e) {
    std::printf("other components: %s\n", e.what());
    return;
  }
  const VaeConfig vae = read_vae_config(files.vae);
  std::printf("vae              %s (%lld latent channels, x%lld, scale %g, shift %g)\n",
              files.vae.c_str(), (long long)vae.z_channels, (long long)vae.factor(),
              vae.scale_factor, vae.shift_factor);
  const ClipTextConfig clip = read_clip_text_config(files.text_encoder);
  std::printf("text_encoder     %s (CLIP: hidden %lld, %lld layers)\n", files.text_encoder.c_str(),
              (long long)clip.hidden_size, (long long)clip.num_hidden_layers);
  const T5Config t5 = read_t5_config(files.text_encoder_2);
  std::printf("text_encoder_2   %s (T5: d_model %lld, %lld layers)\n", files.text_encoder_2.c_str(),
              (long long)t5.d_model, (long long)t5.num_layers);
  std::printf("tokenizer        %s\ntokenizer_2      %s\n", files.tokenizer.c_str(),
              files.tokenizer_2.c_str());
}

int cmd_info(const Args& args) {
  ConfigSchema schema;
  schema
      .string("model", "model", "tiny",
              "model preset (" + fmt::format("{}", fmt::join(model_preset_names(), ", ")) +
                  "), or a FLUX.1 model directory or .safetensors file")
      .path("model", "checkpoint", "show the model of this checkpoint instead (its stored tensors)",
            true)
      .choice("model", "dtype", "auto", {"auto", "fp32", "bf16"},
              "weight dtype shown and used for memory (auto: bf16 for flux-*, fp32 for tiny)");
  // The memory plan's keys: train's own declarations (names, defaults, ranges and help), and four
  // of the plan's: the device it is for, the resolution, batch_size and precision defaults.
  const ConfigSchema train = train_schema();
  for (const char* name :
       {"method", "lora_rank", "lora_targets", "use_dora", "controlnet_double_blocks",
        "controlnet_single_blocks", "base_weights", "optimizer_state", "optimizer_block_size",
        "gradient_checkpointing", "gradient_checkpointing_every", "optimizer_in_backward",
        "blocks_to_swap", "ema_decay", "ema_on_cpu"}) {
    ConfigKey key = *train.find(name);
    key.group = "plan";
    schema.add(std::move(key));
  }
  schema
      .choice("plan", "device", "cuda", {"cuda", "cpu"},
              "the device the plan is for (cpu: libtorch's math attention keeps its "
              "probabilities)")
      .integer("plan", "resolution", 0, "training image side in pixels (0: the preset's)", 0)
      .integer("plan", "batch_size", 1, "images per step", 1)
      .choice("plan", "precision", "auto", {"auto", "fp32", "bf16"},
              "compute dtype (auto: bf16 on cuda, fp32 on the cpu)");
  Config cfg(schema);
  if (!parse_args(cfg, args)) {
    std::printf("usage: fluxtrain info [--model NAME|PATH | --checkpoint DIR]\n%s",
                schema.help().c_str());
    return 0;
  }
  std::string model = cfg.s("model");
  std::string where = "not allocated (counted by shape)";
  std::map<std::string, std::string> stored_dtype;  // from a checkpoint
  std::vector<std::string> train_blocks;            // a checkpoint's selection (empty: all)
  bool lora = false;              // a LoRA or ControlNet checkpoint: the base is frozen
  std::string checkpoint_method;  // a checkpoint's method (the plan's default)
  std::pair<int64_t, int64_t> checkpoint_blocks{0, 0};  // a ControlNet checkpoint's depths
  const auto names = model_preset_names();
  const bool is_preset = std::find(names.begin(), names.end(), model) != names.end();
  std::optional<FluxWeights> weights;  // a model on disk
  if (!is_preset && cfg.s("checkpoint").empty()) {
    if (!looks_like_model_path(model))
      user_error("--model '{}': expected a preset ({}) or a model directory or .safetensors file",
                 model, fmt::format("{}", fmt::join(names, ", ")));
    weights = inspect_flux_weights(resolve_model_files(model, {}, false, false).transformer);
    print_model_files(model, *weights);
    for (const auto& p : flux_parameter_shapes(weights->params))
      stored_dtype[p.name] = safetensors_dtype_name(weights->stored_dtype);
    where = "not loaded (read from headers)";
  }
  if (!cfg.s("checkpoint").empty()) {
    auto dir = find_checkpoint(cfg.s("checkpoint"), true);
    auto ck = load_checkpoint_dir(dir, false);
    model = ck.state.value("model", model);
    const auto presets = model_preset_names();
    if (std::find(presets.begin(), presets.end(), model) == presets.end()) {
      // A fine-tune of a real model: the base model's shapes (the checkpoint may hold only the
      // trained tensors).
      weights = inspect_flux_weights(resolve_model_files(model, {}, false, false).transformer);
      for (const auto& p : flux_parameter_shapes(weights->params))
        stored_dtype[p.name] = safetensors_dtype_name(weights->stored_dtype);
    }
    const auto& f = ck.file("model.safetensors");
    where = "cpu (checkpoint " + dir + ")";
    checkpoint_method = ck.state.value("method", std::string("full"));
    if (checkpoint_method == "lora" || checkpoint_method == "controlnet") {
      lora = true;  // (the base is frozen either way)
      int64_t trained = 0;
      for (const auto& n : f.names()) trained += f.info(n).numel();
      if (checkpoint_method == "controlnet") {  // its depths, from its diffusers config.json
        const FluxParams net = inspect_controlnet(dir).params;
        checkpoint_blocks = {net.depth, net.depth_single_blocks};
      }
      std::printf(
          "checkpoint %s: step %lld, %s: %zu tensors, %s parameters train; the base "
          "below is frozen\n",
          dir.c_str(), static_cast<long long>(ck.state.value("step", int64_t{0})),
          checkpoint_method == "lora" ? "LoRA" : "ControlNet", f.size(),
          format_thousands(trained).c_str());
    } else {
      for (const auto& n : f.names()) stored_dtype[n] = f.info(n).dtype;
      if (ck.state.contains("train_blocks"))
        train_blocks = ck.state["train_blocks"].get<std::vector<std::string>>();
      std::printf("checkpoint %s: step %lld, trains %s\n", dir.c_str(),
                  static_cast<long long>(ck.state.value("step", int64_t{0})),
                  train_blocks.empty() ? "every parameter"
                                       : fmt::format("{}", fmt::join(train_blocks, ", ")).c_str());
    }
  }
  ModelPreset preset = weights ? model_preset("flux-dev") : model_preset(model);
  if (weights) preset.flux = weights->params;
  std::string dtype = cfg.s("dtype") != "auto"                 ? cfg.s("dtype")
                      : weights || model.rfind("flux", 0) == 0 ? "bf16"
                                                               : "fp32";
  const std::string dtype_label = safetensors_dtype_name(parse_precision(dtype));

  struct Row {
    int64_t params = 0, trainable = 0, tensors = 0;
    std::string dtype;
  };
  std::vector<std::string> all_names;
  for (const auto& p : flux_parameter_shapes(preset.flux)) all_names.push_back(p.name);
  const auto selected =
      lora ? std::vector<std::string>{} : select_parameters(all_names, train_blocks);
  const std::set<std::string> trains(selected.begin(), selected.end());
  std::vector<std::string> order;
  std::map<std::string, Row> rows;
  int64_t total = 0, total_trainable = 0;
  for (const auto& p : flux_parameter_shapes(preset.flux)) {
    std::string comp = p.name.substr(0, p.name.find('.'));
    if (!rows.count(comp)) order.push_back(comp);
    auto& r = rows[comp];
    r.params += p.numel();
    if (trains.count(p.name)) r.trainable += p.numel(), total_trainable += p.numel();
    r.tensors += 1;
    std::string dt = stored_dtype.count(p.name) ? stored_dtype[p.name] : dtype_label;
    r.dtype = r.dtype.empty() || r.dtype == dt ? dt : "mixed";
    total += p.numel();
  }
  const auto& f = preset.flux;
  std::printf(
      "model %s: hidden %lld, heads %lld, %lld double + %lld single blocks, guidance input %s\n",
      model.c_str(), (long long)f.hidden_size, (long long)f.num_heads, (long long)f.depth,
      (long long)f.depth_single_blocks, f.guidance_embed ? "yes" : "no");
  std::printf("%-16s %8s %18s %18s  %-6s %s\n", "component", "blocks", "parameters", "trainable",
              "dtype", "device");
  for (const auto& c : order) {
    int64_t blocks = c == "double_blocks"   ? f.depth
                     : c == "single_blocks" ? f.depth_single_blocks
                                            : 1;
    const auto& r = rows[c];
    std::printf("%-16s %8lld %18s %18s  %-6s %s\n", c.c_str(), (long long)blocks,
                format_thousands(r.params).c_str(), format_thousands(r.trainable).c_str(),
                r.dtype.c_str(), where.c_str());
  }
  std::printf("%-16s %8s %18s %18s\n", "total", "", format_thousands(total).c_str(),
              format_thousands(total_trainable).c_str());
  // The memory plan for training this model with the plan keys.
  TrainOptions o;
  o.method =
      cfg.is_set("method") || checkpoint_method.empty() ? cfg.s("method") : checkpoint_method;
  o.device =
      cfg.s("device") == "cuda" ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  o.weights = parse_precision(dtype);
  o.precision = cfg.s("precision") != "auto" ? parse_precision(cfg.s("precision"))
                : o.device.is_cuda()         ? torch::kBFloat16
                                             : torch::kFloat;
  o.resolution = cfg.i("resolution") > 0 ? cfg.i("resolution") : preset.default_resolution;
  o.batch_size = cfg.i("batch_size");
  o.train_blocks = train_blocks;
  o.lora.adapter.rank = cfg.i("lora_rank");
  o.lora.adapter.dora = cfg.b("use_dora");
  if (!cfg.list("lora_targets").empty()) o.lora.targets = cfg.list("lora_targets");
  const bool from_checkpoint = checkpoint_method == "controlnet";
  o.controlnet.double_blocks = from_checkpoint && !cfg.is_set("controlnet_double_blocks")
                                   ? checkpoint_blocks.first
                                   : cfg.i("controlnet_double_blocks");
  o.controlnet.single_blocks = from_checkpoint && !cfg.is_set("controlnet_single_blocks")
                                   ? checkpoint_blocks.second
                                   : cfg.i("controlnet_single_blocks");
  o.base_weights = parse_base_weights(cfg.s("base_weights"));
  o.adamw.state_8bit = cfg.s("optimizer_state") == "int8";
  o.adamw.state_dtype = cfg.s("optimizer_state") == "bf16" ? torch::kBFloat16 : torch::kFloat;
  o.adamw.block_size = cfg.i("optimizer_block_size");
  o.gradient_checkpointing = cfg.b("gradient_checkpointing");
  o.gradient_checkpointing_every = cfg.i("gradient_checkpointing_every");
  o.optimizer_in_backward = cfg.b("optimizer_in_backward");
  o.blocks_to_swap = cfg.i("blocks_to_swap");
  o.ema_decay = cfg.f("ema_decay");
  o.ema_on_cpu = cfg.b("ema_on_cpu");
  const int64_t side = o.resolution / (2 * preset.ae_factor);  // latent pixels, patches of 2
  std::printf("%s", format_memory_plan(
                        plan_training_memory(o, preset.flux, side * side, preset.max_text_tokens))
                        .c_str());
  return 0;
}

}  // namespace fluxtrain
