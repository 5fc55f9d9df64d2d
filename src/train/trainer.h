// The training loop: flow-matching steps on a Pipeline's transformer with AdamW, a learning-rate
// schedule, gradient accumulation and clipping, MLPerf-style validation, atomic checkpoints with
// exact resume, metrics files and a final evaluation.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "core/config.h"

namespace fluxtrain {

struct TrainResult {
  std::string run_dir;
  int64_t steps = 0;               // optimizer steps completed in total
  double last_loss = 0;            // mean loss of the last step
  std::optional<double> val_loss;  // last validation
  std::optional<double> best_val_loss;
  bool reached_target = false;
  bool interrupted = false;
  nlohmann::json eval;  // final evaluation (empty if none)
};

// Runs `fluxtrain train` with a resolved configuration (see train_schema()).
TrainResult train(const Config& config);

// A checkpoint directory from a user's path: a checkpoint itself (with manifest.json), or a run
// directory, whose checkpoints/best (if prefer_best and present) or latest step is taken.
std::string find_checkpoint(const std::string& path, bool prefer_best);

// Installs SIGINT/SIGTERM handlers: the first signal asks the loop to stop after the current step
// and write a checkpoint; a second one ends the process.
void install_stop_handlers();

}  // namespace fluxtrain
