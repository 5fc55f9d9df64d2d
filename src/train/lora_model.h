// method: lora. The base transformer is frozen; LoRA (or DoRA) adapters on the linear layers
// `targets` select train, and are what checkpoints save (model.safetensors: the adapters under
// "<BFL layer>.lora_A.weight" / ".lora_B.weight" / ".lora_magnitude_vector") beside the LoRA
// files users load (model/lora_file.h), written by the trainer in each `lora_format` layout.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "model/lora_adapter.h"
#include "model/lora_file.h"
#include "train/trained_model.h"

namespace fluxtrain {

// The linear layers `targets` select: presets
//   attn      double blocks' img/txt attention qkv and proj; single blocks' linear1 and linear2
//             (the single blocks' attention is fused with their MLP in those two layers)
//   attn_mlp  attn + the double blocks' img/txt MLPs (diffusers' and kohya's usual choice)
//   blocks    every linear layer of the double and single blocks, modulation included (kohya's
//             default)
//   all       blocks + the embedders (img_in, txt_in, time_in, vector_in, guidance_in) and the
//             final layer
// or name patterns as train_blocks takes them (select_parameters), e.g. "single_blocks.*".
// UserError naming a pattern that selects nothing.
std::vector<std::string> lora_target_layers(FluxImpl& model,
                                            const std::vector<std::string>& targets);
// The same over the names of a model's linear layers (nothing allocated: the memory plan).
std::vector<std::string> lora_target_layers(const std::vector<std::string>& linear_layers,
                                            const std::vector<std::string>& targets);

struct LoraOptions {
  LoraAdapterOptions adapter;
  std::vector<std::string> targets = {"attn_mlp"};
  std::string init_from;  // a LoRA file in any layout: its layers, ranks, alphas and weights
  uint64_t seed = 0;      // draws the down matrices
  // The files checkpoints hold for users: one per layout, tensors in save_dtype.
  std::vector<LoraLayout> formats = {LoraLayout::kComfyUI, LoraLayout::kDiffusers,
                                     LoraLayout::kKohya};
  torch::ScalarType save_dtype = torch::kBFloat16;
  LoraDescription description;  // steps filled in per checkpoint
};

class LoraFineTune : public TrainedModel {
 public:
  LoraFineTune(Flux transformer, const LoraOptions& options);
  std::string method() const override { return "lora"; }
  FluxImpl& transformer() override { return *transformer_; }
  const AdamW::Named& trainable() const override { return trainable_; }
  bool saves_complete_model() const override { return false; }
  NamedTensors checkpoint_tensors() const override;
  void load_checkpoint(const SafetensorsFile& file) override;
  void load_averaged(const SafetensorsFile& file) override { load_checkpoint(file); }
  std::string describe() const override;
  std::map<std::string, ExportFile> export_files(int64_t step) const override;
  bool has_export_files() const override { return true; }
  void begin_micro_batch(uint64_t counter) override;

  // The adapters as they are now (float32 copies on the CPU).
  LoraWeights weights() const;
  const std::vector<std::string>& layers() const { return layers_; }

 private:
  Flux transformer_;
  std::vector<std::string> layers_;
  std::vector<std::shared_ptr<LoraAdapter>> adapters_;
  AdamW::Named trainable_;
  LoraOptions options_;
};

}  // namespace fluxtrain
