// TrainOptions from a resolved configuration (see train_options.h).
#include "train/train_options.h"

#include <algorithm>
#include <filesystem>

#include "core/device.h"
#include "core/errors.h"
#include "model/presets.h"

namespace fluxtrain {
namespace fs = std::filesystem;

void normalise_model_path(Config& c) {
  const std::string& m = c.s("model");
  if (!m.empty() && !is_model_preset(m) && looks_like_model_path(m))
    c.set("model", fs::absolute(m).lexically_normal().string(), "--model");
}

namespace {

const std::vector<std::string> kLoraKeys = {"lora_rank",   "lora_alpha",     "lora_dropout",
                                            "use_dora",    "lora_targets",   "lora_init",
                                            "lora_format", "lora_save_dtype"};

void read_lora_options(const Config& c, TrainOptions& o) {
  auto changed = [&](const std::string& k) { return c.differs_from_default(k); };
  if (o.method != "lora") {
    for (const auto& k : kLoraKeys)
      if (changed(k)) user_error("--{}: only with method lora (method is {})", k, o.method);
    return;
  }
  if (!c.list("train_blocks").empty())
    user_error(
        "--train_blocks: method lora trains adapters; choose their layers with "
        "lora_targets");
  if (c.b("save_frozen")) user_error("--save_frozen: method lora saves the adapters only");
  LoraOptions& l = o.lora;
  l.adapter.rank = c.i("lora_rank");
  l.adapter.alpha = c.f("lora_alpha") > 0 ? c.f("lora_alpha") : static_cast<double>(l.adapter.rank);
  l.adapter.dropout = c.f("lora_dropout");
  l.adapter.dora = c.b("use_dora");
  if (!c.list("lora_targets").empty()) l.targets = c.list("lora_targets");
  l.init_from = c.s("lora_init");
  if (!l.init_from.empty()) {
    l.init_from = fs::absolute(l.init_from).lexically_normal().string();
    for (const char* k : {"lora_rank", "lora_alpha", "use_dora", "lora_targets"})
      if (changed(k))
        user_error("--{}: lora_init gives the adapters' layers, ranks and alphas ({})", k,
                   l.init_from);
  }
  l.formats = parse_lora_formats(c.s("lora_format"));
  if (l.adapter.dora) {
    const bool all = c.s("lora_format") == "all";
    for (auto f : l.formats)
      if (f != LoraLayout::kDiffusers && !all)
        user_error(
            "--lora_format {}: DoRA adapters have no {} form (only diffusers/PEFT stores DoRA's "
            "per-output magnitude); use lora_format diffusers",
            c.s("lora_format"), lora_layout_name(f));
    l.formats = {LoraLayout::kDiffusers};
  }
  l.save_dtype = parse_precision(c.s("lora_save_dtype"));
}

void read_controlnet_options(const Config& c, TrainOptions& o) {
  auto changed = [&](const std::string& k) { return c.differs_from_default(k); };
  const bool controlnet = o.method == "controlnet";
  for (const char* k : {"controlnet_double_blocks", "controlnet_single_blocks", "controlnet_init",
                        "controlnet_save_dtype"})
    if (!controlnet && changed(k))
      user_error("--{}: only with method controlnet (method is {})", k, o.method);
  if (!controlnet) {
    if (!o.data.control.source.empty())
      user_error("--control_images: only with method controlnet (method is {})", o.method);
    return;
  }
  if (o.data.control.source.empty())
    user_error(
        "method controlnet: give control_images (canny, column, or a folder of control images)");
  if (!c.list("train_blocks").empty() || c.b("save_frozen"))
    user_error("--train_blocks / --save_frozen: method controlnet trains the ControlNet only");
  ControlNetOptions& n = o.controlnet;
  n.double_blocks = c.i("controlnet_double_blocks");
  n.single_blocks = c.i("controlnet_single_blocks");
  n.init_from = c.s("controlnet_init");
  if (!n.init_from.empty()) {
    n.init_from = fs::absolute(n.init_from).lexically_normal().string();
    for (const char* k : {"controlnet_double_blocks", "controlnet_single_blocks"})
      if (changed(k))
        user_error("--{}: controlnet_init gives the ControlNet's blocks ({})", k, n.init_from);
  }
  n.save_dtype = parse_precision(c.s("controlnet_save_dtype"));
}

}  // namespace

TrainOptions TrainOptions::from_config(const Config& c) {
  TrainOptions o;
  o.name = c.s("name");
  o.output_dir = c.s("output_dir");
  o.seed = static_cast<uint64_t>(c.i("seed"));
  o.device = parse_device(c.s("device"));
  o.threads = c.i("threads");
  o.log_every = c.i("log_every");
  o.profile_steps = c.i("profile_steps");
  o.resume = c.s("resume");
  o.override_changes = c.b("override");

  o.model = c.s("model");
  if (o.model.empty()) user_error("--model: expected a preset name or a model path");
  o.model_is_path = !is_model_preset(o.model);
  if (o.model_is_path && !looks_like_model_path(o.model))
    user_error(
        "model '{}': expected a preset ({}) or a model path, and there is no such file or "
        "directory",
        o.model, fmt::join(model_preset_names(), ", "));
  if (o.model_is_path) o.model = fs::absolute(o.model).lexically_normal().string();
  o.overrides = model_file_overrides(c);
  for (const std::string key :
       {"transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"})
    if (!o.model_is_path && !c.s(key).empty())
      user_error("--{}: only with a model path, and model '{}' is a preset", key, o.model);
  o.method = c.s("method");
  read_lora_options(c, o);
  o.train_blocks = c.list("train_blocks");
  o.save_frozen = c.b("save_frozen");
  o.precision = parse_precision(c.s("precision"));
  o.weights = parse_precision(c.s("weights"));
  if (o.weights != torch::kFloat && o.precision != o.weights)
    user_error("weights: bf16 weights need --precision bf16");
  o.base_weights = parse_base_weights(c.s("base_weights"));
  if (o.base_weights != BaseWeights::kDense && o.method == "full")
    user_error(
        "--base_weights {}: method full trains the base; 8-bit storage is for a frozen base "
        "(method lora or controlnet)",
        c.s("base_weights"));
  o.blocks_to_swap = c.i("blocks_to_swap");
  o.gradient_checkpointing = c.b("gradient_checkpointing");
  o.gradient_checkpointing_every = c.i("gradient_checkpointing_every");
  o.zero_init = c.b("zero_init");
  o.stand_in_encoders = c.b("stand_in_encoders");
  if (o.model_is_path && o.stand_in_encoders)
    user_error("--stand_in_encoders: a model path brings its own encoders");

  o.data = DataOptions::from_config(c);
  read_controlnet_options(c, o);
  o.sample_latents = c.s("latent_sampling") == "sample";
  o.resolution = c.i("resolution");
  o.caption_dropout = c.f("caption_dropout");

  o.steps = c.i("steps");
  o.batch_size = c.i("batch_size");
  o.grad_accum = c.i("grad_accum");
  o.lr = c.f("lr");
  const bool state_8bit = c.s("optimizer_state") == "int8";
  o.adamw = {c.f("beta1"),
             c.f("beta2"),
             c.f("eps"),
             c.f("weight_decay"),
             state_8bit ? torch::kFloat : parse_precision(c.s("optimizer_state")),
             state_8bit,
             c.i("optimizer_block_size")};
  o.schedule = {c.s("lr_schedule"), o.lr, c.i("warmup_steps"), o.steps, c.f("min_lr_ratio")};
  o.ema_decay = c.f("ema_decay");
  o.ema_on_cpu = c.b("ema_on_cpu");
  o.max_grad_norm = c.f("max_grad_norm");
  o.optimizer_in_backward = c.b("optimizer_in_backward");
  if (o.optimizer_in_backward && o.grad_accum != 1)
    user_error(
        "--optimizer_in_backward: each backward is one step; grad_accum is {} (set 1, or "
        "turn optimizer_in_backward off)",
        o.grad_accum);
  o.timesteps = {parse_timestep_sampling(c.s("timestep_sampling")), c.f("logit_mean"),
                 c.f("logit_std"), c.f("shift")};
  o.guidance = c.f("guidance");

  o.val_every = c.i("val_every");
  o.val_every_samples = c.i("val_every_samples");
  o.val_every_epochs = c.i("val_every_epochs");
  if ((o.val_every > 0) + (o.val_every_samples > 0) + (o.val_every_epochs > 0) > 1)
    user_error(
        "val_every {}, val_every_samples {} and val_every_epochs {}: give one validation interval "
        "(steps, samples for MLPerf, or epochs)",
        o.val_every, o.val_every_samples, o.val_every_epochs);
  o.val_samples = c.i("val_samples");
  o.target_val_loss = c.f("target_val_loss");
  o.validation_prompts = c.list("validation_prompts");
  o.sample_every = c.i("sample_every");
  if (o.sample_every > 0 && o.validation_prompts.empty())
    user_error("sample_every {}: there are no validation_prompts to sample", o.sample_every);

  o.save_checkpoints = c.b("save_checkpoints");
  o.save_best = c.b("save_best");
  o.ckpt_every = c.i("ckpt_every");
  o.keep_last = c.i("keep_last");
  if (c.i("checkpoints_total_limit") >= 0) o.keep_last = c.i("checkpoints_total_limit");
  o.price_per_hour = c.f("price_per_hour");

  o.final_eval = c.s("final_eval");
  o.eval_images_per_caption = c.i("eval_images_per_caption");
  o.sample_steps = c.i("sample_steps");
  o.sample_seed = static_cast<uint64_t>(c.i("sample_seed"));
  o.cfg_scale = c.f("cfg_scale");
  return o;
}

}  // namespace fluxtrain
