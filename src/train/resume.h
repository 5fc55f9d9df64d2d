// Finding the checkpoint to continue from, and the configuration a resumed run uses.
//  - A run directory resumes from its newest checkpoint that verifies; a newer one that does not
//    (truncated, corrupt) is reported by name and skipped. A run with no checkpoint yet says so.
//  - `--resume RUN` alone takes the run's own configuration (saved in every checkpoint). Keys the
//    user sets again are compared with it: a change to a key that alters what the run computes
//    (steps of a decaying schedule, model, data, method, optimiser, ...) is refused unless
//    `override`; operational keys (device, logging, checkpoint intervals) change freely.
#pragma once
#include <string>
#include <vector>

#include "core/config.h"
#include "io/checkpoint.h"
#include "train/train_state.h"

namespace fluxtrain {

struct ResumePoint {
  LoadedCheckpoint checkpoint;  // verified
  TrainState state;
  std::string run_dir;
  std::vector<std::string> skipped;  // newer checkpoints that did not verify, with the reason
};

// From a user's path: a checkpoint directory (used as it is: an unreadable one is an error) or a
// run directory (its newest readable step checkpoint, or with prefer_best its checkpoints/best
// when readable). UserError naming what was wrong with each candidate.
ResumePoint open_checkpoint(const std::string& path, bool prefer_best = false);

// The directory open_checkpoint picks (for commands that load it themselves).
std::string find_checkpoint(const std::string& path, bool prefer_best);

struct ResumedConfig {
  Config config;                     // the run's configuration with the accepted changes
  std::vector<std::string> changes;  // "steps: 900 -> 1200", one per changed key
};

// `given` is what the user asked for (--resume set); `saved` the checkpoint's state. UserError
// naming every refused change when one alters what the run computes and `override` is not set.
ResumedConfig resume_config(const Config& given, const TrainState& saved,
                            const std::string& checkpoint_dir);

}  // namespace fluxtrain
