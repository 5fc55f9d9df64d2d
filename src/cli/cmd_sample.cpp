// `fluxtrain sample`: images from prompts, with a fluxtrain checkpoint (--checkpoint) or a real
// FLUX.1 model (--model: a diffusers repository, BFL files or a Hugging Face cache entry),
// written as PNGs whose text chunks record the prompt and every setting.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cli/commands.h"
#include "core/config.h"
#include "core/device.h"
#include "core/dtype_scope.h"
#include "core/errors.h"
#include "core/log.h"
#include "io/checkpoint.h"
#include "io/image.h"
#include "model/controlnet.h"
#include "model/weights.h"
#include "sample/flux_model.h"
#include "sample/model_files.h"
#include "sample/sampler.h"
#include "train/resume.h"
#include "train/train_config.h"
#include "train/train_spec.h"

namespace fluxtrain {
namespace fs = std::filesystem;

static ConfigSchema sample_schema() {
  ConfigSchema s;
  s.path("input", "checkpoint", "checkpoint directory, or a run directory (its best, else latest)",
         true)
      .string("input", "model", "",
              "a FLUX.1 model instead of a checkpoint: diffusers repository, BFL files' folder, "
              "Hugging Face cache entry, or a transformer .safetensors file");
  add_model_file_keys(s, "input", "with --model");
  s.list("input", "lora",
         "LoRA files merged into the transformer, FILE or FILE:strength (diffusers, kohya or "
         "ComfyUI layout, from fluxtrain or other trainers); give --lora again to stack several")
      .path("input", "controlnet",
            "a FLUX ControlNet: a diffusers controlnet/ directory (config.json + "
            "diffusion_pytorch_model.safetensors) or a controlnet run's checkpoint",
            true)
      .path("input", "control_image", "the ControlNet's control image (PNG, JPEG, WebP, BMP)", true)
      .boolean("input", "control_canny", false,
               "use the Canny edges of control_image instead of it (canny_*: a controlnet run's "
               "own settings by default, else 100 / 200 / 1.4)")
      .real("input", "controlnet_scale", 1.0,
            "ControlNet conditioning scale (diffusers' controlnet_conditioning_scale)", 0.0)
      .string("input", "prompt", "",
              "the prompt (more through prompts_file); --prompt \"\" samples unconditionally")
      .path("input", "prompts_file", "text file with one prompt per line", true)
      .string("output", "out", "sample.png",
              "output PNG; several images become <stem>-<k>.png, or files in it if a directory")
      .integer(
          "sampling", "height", 0,
          "image height in pixels (0 = what the run's evaluation used, or the model's default)", 0)
      .integer("sampling", "width", 0,
               "image width in pixels (0 = what the run's evaluation used, or the model's default)",
               0)
      .integer("sampling", "steps", 0,
               "Euler steps (0 = what the run's evaluation used, or the model's default)", 0)
      .real("sampling", "guidance", -1.0,
            "guidance value for guidance-distilled models (-1 = default)")
      .real("sampling", "cfg_scale", 1.0,
            "classifier-free guidance against the empty prompt (1 = off; for models trained with "
            "caption dropout; default: what the run's evaluation used)",
            0.0)
      .choice("sampling", "shift", "auto", {"auto", "on", "off"},
              "resolution-dependent schedule shift")
      .integer("sampling", "seed", 0, "noise seed (image k of a prompt uses seed + k)", 0)
      .integer("sampling", "batch", 1, "images per prompt", 1)
      .boolean("sampling", "use_ema", true, "use the checkpoint's EMA weights when it has them")
      .string("sampling", "device", "auto", "auto | cpu | cuda | cuda:N")
      .integer("sampling", "threads", 0, "CPU threads for tensor math (0 = all cores)", 0)
      .choice("sampling", "precision", "fp32", {"fp32", "bf16"},
              "compute precision (--checkpoint; --model computes in --dtype)")
      .choice("sampling", "dtype", "auto", {"auto", "fp32", "bf16"},
              "weights of every component (auto = bf16 on CUDA, fp32 on CPU)")
      .boolean("sampling", "offload", false,
               "--model: keep idle components on the CPU and move each to the device for its "
               "phase (default: load each for its phase and free it after)")
      .integer("sampling", "blocks_to_swap", 0,
               "--model: keep the linear weights of the transformer's last N / 2 double and "
               "2 x (N - N / 2) single blocks in host memory, streamed to the device block by "
               "block (0: off)",
               0)
      .integer("sampling", "max_batch", 4, "--model: images per transformer and VAE call", 1);
  // --control_canny's thresholds and blur: train's declarations.
  const ConfigSchema train = train_schema();
  for (const char* name : {"canny_low_threshold", "canny_high_threshold", "canny_sigma"}) {
    ConfigKey key = *train.find(name);
    key.group = "input";
    s.add(std::move(key));
  }
  return s;
}

namespace {

struct SampleOutput {
  std::string prompt;
  torch::Tensor image;  // [3, H, W] in [-1, 1]
  uint64_t seed;
};

std::vector<std::string> read_prompts(const Config& cfg) {
  std::vector<std::string> prompts;
  if (cfg.is_set("prompt")) prompts.push_back(cfg.s("prompt"));
  if (!cfg.s("prompts_file").empty()) {
    std::ifstream in(cfg.s("prompts_file"));
    std::string line;
    while (std::getline(in, line))
      if (!line.empty() && line.find_first_not_of(" \t\r") != std::string::npos)
        prompts.push_back(line);
    if (prompts.empty()) user_error("prompts_file '{}': no prompts in it", cfg.s("prompts_file"));
  }
  if (prompts.empty()) user_error("--prompt or --prompts_file: give at least one prompt");
  for (const auto& p : prompts)
    if (p.find_first_not_of(" \t\r") == std::string::npos) {
      log_info("an empty prompt: sampling unconditionally (the empty caption)");
      break;
    }
  return prompts;
}

// A progress line while the sampler runs (redrawn on a terminal; on a pipe at most every 10 s).
void show_progress(SampleOptions& o, int64_t images) {
  auto t0 =
      std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
  auto last = std::make_shared<double>(-1e9);
  o.on_step = [t0, last, images](int64_t step, int64_t total) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - *t0).count();
    const bool final = step == total;
    if (!final && s - *last < (stderr_is_tty() ? 0.2 : 10.0)) return;
    *last = s;
    progress_line(fmt::format("sampling {} image(s): step {}/{} | elapsed {} | ETA {}", images,
                              step, total, format_duration(s),
                              format_duration(s / static_cast<double>(step) *
                                              static_cast<double>(total - step))),
                  final);
  };
}

// Overrides the defaults in `o` with what the user gave.
void apply_sampling_flags(const Config& cfg, SampleOptions& o) {
  if (cfg.i("height") > 0) o.height = cfg.i("height");
  if (cfg.i("width") > 0) o.width = cfg.i("width");
  if (cfg.i("steps") > 0) o.steps = cfg.i("steps");
  if (cfg.f("guidance") >= 0) o.guidance = cfg.f("guidance");
  if (cfg.is_set("cfg_scale")) o.cfg_scale = cfg.f("cfg_scale");
  if (cfg.s("shift") != "auto") o.shift = cfg.s("shift") == "on";
}

using ControlEncoder =
    std::function<torch::Tensor(const torch::Tensor& hwc, const std::optional<CannyOptions>&)>;

// The ControlNet flags: `net` is the run's own ControlNet (a controlnet checkpoint) or null;
// --controlnet DIR loads one into `owned`. `encode` gives a control image's tokens for the
// output size; `canny` are the Canny settings the canny_* flags change (a run's own, or the
// defaults). Sets o.controlnet, o.control_tokens and o.controlnet_scale.
void apply_controlnet_flags(const Config& cfg, FluxControlNetImpl* net, FluxControlNet& owned,
                            const FluxParams& base, torch::Device device, torch::ScalarType dtype,
                            CannyOptions canny, const ControlEncoder& encode, SampleOptions& o) {
  if (!cfg.s("controlnet").empty()) {
    if (net)
      user_error("--controlnet: checkpoint '{}' is a ControlNet run and brings its own",
                 cfg.s("checkpoint"));
    const ControlNetFiles files = inspect_controlnet(cfg.s("controlnet"));
    check_controlnet_fits(files.params, base, "--controlnet '" + cfg.s("controlnet") + "'");
    {
      DefaultDtypeScope scope(dtype);
      owned = FluxControlNet(files.params, files.params.depth, files.params.depth_single_blocks);
    }
    load_controlnet(*owned, files);
    owned->to(device);
    owned->eval();
    net = owned.get();
  }
  const std::vector<std::string> control_keys = {"control_image",        "control_canny",
                                                 "controlnet_scale",     "canny_low_threshold",
                                                 "canny_high_threshold", "canny_sigma"};
  if (!net) {
    for (const auto& k : control_keys)
      if (cfg.differs_from_default(k))
        user_error("--{}: give --controlnet (or a controlnet run's --checkpoint)", k);
    return;
  }
  if (cfg.s("control_image").empty())
    user_error("a ControlNet needs --control_image FILE (its control image)");
  if (cfg.differs_from_default("canny_low_threshold"))
    canny.low_threshold = cfg.f("canny_low_threshold");
  if (cfg.differs_from_default("canny_high_threshold"))
    canny.high_threshold = cfg.f("canny_high_threshold");
  if (cfg.differs_from_default("canny_sigma")) canny.sigma = cfg.f("canny_sigma");
  o.controlnet = net;
  const bool edges = cfg.b("control_canny");
  o.control_tokens = encode(read_image(cfg.s("control_image")),
                            edges ? std::optional<CannyOptions>(canny) : std::nullopt);
  o.controlnet_scale = cfg.f("controlnet_scale");
  log_info("controlnet: {} double + {} single blocks, scale {}, control image {}{}",
           net->params.depth, net->params.depth_single_blocks, o.controlnet_scale,
           cfg.s("control_image"),
           edges ? fmt::format(" (its Canny edges, thresholds {:g} / {:g}, sigma {:g})",
                               canny.low_threshold, canny.high_threshold, canny.sigma)
                 : "");
}

torch::ScalarType weights_dtype(const Config& cfg, const torch::Device& device) {
  return cfg.s("dtype") == "auto" ? (device.is_cuda() ? torch::kBFloat16 : torch::kFloat)
                                  : parse_precision(cfg.s("dtype"));
}

// Writes outputs as PNGs (one file, numbered files, or files in a directory) with the prompt,
// seed and `settings` in text chunks; prints "path<TAB>prompt" per image.
void write_outputs(const Config& cfg, const std::vector<SampleOutput>& outputs,
                   const std::map<std::string, std::string>& settings) {
  if (cfg.s("out").empty()) user_error("--out: expected a PNG file or a directory");
  const fs::path out = cfg.s("out");
  const bool to_dir = fs::is_directory(out) || cfg.s("out").back() == '/';
  if (to_dir)
    fs::create_directories(out);
  else if (out.has_parent_path())
    fs::create_directories(out.parent_path());
  for (size_t n = 0; n < outputs.size(); ++n) {
    fs::path path = to_dir ? out / fmt::format("sample-{:03d}.png", n)
                    : outputs.size() == 1
                        ? out
                        : out.parent_path() / fmt::format("{}-{:03d}{}", out.stem().string(), n,
                                                          out.extension().string());
    std::map<std::string, std::string> text = settings;
    text["prompt"] = outputs[n].prompt;
    text["seed"] = std::to_string(outputs[n].seed);
    text["Software"] = "fluxtrain " FLUXTRAIN_COMMIT;
    write_png(path.string(), to_uint8_hwc(outputs[n].image), text);
    std::printf("%s\t%s\n", path.c_str(), outputs[n].prompt.c_str());
  }
}

std::map<std::string, std::string> settings_text(const SampleOptions& o) {
  return {{"steps", std::to_string(o.steps)},
          {"guidance", fmt::format("{}", o.guidance)},
          {"shift", o.shift ? "on" : "off"},
          {"cfg_scale", fmt::format("{}", o.cfg_scale)},
          {"size", fmt::format("{}x{}", o.width, o.height)}};
}

// A fluxtrain checkpoint: the pipeline its run's configuration names (a preset, or the real
// model it fine-tuned), with the checkpoint's (EMA) weights, sampled with the settings the run's
// evaluation used unless flags say otherwise.
int sample_checkpoint(const Config& cfg, const std::vector<std::string>& prompts) {
  const ResumePoint ckpt = open_checkpoint(cfg.s("checkpoint"), /*prefer_best=*/true);
  const std::string& dir = ckpt.checkpoint.dir;
  const torch::Device device = parse_device(cfg.s("device"));
  const torch::ScalarType dtype = weights_dtype(cfg, device);
  Config run(train_schema());
  run.load_yaml_string(ckpt.state.config_yaml, "checkpoint '" + dir + "' configuration");
  run.set("device", cfg.s("device"), "--device");
  run.set("weights", precision_name(dtype), "--dtype");
  run.set("precision", precision_name(dtype), "--dtype");
  run.set("gradient_checkpointing", "false", "sample");
  const TrainOptions ro = TrainOptions::from_config(run);
  Pipeline pipe = build_pipeline(ro);
  auto model = build_trained_model(ro, pipe.transformer);
  model->load_checkpoint(ckpt.checkpoint.file("model.safetensors"));
  const bool ema = cfg.b("use_ema") && ckpt.checkpoint.has_file("ema.safetensors");
  if (ema) model->load_averaged(ckpt.checkpoint.file("ema.safetensors"));
  if (!cfg.list("lora").empty() && ro.base_weights != BaseWeights::kDense)
    user_error(
        "--lora: checkpoint '{}' keeps its base in {} (base_weights), which LoRA files "
        "cannot be merged into; sample its base model with --model and --lora",
        dir, base_weights_name(ro.base_weights));
  for (const auto& l : cfg.list("lora")) merge_lora_file(*pipe.transformer, parse_lora_spec(l));

  SampleOptions o = default_sample_options(pipe.preset);
  o.height = o.width = ckpt.state.resolution > 0 ? ckpt.state.resolution : o.height;
  if (const auto& s = ckpt.state.sampling; s.steps > 0) {
    o.steps = s.steps;
    o.height = s.height;
    o.width = s.width;
    o.cfg_scale = s.cfg_scale;
    o.guidance = s.guidance;
    o.shift = s.shift;
  }
  apply_sampling_flags(cfg, o);
  o.precision = cfg.is_set("precision") ? parse_precision(cfg.s("precision")) : dtype;
  pipe.check_resolution(o.height, o.width);
  FluxControlNet owned_controlnet{nullptr};
  if (model->controlnet()) model->controlnet()->eval();
  apply_controlnet_flags(
      cfg, model->controlnet(), owned_controlnet, pipe.transformer->params, pipe.device, dtype,
      ro.data.control.canny,  // (what a controlnet run trained on)
      [&](const torch::Tensor& hwc, const std::optional<CannyOptions>& canny) {
        return control_image_tokens(*pipe.autoencoder, hwc, o.height, o.width, canny, pipe.device);
      },
      o);
  log_info("checkpoint {} (model {}, step {}{}): {} steps, cfg scale {}, {}x{}", dir,
           ckpt.state.model, ckpt.state.step, ema ? ", EMA weights" : "", o.steps, o.cfg_scale,
           o.width, o.height);

  // Image k of each prompt: noise seed (seed + k), slot = prompt index.
  std::vector<SampleOutput> outputs;
  for (int64_t k = 0; k < cfg.i("batch"); ++k) {
    SampleOptions ok = o;
    ok.seed = static_cast<uint64_t>(cfg.i("seed") + k);
    show_progress(ok, static_cast<int64_t>(prompts.size()));
    auto images = generate_images(pipe, prompts, ok);
    for (size_t i = 0; i < prompts.size(); ++i)
      outputs.push_back({prompts[i], images[static_cast<int64_t>(i)], ok.seed});
  }
  auto settings = settings_text(o);
  settings["model"] = ckpt.state.model;
  settings["checkpoint"] = dir;
  settings["weights"] = ema ? "ema" : "model";
  write_outputs(cfg, outputs, settings);
  return 0;
}

// A real FLUX.1 model: every prompt through the text encoders first (then they are freed), all
// images through the transformer, then the VAE; one component on the device at a time.
int sample_model(const Config& cfg, const std::vector<std::string>& prompts) {
  const ModelFileOverrides overrides = model_file_overrides(cfg);
  // --transformer FILE alone stands for the model (the other components beside it or by flag).
  const std::string model_path = cfg.s("model").empty() ? cfg.s("transformer") : cfg.s("model");
  ModelFiles files = resolve_model_files(model_path, overrides);
  FluxModelOptions mo;
  mo.device = parse_device(cfg.s("device"));
  mo.dtype = weights_dtype(cfg, mo.device);
  mo.offload = cfg.b("offload");
  mo.blocks_to_swap = cfg.i("blocks_to_swap");
  for (const auto& l : cfg.list("lora")) mo.loras.push_back(parse_lora_spec(l));
  FluxModel model(files, mo);
  SampleOptions o = model.default_options();
  apply_sampling_flags(cfg, o);
  model.check_resolution(o.height, o.width);
  FluxControlNet owned_controlnet{nullptr};
  apply_controlnet_flags(
      cfg, nullptr, owned_controlnet, model.transformer_weights().params, mo.device, mo.dtype,
      CannyOptions{},
      [&](const torch::Tensor& hwc, const std::optional<CannyOptions>& canny) {
        return model.control_tokens(hwc, o.height, o.width, canny);
      },
      o);
  log_info("model {} ({}, {} parameters, {} layout): {} steps, guidance {}, shift {}, {}x{}",
           cfg.s("model").empty() ? files.transformer : cfg.s("model"), model.preset().name,
           model.transformer_weights().num_params,
           model.transformer_weights().layout == WeightLayout::kBfl ? "BFL" : "diffusers", o.steps,
           o.guidance, o.shift ? "on" : "off", o.width, o.height);

  // Image k of prompt i is row k * P + i, from noise (seed + k, slot i).
  const int64_t P = static_cast<int64_t>(prompts.size()), K = cfg.i("batch");
  o.seed = static_cast<uint64_t>(cfg.i("seed"));
  show_progress(o, P * K);
  auto images = model.generate(prompts, o, cfg.i("max_batch"), K);

  std::vector<SampleOutput> outputs;
  for (int64_t k = 0; k < K; ++k)
    for (int64_t i = 0; i < P; ++i)
      outputs.push_back({prompts[static_cast<size_t>(i)], images[k * P + i],
                         static_cast<uint64_t>(cfg.i("seed") + k)});
  auto settings = settings_text(o);
  settings["model"] = cfg.s("model").empty() ? files.transformer : cfg.s("model");
  settings["transformer"] = files.transformer;
  settings["dtype"] = mo.dtype == torch::kBFloat16 ? "bf16" : "fp32";
  write_outputs(cfg, outputs, settings);
  return 0;
}

}  // namespace

int cmd_sample(const Args& args) {
  Config cfg(sample_schema());
  if (!parse_args(cfg, args)) {
    std::printf(
        "usage: fluxtrain sample (--checkpoint DIR | --model PATH) --prompt \"...\" "
        "[--lora FILE[:strength] ...] [--out file.png] [--key value ...]\n%s",
        cfg.schema().help().c_str());
    return 0;
  }
  const bool has_ckpt = !cfg.s("checkpoint").empty(), has_model = !cfg.s("model").empty();
  const bool has_override = !cfg.s("transformer").empty();
  if (has_ckpt == (has_model || has_override))
    user_error(
        "give --checkpoint (a checkpoint or run directory) or --model (a FLUX.1 model), one of "
        "them");
  const std::vector<std::string> prompts = read_prompts(cfg);
  configure_threads(cfg.i("threads"));
  return has_ckpt ? sample_checkpoint(cfg, prompts) : sample_model(cfg, prompts);
}

}  // namespace fluxtrain
