// FLUX.1 transformer checkpoints on disk, in either published form: Black Forest Labs' single
// file (flux1-dev.safetensors, names as FluxImpl registers them) or diffusers'
// transformer/ directory (config.json + diffusion_pytorch_model[-0000N-of-0000M].safetensors
// + .index.json, FluxTransformer2DModel names). The name table between the two is
// model/weight_names.h. The architecture (depths, width, heads, guidance embedding, ...) is read
// from the tensors' names and shapes (and diffusers' config.json where it has it), never assumed.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "model/flux.h"
#include "model/weight_names.h"

namespace fluxtrain {

struct FluxWeights {
  std::string path;                // as given: a .safetensors file, an .index.json or a directory
  std::vector<std::string> files;  // the safetensors files holding the tensors
  WeightLayout layout = WeightLayout::kBfl;
  FluxParams params;              // inferred architecture (validated)
  std::string preset = "custom";  // "flux-dev" / "flux-schnell" when params match one exactly
  torch::ScalarType stored_dtype = torch::kBFloat16;  // dtype of most stored tensors
  int64_t num_params = 0;
};

// Reads headers only (nothing is loaded): detects the layout and infers FluxParams. `path` is a
// BFL or diffusers .safetensors file, a sharded checkpoint's .index.json, a diffusers
// transformer/ directory, or a pipeline directory holding transformer/. UserError (naming the
// file and the tensor) when the path is missing, holds no FLUX transformer, or is inconsistent
// (a block index gap, a shape that does not fit the others).
FluxWeights inspect_flux_weights(const std::string& path);

// Copies every tensor into `model` (converting dtype and device to each parameter's), fusing or
// splitting as the layout needs. `model` must have been built with weights.params. A missing,
// unexpected or wrong-shaped tensor is a UserError naming the file and the tensor as stored.
void load_flux_weights(FluxImpl& model, const FluxWeights& weights);

// All tensors in BFL names (FluxImpl's parameter names), converted from the stored layout, in
// `dtype` on the CPU.
NamedTensors read_flux_tensors_bfl(const FluxWeights& weights, torch::ScalarType dtype);

// Writes `bfl` (tensors under BFL names, e.g. module_tensors(model)) in `layout`: kBfl -> one
// file at `out` (a .safetensors path); kDiffusers -> directory `out` with config.json and
// diffusion_pytorch_model.safetensors, or shards of at most `max_shard_bytes` with
// diffusion_pytorch_model.safetensors.index.json when the tensors are larger. Writes atomically
// (temporary names, then rename).
void export_flux_weights(const NamedTensors& bfl, const FluxParams& params, const std::string& out,
                         WeightLayout layout, int64_t max_shard_bytes = int64_t{10} << 30);

// ---- Additions (used by `fluxtrain convert` and the tests).

// The RoPE axes a head dim implies when nothing records them (BFL files do not): 128 ->
// {16, 56, 56} (FLUX.1); otherwise {hd/8, 7hd/16, 7hd/16} when those are even integers (32 ->
// {4, 14, 14}); nullopt when there is no such split.
std::optional<std::vector<int64_t>> default_axes_dim(int64_t head_dim);
// "flux-dev" / "flux-schnell" when `params` equal that preset's exactly, else "custom".
std::string flux_preset_of(const FluxParams& params);
// The same as inspect_flux_weights(path), with the RoPE axes given rather than inferred (a
// fluxtrain checkpoint's axes come from its preset). UserError when they do not fit the head dim.
FluxWeights inspect_flux_weights(const std::string& path, const std::vector<int64_t>& axes_dim);

// diffusers' transformer/config.json for `params` (as diffusers writes it for FLUX.1: class
// name, patch_size 1, out_channels null when equal to in_channels, axes_dims_rope).
nlohmann::json flux_diffusers_config(const FluxParams& params);

// A checkpoint opened for reading tensor by tensor, in BFL form. Opening re-reads and re-checks
// the headers (every name and shape against weights.params).
class FluxWeightsReader {
 public:
  explicit FluxWeightsReader(const FluxWeights& weights);
  ~FluxWeightsReader();
  const FluxWeightTable& table() const;
  // One tensor under its BFL name (diffusers pieces concatenated, final-layer halves swapped),
  // in `dtype` (nullopt: as stored, FP8 decoded to float32) on `device`.
  torch::Tensor read(const FluxWeightEntry& entry, std::optional<torch::ScalarType> dtype,
                     torch::Device device = torch::kCPU) const;
  // The dtype read() returns for `entry` with dtype nullopt.
  torch::ScalarType stored_dtype(const FluxWeightEntry& entry) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Writes the checkpoint `src` in `layout` at `out` (as export_flux_weights does), reading tensor
// by tensor: a diffusers directory holds one shard's tensors in memory at a time, a BFL file the
// whole model once. `dtype` nullopt keeps each tensor's stored dtype. Returns the bytes of
// tensor data written.
int64_t convert_flux_weights(const FluxWeights& src, const std::string& out, WeightLayout layout,
                             std::optional<torch::ScalarType> dtype = std::nullopt,
                             int64_t max_shard_bytes = int64_t{10} << 30);

}  // namespace fluxtrain
