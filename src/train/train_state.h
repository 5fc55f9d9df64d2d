// TrainState: everything a checkpoint records about where a run is, and the one thing save and
// resume exchange (manifest.json's "state"). Randomness is counter-based (core/rng.h), so the
// step and the data position determine every later draw; no generator state is stored.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace fluxtrain {

// The sampler settings the run's own evaluation used: `sample --checkpoint` starts from them.
struct SamplingDefaults {
  int64_t steps = 0, height = 0, width = 0;
  double cfg_scale = 1, guidance = 0;
  bool shift = false;
};

// One resume of the run: when, from which checkpoint, and which keys it changed.
struct ResumeRecord {
  std::string time;        // "2026-12-01 10:22:03"
  std::string checkpoint;  // the directory resumed from
  int64_t step = 0;
  std::vector<std::string> changes;  // "steps: 900 -> 1200"
};

struct TrainState {
  int64_t step = 0;              // optimizer steps completed
  int64_t samples_seen = 0;      // training samples consumed over all ranks
  int64_t data_batches = -1;     // batches each rank has drawn: the loader's position (-1: unknown)
  int64_t optimizer_steps = 0;   // AdamW's bias-correction counter
  int64_t next_val_samples = 0;  // with val_every_samples: the sample count of the next validation
  std::optional<double> best_val_loss, val_loss;
  std::string model;   // preset name or model path
  std::string method;  // "full"
  std::vector<std::string> train_blocks;
  bool complete_model = true;  // model.safetensors holds every parameter (else the trained ones)
  uint64_t seed = 0;
  int64_t resolution = 0;
  SamplingDefaults sampling;
  std::string config_yaml;  // the resolved configuration of the run
  std::vector<ResumeRecord> resumes;
  std::string fluxtrain_commit;

  nlohmann::json to_json() const;
  // UserError naming `origin` (the checkpoint) and the key for a missing or mistyped field.
  static TrainState from_json(const nlohmann::json& state, const std::string& origin);
};

}  // namespace fluxtrain
