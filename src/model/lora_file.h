// FLUX.1 LoRA files in the three layouts users load (model/lora_names.h, docs/lora-formats.md),
// read into and written from one form: an adapter per BFL linear layer (fused qkv and linear1),
// delta W = (alpha / r) * up @ down.
//
// Fused <-> split is exact: writing diffusers' q/k/v (and proj_mlp) pieces copies the shared
// down matrix to each piece and splits up's rows; reading pieces back fuses them to the shared
// down matrix when every piece has it (a file fluxtrain wrote), else stacks the down matrices
// (scales folded in) over a block-diagonal up matrix (rank = the sum of the pieces' ranks,
// alpha = rank), the delta unchanged. diffusers keeps no alpha tensors: the scale is folded into
// up, and its metadata says lora_alpha = r, so diffusers and ComfyUI apply the same strength.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "model/lora_names.h"

namespace fluxtrain {

struct LoraModuleWeights {
  std::string module;       // BFL linear layer, "double_blocks.0.img_attn.qkv"
  torch::Tensor down, up;   // A [r, in], B [out, r]
  double alpha = 0;         // scale = alpha / r
  torch::Tensor magnitude;  // DoRA's m [out] (PEFT's lora_magnitude_vector); undefined: LoRA
  int64_t rank() const { return down.size(0); }
  double scale() const { return alpha / static_cast<double>(rank()); }
  // (alpha / r) * up @ down in float32, [out, in].
  torch::Tensor delta() const;
};

struct LoraWeights {
  std::vector<LoraModuleWeights> modules;
  std::map<std::string, std::string> metadata;  // the file's __metadata__
  std::string origin;                           // file path (for messages)
  std::vector<std::string> layouts;             // the layouts its keys were in
  int64_t text_encoder_tensors = 0;             // CLIP / T5 adapters in the file (not applied)
  bool dora() const;
  // nullptr when no adapter is on `module`.
  const LoraModuleWeights* find(const std::string& module) const;
};

// What a file's metadata records besides the tensors.
struct LoraDescription {
  std::string base_model;    // the model trained on (a path or preset)
  std::string architecture;  // "flux-1-dev", "flux-1-schnell" or "flux-1"
  std::string targets;       // lora_targets as given
  int64_t steps = 0;
  double dropout = 0;
};

// The tensors of `weights` in `layout`, in `dtype` on the CPU. UserError for DoRA in the
// comfyui or kohya layout (neither has PEFT's per-output magnitude).
NamedTensors lora_layout_tensors(const LoraWeights& weights, LoraLayout layout,
                                 torch::ScalarType dtype);
// The metadata a file in `layout` carries: fluxtrain.* (rank, alpha, targets, base model, steps,
// DoRA) for all; kohya's ss_* and modelspec.* keys; diffusers' lora_adapter_metadata (PEFT's
// LoraConfig: r, lora_alpha = r, target_modules, use_dora, ...).
std::map<std::string, std::string> lora_layout_metadata(const LoraWeights& weights,
                                                        LoraLayout layout,
                                                        const LoraDescription& description);
// Writes one file (atomically).
void write_lora_file(const std::string& path, const LoraWeights& weights, LoraLayout layout,
                     const LoraDescription& description, torch::ScalarType dtype);

// Reads a file in any of the layouts (and kohya-style files with diffusers names, as OneTrainer
// writes them, and BFL names without a prefix). Text-encoder adapters are counted, not kept.
// UserError naming the file and the key for a key that is no FLUX LoRA tensor, an adapter
// missing its down or up matrix, shapes that do not fit, or bias / LyCORIS tensors fluxtrain
// does not apply.
LoraWeights read_lora_file(const std::string& path);
LoraWeights lora_from_tensors(const NamedTensors& tensors,
                              const std::map<std::string, std::string>& metadata,
                              const std::string& origin);

// Warnings for adapters on `modules` written in `layouts` only: which of the programs users load
// LoRAs in (diffusers, ComfyUI) will not load all of them (docs/lora-formats.md section 2).
std::vector<std::string> lora_layout_gaps(const std::vector<std::string>& modules,
                                          const std::vector<LoraLayout>& layouts);

}  // namespace fluxtrain
