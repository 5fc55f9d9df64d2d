// Atomic checkpoint directories: safetensors files plus manifest.json (sizes, XXH64 checksums,
// training state), written to a temporary sibling and renamed into place; verified on load.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "io/safetensors.h"

namespace fluxtrain {

constexpr const char* kCheckpointFormat = "fluxtrain-checkpoint";
constexpr int kCheckpointVersion = 1;

// Writes `dir` with one safetensors file per entry of `files` ("model.safetensors" -> tensors)
// and manifest.json = {"format": "fluxtrain-checkpoint", "version": 1,
// "files": {name: {"bytes": N, "xxh64": "16 hex digits"}}, "state": state}.
// Everything goes into `<dir>.tmp-<pid>-<random>` first and is fsynced; then the directory is
// renamed into place. An existing `dir` (e.g. "best") is renamed aside to
// `<dir>.old-<pid>-<random>` first and deleted only once the new one is in place, so a complete
// checkpoint exists at every moment (load_checkpoint_dir recovers the aside copy after a crash).
// File names must be plain names (no '/'), not manifest.json. `metadata` gives a file's
// safetensors __metadata__ (by file name; none for the others). `texts` are text files written
// beside them (a ControlNet's config.json, for the programs that load the directory), listed in
// the manifest under "texts" with their sizes.
void save_checkpoint_dir(
    const std::string& dir,
    const std::map<std::string, std::vector<std::pair<std::string, torch::Tensor>>>& files,
    const nlohmann::json& state,
    const std::map<std::string, std::map<std::string, std::string>>& metadata = {},
    const std::map<std::string, std::string>& texts = {});

// A verified checkpoint: its state and its files, opened (mmap) and ready to load from.
struct LoadedCheckpoint {
  std::string dir;
  nlohmann::json state;
  std::map<std::string, SafetensorsFile> files;

  bool has_file(const std::string& name) const { return files.count(name) > 0; }
  // UserError naming the checkpoint and the file if the checkpoint does not have it.
  const SafetensorsFile& file(const std::string& name) const;
};

// Checks, in this order, each failure a one-line UserError naming the checkpoint: the directory
// exists (else recovers an aside copy left by an interrupted overwrite), manifest.json is present
// and well-formed with the right format and version, every listed file is present with the
// recorded size, and (when verify_checksums) its XXH64 matches; then opens the files.
LoadedCheckpoint load_checkpoint_dir(const std::string& dir, bool verify_checksums = true);

// `root/step-N`.
std::string step_checkpoint_dir(const std::string& root, int64_t step);

// The `root/step-N` directories, sorted by N; temporary (`*.tmp-*`) and other entries are
// ignored. A step whose directory is missing but whose aside copy (`step-N.old-*`, left by an
// interrupted overwrite) exists is listed with the aside copy's path. Empty if root is missing.
std::vector<std::pair<int64_t, std::string>> list_step_checkpoints(const std::string& root);

// Removes the oldest complete (manifest.json present) step checkpoints beyond the last
// `keep_last` (keep_last <= 0 keeps all). Also removes stale `*.tmp-<pid>-*` directories in root
// (their writer is gone), puts orphaned aside copies back in place, and removes aside copies
// whose replacement is complete.
void prune_step_checkpoints(const std::string& root, int64_t keep_last);

}  // namespace fluxtrain
