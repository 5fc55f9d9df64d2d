// TrainState <-> manifest JSON (see train_state.h).
#include "train/train_state.h"

#include "core/errors.h"

namespace fluxtrain {

namespace {

nlohmann::json optional_number(const std::optional<double>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json();
}

// Reads state[key] as T; UserError naming the checkpoint and the key when it is missing (and
// `required`) or of the wrong type.
template <typename T>
void read(const nlohmann::json& state, const char* key, T& out, const std::string& origin,
          bool required = true) {
  if (!state.contains(key) || state[key].is_null()) {
    if (required)
      user_error(
          "checkpoint '{}': manifest state has no '{}' (not a fluxtrain checkpoint, or "
          "from an incompatible version)",
          origin, key);
    return;
  }
  try {
    out = state[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    user_error("checkpoint '{}': manifest state '{}' has the wrong type ({})", origin, key,
               state[key].type_name());
  }
}

}  // namespace

nlohmann::json TrainState::to_json() const {
  nlohmann::json resumes_json = nlohmann::json::array();
  for (const auto& r : resumes)
    resumes_json.push_back(
        {{"time", r.time}, {"checkpoint", r.checkpoint}, {"step", r.step}, {"changes", r.changes}});
  return {{"step", step},
          {"samples_seen", samples_seen},
          {"data_batches", data_batches},
          {"optimizer_steps", optimizer_steps},
          {"next_val_samples", next_val_samples},
          {"best_val_loss", optional_number(best_val_loss)},
          {"val_loss", optional_number(val_loss)},
          {"model", model},
          {"method", method},
          {"train_blocks", train_blocks},
          {"complete_model", complete_model},
          {"seed", seed},
          {"resolution", resolution},
          {"sampling",
           {{"steps", sampling.steps},
            {"height", sampling.height},
            {"width", sampling.width},
            {"cfg_scale", sampling.cfg_scale},
            {"guidance", sampling.guidance},
            {"shift", sampling.shift}}},
          {"config", config_yaml},
          {"resumes", resumes_json},
          {"fluxtrain_commit", fluxtrain_commit}};
}

TrainState TrainState::from_json(const nlohmann::json& j, const std::string& origin) {
  if (!j.is_object()) user_error("checkpoint '{}': manifest state is not an object", origin);
  TrainState s;
  read(j, "step", s.step, origin);
  read(j, "samples_seen", s.samples_seen, origin);
  read(j, "optimizer_steps", s.optimizer_steps, origin);
  read(j, "model", s.model, origin);
  read(j, "seed", s.seed, origin);
  read(j, "config", s.config_yaml, origin);
  read(j, "next_val_samples", s.next_val_samples, origin, false);
  read(j, "data_batches", s.data_batches, origin, false);
  double v = 0;
  if (j.contains("best_val_loss") && !j["best_val_loss"].is_null()) {
    read(j, "best_val_loss", v, origin);
    s.best_val_loss = v;
  }
  if (j.contains("val_loss") && !j["val_loss"].is_null()) {
    read(j, "val_loss", v, origin);
    s.val_loss = v;
  }
  s.method = "full";
  read(j, "method", s.method, origin, false);
  read(j, "train_blocks", s.train_blocks, origin, false);
  read(j, "complete_model", s.complete_model, origin, false);
  read(j, "resolution", s.resolution, origin, false);
  read(j, "fluxtrain_commit", s.fluxtrain_commit, origin, false);
  if (j.contains("sampling")) {
    const auto& p = j["sampling"];
    read(p, "steps", s.sampling.steps, origin);
    read(p, "height", s.sampling.height, origin);
    read(p, "width", s.sampling.width, origin);
    read(p, "cfg_scale", s.sampling.cfg_scale, origin);
    read(p, "guidance", s.sampling.guidance, origin);
    read(p, "shift", s.sampling.shift, origin);
  }
  if (j.contains("resumes")) {
    if (!j["resumes"].is_array())
      user_error("checkpoint '{}': manifest state 'resumes' is not a list", origin);
    for (const auto& r : j["resumes"]) {
      ResumeRecord rec;
      read(r, "time", rec.time, origin);
      read(r, "checkpoint", rec.checkpoint, origin);
      read(r, "step", rec.step, origin);
      read(r, "changes", rec.changes, origin);
      s.resumes.push_back(rec);
    }
  }
  return s;
}

}  // namespace fluxtrain
