// `fluxtrain sample`: images from a checkpoint and prompts, written as PNGs whose text chunks
// record the prompt and every setting.
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cli/commands.h"
#include "core/config.h"
#include "core/device.h"
#include "core/errors.h"
#include "core/log.h"
#include "io/checkpoint.h"
#include "io/image.h"
#include "model/weights.h"
#include "sample/sampler.h"
#include "train/trainer.h"

namespace fluxtrain {
namespace fs = std::filesystem;

static ConfigSchema sample_schema() {
  ConfigSchema s;
  s.path("input", "checkpoint", "checkpoint directory, or a run directory (its best, else latest)",
         true)
      .string("input", "prompt", "", "the prompt (repeatable through prompts_file)")
      .path("input", "prompts_file", "text file with one prompt per line", true)
      .string("output", "out", "sample.png",
              "output PNG; several images become <stem>-<k>.png, or files in it if a directory")
      .integer("sampling", "height", 0, "image height in pixels (0 = the checkpoint's resolution)",
               0)
      .integer("sampling", "width", 0, "image width in pixels (0 = the checkpoint's resolution)", 0)
      .integer("sampling", "steps", 0, "Euler steps (0 = the model's default)", 0)
      .real("sampling", "guidance", -1.0,
            "guidance value for guidance-distilled models (-1 = default)")
      .real("sampling", "cfg_scale", 1.0,
            "classifier-free guidance against the empty prompt (1 = off; for models trained with "
            "caption dropout)",
            0.0)
      .choice("sampling", "shift", "auto", {"auto", "on", "off"},
              "resolution-dependent schedule shift")
      .integer("sampling", "seed", 0, "noise seed (image k of a prompt uses seed + k)", 0)
      .integer("sampling", "batch", 1, "images per prompt", 1)
      .boolean("sampling", "use_ema", true, "use the checkpoint's EMA weights when it has them")
      .string("sampling", "device", "auto", "auto | cpu | cuda | cuda:N")
      .integer("sampling", "threads", 0, "CPU threads for tensor math (0 = all cores)", 0)
      .choice("sampling", "precision", "fp32", {"fp32", "bf16"}, "compute precision");
  return s;
}

int cmd_sample(const Args& args) {
  Config cfg(sample_schema());
  if (!parse_args(cfg, args)) {
    std::printf(
        "usage: fluxtrain sample --checkpoint DIR --prompt \"...\" [--out file.png] [--key value "
        "...]\n%s",
        cfg.schema().help().c_str());
    return 0;
  }
  if (cfg.s("checkpoint").empty())
    user_error("--checkpoint: required (a checkpoint or run directory)");
  std::vector<std::string> prompts;
  if (!cfg.s("prompt").empty()) prompts.push_back(cfg.s("prompt"));
  if (!cfg.s("prompts_file").empty()) {
    std::ifstream in(cfg.s("prompts_file"));
    std::string line;
    while (std::getline(in, line))
      if (!line.empty() && line.find_first_not_of(" \t\r") != std::string::npos)
        prompts.push_back(line);
    if (prompts.empty()) user_error("prompts_file '{}': no prompts in it", cfg.s("prompts_file"));
  }
  if (prompts.empty()) user_error("--prompt or --prompts_file: give at least one prompt");

  const std::string ckpt_dir = find_checkpoint(cfg.s("checkpoint"), true);
  auto ckpt = load_checkpoint_dir(ckpt_dir);
  const std::string model = ckpt.state.value("model", "");
  if (model.empty()) user_error("checkpoint '{}': manifest state names no model", ckpt_dir);
  const torch::Device device = parse_device(cfg.s("device"));
  configure_threads(cfg.i("threads"));
  Pipeline pipe = Pipeline::create(model, device, 0, false);
  load_module_tensors(*pipe.transformer, ckpt.file("model.safetensors"));
  const bool ema = cfg.b("use_ema") && ckpt.has_file("ema.safetensors");
  if (ema) load_module_tensors(*pipe.transformer, ckpt.file("ema.safetensors"), /*strict=*/false);

  SampleOptions o = default_sample_options(pipe.preset);
  const int64_t res = ckpt.state.value("resolution", pipe.preset.default_resolution);
  o.height = cfg.i("height") > 0 ? cfg.i("height") : res;
  o.width = cfg.i("width") > 0 ? cfg.i("width") : res;
  if (cfg.i("steps") > 0) o.steps = cfg.i("steps");
  if (cfg.f("guidance") >= 0) o.guidance = cfg.f("guidance");
  o.cfg_scale = cfg.f("cfg_scale");
  if (cfg.s("shift") != "auto") o.shift = cfg.s("shift") == "on";
  o.precision = parse_precision(cfg.s("precision"));
  pipe.check_resolution(o.height, o.width);

  // Image k of each prompt: noise seed (seed + k), slot = prompt index.
  const int64_t per_prompt = cfg.i("batch");
  std::vector<std::pair<std::string, torch::Tensor>> outputs;  // (prompt, image)
  std::vector<uint64_t> seeds;
  for (int64_t k = 0; k < per_prompt; ++k) {
    SampleOptions ok = o;
    ok.seed = static_cast<uint64_t>(cfg.i("seed") + k);
    auto images = generate_images(pipe, prompts, ok);
    for (size_t i = 0; i < prompts.size(); ++i) {
      outputs.emplace_back(prompts[i], images[static_cast<int64_t>(i)]);
      seeds.push_back(ok.seed);
    }
  }
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
    std::map<std::string, std::string> text = {{"prompt", outputs[n].first},
                                               {"model", model},
                                               {"checkpoint", ckpt_dir},
                                               {"weights", ema ? "ema" : "model"},
                                               {"steps", std::to_string(o.steps)},
                                               {"guidance", fmt::format("{}", o.guidance)},
                                               {"shift", o.shift ? "on" : "off"},
                                               {"cfg_scale", fmt::format("{}", o.cfg_scale)},
                                               {"seed", std::to_string(seeds[n])},
                                               {"size", fmt::format("{}x{}", o.width, o.height)},
                                               {"Software", "fluxtrain " FLUXTRAIN_COMMIT}};
    write_png(path.string(), to_uint8_hwc(outputs[n].second), text);
    std::printf("%s\t%s\n", path.c_str(), outputs[n].first.c_str());
  }
  return 0;
}

}  // namespace fluxtrain
