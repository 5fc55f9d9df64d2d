// The model part a trainer is handed (torchtitan's model wrapper): the transformer, which of its
// parameters train and which are frozen, and what a checkpoint saves and restores. Each training
// method is one implementation; `full` trains every parameter of the selected blocks.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "model/flux.h"
#include "train/optimizer.h"

namespace fluxtrain {

struct FluxControlNetImpl;

// The names among `names` that `patterns` select: a pattern selects a name when it matches, as a
// shell glob (fnmatch: * ? [...]), the whole name or one of its dotted prefixes ("double_blocks.1"
// selects "double_blocks.1.img_attn.qkv.weight"; "double_blocks.1*" also double_blocks.10-18).
// No patterns select every name. A pattern that selects nothing is a UserError naming it.
// `key` names the setting in the error.
std::vector<std::string> select_parameters(const std::vector<std::string>& names,
                                           const std::vector<std::string>& patterns,
                                           const std::string& key = "train_blocks");

// Copies each of `tensors` from `file` by name. The file must hold exactly those names: one more
// or one missing is a UserError naming the file and the tensor, with `why` as the likely reason
// ("train_blocks differs from the run that wrote it"); so is a wrong shape.
void load_named_tensors(const SafetensorsFile& file, const AdamW::Named& tensors,
                        const std::string& why);

class TrainedModel {
 public:
  virtual ~TrainedModel() = default;
  virtual std::string method() const = 0;
  virtual FluxImpl& transformer() = 0;
  // The parameters the optimizer updates, by name (requires_grad); every other parameter is
  // frozen (requires_grad false, no gradient, no optimizer state).
  virtual const AdamW::Named& trainable() const = 0;
  // True when checkpoint_tensors() is a complete transformer (loadable without the base model).
  virtual bool saves_complete_model() const = 0;
  // What a checkpoint's model.safetensors holds.
  virtual NamedTensors checkpoint_tensors() const = 0;
  // Restores what checkpoint_tensors() saved. UserError naming the file and the tensor for a
  // missing, unexpected or wrong-shaped one.
  virtual void load_checkpoint(const SafetensorsFile& file) = 0;
  // Puts the EMA's averaged trainable tensors (ema.safetensors) in place of the trained ones.
  virtual void load_averaged(const SafetensorsFile& file);
  // Files a checkpoint holds for users beside model.safetensors (a LoRA's files in the layouts
  // programs load), by file name.
  struct ExportFile {
    NamedTensors tensors;
    std::map<std::string, std::string> metadata;
  };
  virtual std::map<std::string, ExportFile> export_files(int64_t step) const { return {}; }
  virtual bool has_export_files() const { return false; }
  // Text files a checkpoint holds beside them (a ControlNet's diffusers config.json), by name.
  virtual std::map<std::string, std::string> export_texts() const { return {}; }
  // The ControlNet whose residuals every transformer call takes (method controlnet), else null.
  virtual FluxControlNetImpl* controlnet() { return nullptr; }
  // Called before each training micro-batch's forward (counter = step x grad_accum + micro): a
  // method with dropout seeds the device's default generator, which it draws from, so that the
  // masks depend on (seed, counter) only and a resumed run draws the same ones.
  virtual void begin_micro_batch(uint64_t counter) {}
  // "full fine-tune: 52 of 110 tensors, 1,234,567 of 2,345,678 parameters train".
  virtual std::string describe() const = 0;
  int64_t trainable_parameters() const;
  int64_t total_parameters();
};

// method: full. `train_blocks` patterns (select_parameters) choose what trains; `save_frozen`
// makes checkpoints complete even when only some parameters train.
class FullFineTune : public TrainedModel {
 public:
  FullFineTune(Flux transformer, const std::vector<std::string>& train_blocks, bool save_frozen);
  std::string method() const override { return "full"; }
  FluxImpl& transformer() override { return *transformer_; }
  const AdamW::Named& trainable() const override { return trainable_; }
  bool saves_complete_model() const override { return complete_; }
  NamedTensors checkpoint_tensors() const override;
  void load_checkpoint(const SafetensorsFile& file) override;
  std::string describe() const override;

 private:
  Flux transformer_;
  AdamW::Named trainable_;
  bool all_train_ = true, complete_ = true;
  int64_t total_tensors_ = 0;
};

}  // namespace fluxtrain
