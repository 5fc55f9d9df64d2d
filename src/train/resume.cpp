// Resume: checkpoint choice with fallback, and the resumed configuration (see resume.h).
#include "train/resume.h"

#include <algorithm>
#include <filesystem>

#include "core/errors.h"
#include "core/log.h"
#include "train/run_directory.h"
#include "train/train_config.h"

namespace fluxtrain {
namespace fs = std::filesystem;

namespace {

ResumePoint open_verified(const std::string& dir) {
  ResumePoint p;
  p.checkpoint = load_checkpoint_dir(dir);
  p.state = TrainState::from_json(p.checkpoint.state, dir);
  p.run_dir = fs::path(dir).parent_path().parent_path().string();
  return p;
}

}  // namespace

ResumePoint open_checkpoint(const std::string& path, bool prefer_best) {
  fs::path p = fs::absolute(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  std::error_code ec;
  if (fs::exists(p / "manifest.json", ec)) return open_verified(p.string());
  const fs::path root = p / "checkpoints";
  const auto steps = list_step_checkpoints(root.string());
  std::vector<std::string> candidates;
  if (prefer_best && fs::exists(root / "best" / "manifest.json", ec))
    candidates.push_back((root / "best").string());
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) candidates.push_back(it->second);
  if (candidates.empty()) {
    if (is_run_dir(p.string()))
      user_error(
          "'{}': this run has no checkpoint yet: it stopped before writing its first one "
          "(checkpoints are written every ckpt_every steps and at the end), so there is nothing "
          "to resume; start it again without --resume",
          path);
    user_error("'{}': expected a checkpoint directory (with manifest.json) or a run directory",
               path);
  }
  std::vector<std::string> failures;
  for (const auto& dir : candidates) {
    try {
      ResumePoint r = open_verified(dir);
      r.skipped = failures;
      if (!failures.empty()) log_warn("using {}, the newest checkpoint that verifies", dir);
      return r;
    } catch (const UserError& e) {
      log_warn("checkpoint {} is unreadable, trying the one before: {}", dir, e.what());
      failures.push_back(e.what());
    }
  }
  user_error("'{}': none of its {} checkpoints verifies; the newest: {}", path, candidates.size(),
             failures.front());
}

std::string find_checkpoint(const std::string& path, bool prefer_best) {
  return open_checkpoint(path, prefer_best).checkpoint.dir;
}

ResumedConfig resume_config(const Config& given, const TrainState& saved,
                            const std::string& checkpoint_dir) {
  ResumedConfig out{Config(given.schema()), {}};
  Config& c = out.config;
  c.load_yaml_string(saved.config_yaml, "checkpoint '" + checkpoint_dir + "' configuration");
  const bool allow = given.b("override");
  // A schedule whose shape does not depend on the number of steps may be extended.
  const std::string schedule =
      given.is_set("lr_schedule") ? given.s("lr_schedule") : c.s("lr_schedule");
  const bool steps_free = schedule == "constant" || schedule == "warmup_hold";
  std::vector<std::string> refused;
  for (const auto& key : given.schema().keys()) {
    if (key.name == "resume" || key.name == "override" || !given.is_set(key.name)) continue;
    if (given.value(key.name) == c.value(key.name)) continue;
    const std::string change =
        fmt::format("{}: {} -> {}", key.name, c.text(key.name), given.text(key.name));
    out.changes.push_back(change);
    const bool free = !key.affects_results || (key.name == "steps" && steps_free);
    if (!free) refused.push_back(change);
  }
  if (!refused.empty() && !allow) {
    std::string why;
    for (const auto& r : refused) why += (why.empty() ? "" : "; ") + r;
    user_error(
        "resume '{}': {} would change what the run computes{}; add --override to change it "
        "anyway, or leave it out to continue the run as it was saved",
        checkpoint_dir, why,
        std::any_of(refused.begin(), refused.end(),
                    [](const std::string& r) { return r.rfind("steps:", 0) == 0; })
            ? fmt::format(" (steps reshapes the {} schedule)", schedule)
            : std::string());
  }
  for (const auto& key : given.schema().keys())
    if (given.is_set(key.name) && key.name != "override")
      c.set(key.name, given.text(key.name), "--" + key.name);
  c.set("resume", given.s("resume"), "--resume");
  return out;
}

}  // namespace fluxtrain
