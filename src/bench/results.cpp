// Benchmark results and their setting columns (see results.h).
#include "bench/results.h"

#include <algorithm>

#include "bench/sample_point.h"
#include "core/errors.h"
#include "model/presets.h"

namespace fluxtrain {

std::vector<std::string> setting_columns(const SweepSpec& spec) {
  std::vector<std::string> cols =
      spec.mode == "data"
          ? std::vector<std::string>{"task",         "model",   "resolution", "batch_size",
                                     "image_format", "workers", "threads"}
      : spec.mode == "train"
          ? std::vector<std::string>{"model",      "method",          "precision",
                                     "weights",    "optimizer_state", "resolution",
                                     "batch_size", "grad_accum",      "gradient_checkpointing"}
          : std::vector<std::string>{"model",      "precision", "weights",  "resolution",
                                     "batch_size", "steps",     "cfg_scale"};
  auto add = [&](const std::string& k) {
    if (std::find(cols.begin(), cols.end(), k) == cols.end()) cols.push_back(k);
  };
  for (const auto& a : spec.axes) add(a.key);
  for (const auto& [k, v] : spec.fixed) add(k);
  return cols;
}

Settings resolve_columns(const SweepSpec& spec, const SweepPoint& point) {
  const Config cfg = point_config(spec, point);
  const auto pending = pending_keys(spec.mode);
  // A model path whose files cannot be read keeps resolution and steps as given (0 = default):
  // the point fails with the reason when it runs.
  std::optional<ModelPreset> preset;
  try {
    if (spec.mode == "sample")
      preset = sample_model_preset(cfg.s("model"));
    else if (spec.mode == "train")
      preset = model_preset(cfg.s("model"));
  } catch (const UserError&) {
    if (spec.mode != "sample") throw;
  }
  Settings out;
  for (const auto& key : setting_columns(spec)) {
    std::string v = setting(point, key);
    auto pk = std::find_if(pending.begin(), pending.end(),
                           [&](const PendingKey& p) { return p.name == key; });
    if (pk != pending.end()) {
      if (v.empty()) v = pk->today;
    } else if (cfg.has(key)) {
      const ConfigKey* k = cfg.schema().find(key);
      switch (k->type) {
        case KeyType::kInt:
          v = std::to_string(cfg.i(key));
          break;
        case KeyType::kFloat:
          v = fmt::format("{}", cfg.f(key));
          break;
        case KeyType::kBool:
          v = cfg.b(key) ? "true" : "false";
          break;
        default:
          v = cfg.s(key);
      }
      if (preset && key == "resolution" && cfg.i(key) == 0)
        v = std::to_string(preset->default_resolution);
      if (preset && key == "steps" && spec.mode == "sample" && cfg.i(key) == 0)
        v = std::to_string(preset->sample_steps);
    }
    out.emplace_back(key, v);
  }
  return out;
}

std::string PointResult::column(const std::string& key) const {
  for (const auto& [k, v] : columns)
    if (k == key) return v;
  return "";
}

nlohmann::json PointResult::to_json() const {
  nlohmann::json settings = nlohmann::json::object();
  for (const auto& [k, v] : columns) settings[k] = v;
  nlohmann::json given = nlohmann::json::object();
  for (const auto& [k, v] : point.settings) given[k] = v;
  return {{"index", point.index},
          {"name", point.name},
          {"status", status},
          {"error", error},
          {"settings", settings},
          {"given", given},
          {"device", device},
          {"device_name", device_name},
          {"image_tokens", image_tokens},
          {"text_tokens", text_tokens},
          {"seconds", seconds},
          {"run_dir", run_dir},
          {"log", log},
          {"profile", profile},
          {"figures", figures ? figures->to_json() : nlohmann::json()}};
}

}  // namespace fluxtrain
