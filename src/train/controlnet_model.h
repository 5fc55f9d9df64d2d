// method: controlnet. The base transformer is frozen; a FLUX ControlNet (model/controlnet.h)
// built from its embedders and first blocks (diffusers' from_transformer) trains, and feeds the
// base its residuals on every call. Checkpoints save the ControlNet (model.safetensors, fluxtrain
// names, for resume) and, beside it, diffusers' controlnet files (config.json +
// diffusion_pytorch_model.safetensors) so that a checkpoint directory is itself what
// FluxControlNetModel.from_pretrained and `fluxtrain sample --controlnet` read.
#pragma once
#include <string>

#include "model/controlnet.h"
#include "train/trained_model.h"

namespace fluxtrain {

struct ControlNetOptions {
  int64_t double_blocks = 2, single_blocks = 4;  // diffusers' num_layers / num_single_layers
  std::string init_from;  // a controlnet/ directory to start from instead of the base's blocks
  torch::ScalarType save_dtype = torch::kBFloat16;  // of the diffusers file
};

class ControlNetFineTune : public TrainedModel {
 public:
  ControlNetFineTune(Flux transformer, const ControlNetOptions& options);
  std::string method() const override { return "controlnet"; }
  FluxImpl& transformer() override { return *transformer_; }
  FluxControlNetImpl* controlnet() override { return controlnet_.get(); }
  const AdamW::Named& trainable() const override { return trainable_; }
  bool saves_complete_model() const override { return false; }
  NamedTensors checkpoint_tensors() const override;
  void load_checkpoint(const SafetensorsFile& file) override;
  void load_averaged(const SafetensorsFile& file) override { load_checkpoint(file); }
  std::string describe() const override;
  std::map<std::string, ExportFile> export_files(int64_t step) const override;
  std::map<std::string, std::string> export_texts() const override;
  bool has_export_files() const override { return true; }

 private:
  Flux transformer_;
  FluxControlNet controlnet_;
  AdamW::Named trainable_;
  ControlNetOptions options_;
};

}  // namespace fluxtrain
