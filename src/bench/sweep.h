// Sweep files of `fluxtrain bench`: the bench's own keys, run keys with one value (fixed) or a
// list of values (axes of a grid), and the grid's expansion into points.
//
//   mode: train            # bench keys: mode, warmup, measured, price_per_hour, peak_tflops, ...
//   model: tiny            # a run key with one value: the same at every point
//   precision: [fp32, bf16]
//   batch_size: [1, 2, 4]  # lists are axes: 2 x 3 = 6 points, the last axis varying fastest
//
// Run keys are those of `fluxtrain train` (train mode) or of sample_bench_schema() (sample mode),
// plus keys for features not built yet (pending_keys()), recorded and reported "unsupported".
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"

namespace fluxtrain {

using Settings = std::vector<std::pair<std::string, std::string>>;  // key, value (in order)

// One key as written: its values (one, or a list) and where it came from, for error messages.
struct SweepEntry {
  std::string key;
  std::vector<std::string> values;
  std::string origin;  // "sweep.yaml (line 3)", "--batch_size"
};

// A flat YAML mapping of key: scalar or key: [scalars], in file order.
std::vector<SweepEntry> read_sweep_yaml_string(const std::string& yaml, const std::string& origin);
std::vector<SweepEntry> read_sweep_yaml_file(const std::string& path);
// The arguments after `bench`: --config FILE first, then --key value, --key=value, --flag,
// --no-flag; a comma-separated value ("--batch_size 1,2,4") is a list. A later entry of a key
// replaces an earlier one. nullopt when --help was asked for.
std::optional<std::vector<SweepEntry>> parse_bench_args(const std::vector<std::string>& args);

// The bench's own keys (single values): mode, warmup, measured, price_per_hour, peak_tflops,
// name, output_dir, point_timeout_s, memory_limit_gb, dry_run.
ConfigSchema bench_schema();
// The run keys of sample mode (timed in-process text-to-image generation).
ConfigSchema sample_bench_schema();
// The run keys of a mode: train_schema(), sample_bench_schema() or data_bench_schema().
ConfigSchema run_schema(const std::string& mode);
// Sample mode's `model`: one of these presets (random weights), else a FLUX.1 model on disk (real
// weights: a diffusers repository, Hugging Face cache entry or transformer .safetensors file).
const std::vector<std::string>& sample_model_presets();
bool is_sample_model_path(const std::string& model);

// A key of a feature that does not exist yet. Points at `today` (what fluxtrain does now) run
// without passing it; other values are recorded as "unsupported" and not run.
struct PendingKey {
  std::string name;
  std::string today;
  std::vector<std::string> allowed;
  std::string what;
  std::vector<std::string> not_built;  // the allowed values fluxtrain cannot run yet
  bool in_run_schema = false;          // the run command takes the key (for its built values)
  bool is_not_built(const std::string& value) const;
};
// For "train" (blocks_to_swap: block swap not built yet) and "sample" (none); a key whose every
// value is built is left out.
std::vector<PendingKey> pending_keys(const std::string& mode);

struct SweepAxis {
  std::string key;
  std::vector<std::string> values;
};

struct SweepSpec {
  Config bench{bench_schema()};
  std::string mode = "train";
  Settings fixed;               // run keys with one value
  std::vector<SweepAxis> axes;  // run keys with several
  std::string source;           // the sweep file(s) and flags, as given
};

// Validates every key and value (a UserError names the key, the value and where it came from).
SweepSpec make_sweep(const std::vector<SweepEntry>& entries);

struct SweepPoint {
  int64_t index = 0;  // 1-based
  std::string name;   // "003-bf16-bs4": unique, safe as a directory name
  Settings settings;  // fixed keys, then this point's axis values
};

// The cartesian product of the axes, first axis outermost (one point when there are none).
std::vector<SweepPoint> expand_grid(const SweepSpec& spec);

// Train mode: keys bench passes to every child unless the sweep sets them (constant small
// learning rate so random 12B weights do not diverge, a progress line per step, stand-in
// encoders for the FLUX presets).
const Settings& train_point_defaults();
// Train mode: keys bench always sets itself (a sweep setting them is a UserError).
const std::vector<std::string>& train_keys_set_by_bench();

// The point's run configuration (train_schema() or sample_bench_schema()) with bench defaults
// and the point's settings applied, pending keys left out.
Config point_config(const SweepSpec& spec, const SweepPoint& point);
// The value of `key` at this point ("" when the point does not set it).
std::string setting(const SweepPoint& point, const std::string& key);

}  // namespace fluxtrain
