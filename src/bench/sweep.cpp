// Sweep files, bench keys and grid expansion (see sweep.h).
#include "bench/sweep.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "bench/data_point.h"
#include "core/errors.h"
#include "model/presets.h"
#include "sample/model_files.h"
#include "train/train_config.h"

namespace fluxtrain {
namespace fs = std::filesystem;

ConfigSchema bench_schema() {
  ConfigSchema s;
  s.choice("bench", "mode", "train", {"train", "sample", "data"},
           "train: each point is a fresh `fluxtrain train` process; sample: timed text-to-image "
           "generation in this process; data: the data path (decode, cached latents, prepare) "
           "timed in this process")
      .integer("bench", "warmup", 2,
               "steps (train), generations (sample) or batches (data) before measuring", 0)
      .integer("bench", "measured", 10,
               "steps (train), generations (sample) or batches (data) measured", 1)
      .real("bench", "price_per_hour", 0.0,
            "price of one device-hour, for cost per 1,000 images (0 = no cost)", 0.0)
      .real("bench", "peak_tflops", 0.0,
            "dense peak TFLOP/s of one device for MFU (0 = the datasheet table by device name)",
            0.0)
      .string("bench", "name", "bench", "outputs go to <output_dir>/<name>/<id>/")
      .string("bench", "output_dir", "runs", "root of run directories")
      .integer("bench", "point_timeout_s", 0,
               "stop a training point after this many seconds (0 = no limit)", 0)
      .real("bench", "memory_limit_gb", 0.0,
            "memory limit of each training point's process (heap, RLIMIT_DATA; 0 = none)", 0.0)
      .boolean("bench", "dry_run", false,
               "list the points (and their commands) without running them");
  return s;
}

ConfigSchema sample_bench_schema() {
  ConfigSchema s;
  s.string("model", "model", "tiny",
           fmt::format("model preset (random weights: {}), or a FLUX.1 model's directory, "
                       "Hugging Face cache entry or transformer .safetensors (real weights and "
                       "encoders)",
                       fmt::join(model_preset_names(), ", ")))
      .choice("model", "precision", "fp32", {"fp32", "bf16"}, "compute precision (autocast)")
      .choice("model", "weights", "fp32", {"fp32", "bf16"},
              "dtype of the transformer's weights (a model path: of every component)")
      .boolean("model", "stand_in_encoders", true,
               "flux-dev/schnell presets: weight-free text encoder and autoencoder stand-ins of "
               "the real shapes (ignored for a model path)")
      .integer("sampling", "resolution", 0, "image side in pixels (0 = the preset's default)", 0)
      .integer("sampling", "batch_size", 1, "images per generation", 1)
      .integer("sampling", "steps", 0, "Euler steps (0 = the preset's default)", 0)
      .real("sampling", "guidance", -1.0,
            "guidance input of guidance-distilled models (-1 = default)")
      .real("sampling", "cfg_scale", 1.0,
            "classifier-free guidance scale (1 = off; else 2 model calls a step)", 0.0)
      .choice("sampling", "shift", "auto", {"auto", "on", "off"},
              "resolution-dependent schedule shift")
      .integer("sampling", "seed", 0, "seed of weights and noise", 0)
      .string("run", "device", "auto", "auto | cpu | cuda | cuda:N")
      .integer("run", "threads", 0, "CPU threads for tensor math (0 = all cores)", 0);
  return s;
}

const std::vector<std::string>& sample_model_presets() {
  static const std::vector<std::string> p = model_preset_names();
  return p;
}

bool is_sample_model_path(const std::string& model) {
  return !is_model_preset(model) && looks_like_model_path(model);
}

// A sample-mode model: a preset, or a file or directory that exists (its files are resolved when
// the point runs).
static void check_sample_model(const std::string& model, const std::string& origin) {
  const auto& p = sample_model_presets();
  if (std::find(p.begin(), p.end(), model) != p.end() || (!model.empty() && fs::exists(model)))
    return;
  std::string presets;
  for (const auto& x : p) presets += (presets.empty() ? "" : ", ") + x;
  user_error("{}: model '{}': expected a preset ({}) or a model directory/file", origin, model,
             presets);
}

ConfigSchema run_schema(const std::string& mode) {
  if (mode == "train") return train_schema();
  if (mode == "data") return data_bench_schema();
  return sample_bench_schema();
}

std::vector<PendingKey> pending_keys(const std::string& mode) {
  // None today (blocks_to_swap, the last one, is a train key now); a feature that is announced
  // before it is built is listed here with the values that wait for it.
  std::vector<PendingKey> all;
  const ConfigSchema run = run_schema(mode);
  std::vector<PendingKey> out;
  for (auto& k : all) {
    k.in_run_schema = run.find(k.name) != nullptr;
    if (!k.in_run_schema) {  // every value but today's waits for the key
      k.not_built.clear();
      for (const auto& v : k.allowed)
        if (v != k.today) k.not_built.push_back(v);
    }
    if (!k.not_built.empty()) out.push_back(std::move(k));
  }
  return out;
}

bool PendingKey::is_not_built(const std::string& value) const {
  return std::find(not_built.begin(), not_built.end(), value) != not_built.end();
}

const Settings& train_point_defaults() {
  static const Settings d = {{"lr", "1e-5"},
                             {"lr_schedule", "constant"},
                             {"warmup_steps", "0"},
                             {"log_every", "1"},
                             {"stand_in_encoders", "true"}};
  return d;
}

const std::vector<std::string>& train_keys_set_by_bench() {
  static const std::vector<std::string> k = {"steps", "save_checkpoints", "val_samples",
                                             "final_eval"};
  return k;
}

// --- reading ---------------------------------------------------------------------------------

std::vector<SweepEntry> read_sweep_yaml_string(const std::string& yaml, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    user_error("{}: not valid YAML: {}", origin, e.what());
  }
  std::vector<SweepEntry> out;
  if (root.IsNull()) return out;
  if (!root.IsMap()) user_error("{}: expected a mapping of key: value or key: [values]", origin);
  for (const auto& item : root) {
    SweepEntry e;
    e.key = item.first.as<std::string>();
    e.origin = fmt::format("{} (line {})", origin, item.first.Mark().line + 1);
    const YAML::Node& v = item.second;
    if (v.IsScalar()) {
      e.values.push_back(v.as<std::string>());
    } else if (v.IsSequence()) {
      for (const auto& x : v) {
        if (!x.IsScalar())
          user_error("{}: key '{}': a list of single values expected (no nested lists or mappings)",
                     e.origin, e.key);
        e.values.push_back(x.as<std::string>());
      }
      if (e.values.empty()) user_error("{}: key '{}': the list is empty", e.origin, e.key);
    } else if (v.IsNull()) {
      user_error("{}: key '{}' has no value", e.origin, e.key);
    } else {
      user_error("{}: key '{}' must be a value or a list of values, not a mapping", e.origin,
                 e.key);
    }
    for (const auto& prev : out)
      if (prev.key == e.key) user_error("{}: key '{}' given twice", e.origin, e.key);
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<SweepEntry> read_sweep_yaml_file(const std::string& path) {
  if (!fs::exists(path)) user_error("config file '{}' does not exist", path);
  std::ifstream in(path);
  if (!in) user_error("config file '{}' cannot be read", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return read_sweep_yaml_string(ss.str(), path);
}

static void put(std::vector<SweepEntry>& entries, SweepEntry e) {
  for (auto& x : entries)
    if (x.key == e.key) {
      x = std::move(e);
      return;
    }
  entries.push_back(std::move(e));
}

static std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : text) {
    if (c == ',') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

std::optional<std::vector<SweepEntry>> parse_bench_args(const std::vector<std::string>& args) {
  // Every bare --key is a switch here: the bench does not know the keys' types until the mode
  // is known.
  auto cl = split_command_line(args, [](const std::string&) { return true; });
  if (cl.help) return std::nullopt;
  std::vector<SweepEntry> entries;
  for (const auto& f : cl.config_files)
    for (auto& e : read_sweep_yaml_file(f)) put(entries, std::move(e));
  for (const auto& [key, value] : cl.flags)
    put(entries, SweepEntry{key, split_list(value), "--" + key});
  return entries;
}

// --- validation and expansion ----------------------------------------------------------------

SweepSpec make_sweep(const std::vector<SweepEntry>& entries) {
  SweepSpec spec;
  const ConfigSchema bench = bench_schema();
  for (const auto& e : entries) {
    if (!bench.find(e.key)) continue;
    if (e.values.size() != 1)
      user_error("{}: key '{}' is a setting of the whole bench: one value, not a list", e.origin,
                 e.key);
    spec.bench.set(e.key, e.values[0], e.origin);
  }
  spec.mode = spec.bench.s("mode");
  const ConfigSchema run = run_schema(spec.mode);
  const auto pending = pending_keys(spec.mode);
  const auto& by_bench = train_keys_set_by_bench();
  for (const auto& e : entries) {
    if (bench.find(e.key)) continue;
    if (spec.mode == "train" &&
        std::find(by_bench.begin(), by_bench.end(), e.key) != by_bench.end())
      user_error(
          "{}: key '{}' is set by bench (steps = warmup + measured; no checkpoints, "
          "validation or evaluation)",
          e.origin, e.key);
    auto pk = std::find_if(pending.begin(), pending.end(),
                           [&](const PendingKey& p) { return p.name == e.key; });
    std::vector<std::string> values = e.values;
    if (pk != pending.end()) {
      for (auto& v : values) {
        if (pk->today == "false" || pk->today == "true") {  // a boolean: normalise its spelling
          Config probe(ConfigSchema().boolean("", "x", false, ""));
          probe.set("x", v, e.origin);
          v = probe.b("x") ? "true" : "false";
        }
        if (std::find(pk->allowed.begin(), pk->allowed.end(), v) == pk->allowed.end()) {
          std::string allowed;
          for (const auto& a : pk->allowed) allowed += (allowed.empty() ? "" : "|") + a;
          user_error("{}: bad value '{}' for '{}': expected one of {}", e.origin, v, e.key,
                     allowed);
        }
      }
    } else {
      Config probe(run);  // names an unknown key (with a suggestion) or a bad value
      for (auto& v : values) {
        probe.set(e.key, v, e.origin);
        if (run.find(e.key)->type == KeyType::kBool)  // one spelling for labels and columns
          v = probe.b(e.key) ? "true" : "false";
        if ((spec.mode == "sample" || spec.mode == "data") && e.key == "model")
          check_sample_model(v, e.origin);
      }
    }
    std::set<std::string> seen;
    for (const auto& v : values)
      if (!seen.insert(v).second)
        user_error("{}: key '{}': value '{}' listed twice", e.origin, e.key, v);
    if (values.size() == 1)
      spec.fixed.emplace_back(e.key, values[0]);
    else
      spec.axes.push_back({e.key, values});
  }
  std::vector<std::string> sources;  // files and flags, each once
  for (const auto& e : entries) {
    std::string o = e.origin.substr(0, e.origin.rfind(" (line "));
    if (std::find(sources.begin(), sources.end(), o) == sources.end()) sources.push_back(o);
  }
  for (const auto& o : sources) spec.source += (spec.source.empty() ? "" : " ") + o;
  return spec;
}

static std::string label(const std::string& key, const std::string& value) {
  if (key == "batch_size") return "bs" + value;
  if (key == "resolution") return value + "px";
  if (key == "grad_accum") return "ga" + value;
  if (key == "gradient_checkpointing") return value == "true" ? "gc" : "nogc";
  if (key == "model" && value.find('/') != std::string::npos) {  // a path: its last name
    const fs::path p(value);
    return (p.filename().empty() ? p.parent_path() : p).filename().string();
  }
  if (key == "model" || key == "precision" || key == "method" || key == "task") return value;
  if (key == "steps") return value + "steps";
  if (key == "weights") return "w" + value;
  if (key == "optimizer_state") return "opt" + value;
  return key + "_" + value;
}

static std::string directory_safe(const std::string& s) {
  std::string out;
  for (char c : s)
    out +=
        (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_') ? c : '_';
  return out;
}

std::vector<SweepPoint> expand_grid(const SweepSpec& spec) {
  size_t total = 1;
  for (const auto& a : spec.axes) total *= a.values.size();
  std::vector<SweepPoint> points;
  std::vector<size_t> idx(spec.axes.size(), 0);
  for (size_t n = 0; n < total; ++n) {
    SweepPoint p;
    p.index = static_cast<int64_t>(n + 1);
    p.settings = spec.fixed;
    p.name = fmt::format("{:03d}", p.index);
    for (size_t a = 0; a < spec.axes.size(); ++a) {
      const auto& v = spec.axes[a].values[idx[a]];
      p.settings.emplace_back(spec.axes[a].key, v);
      p.name += "-" + label(spec.axes[a].key, v);
    }
    p.name = directory_safe(p.name);
    points.push_back(std::move(p));
    for (size_t a = spec.axes.size(); a-- > 0;) {  // odometer: the last axis turns fastest
      if (++idx[a] < spec.axes[a].values.size()) break;
      idx[a] = 0;
    }
  }
  return points;
}

Config point_config(const SweepSpec& spec, const SweepPoint& point) {
  Config c(run_schema(spec.mode));
  if (spec.mode == "train")
    for (const auto& [k, v] : train_point_defaults()) c.set(k, v, "bench default");
  const auto pending = pending_keys(spec.mode);
  for (const auto& [k, v] : point.settings) {
    const bool not_built = std::any_of(pending.begin(), pending.end(), [&](const PendingKey& p) {
      return p.name == k && p.is_not_built(v);
    });
    if (c.has(k) && !not_built) c.set(k, v, "point " + point.name);
  }
  return c;
}

std::string setting(const SweepPoint& point, const std::string& key) {
  for (const auto& [k, v] : point.settings)
    if (k == key) return v;
  return "";
}

}  // namespace fluxtrain
