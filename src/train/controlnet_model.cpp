// method: controlnet (see controlnet_model.h).
#include "train/controlnet_model.h"

#include "core/errors.h"

namespace fluxtrain {

ControlNetFineTune::ControlNetFineTune(Flux transformer, const ControlNetOptions& options)
    : transformer_(std::move(transformer)), controlnet_(nullptr), options_(options) {
  for (auto& p : transformer_->parameters()) p.set_requires_grad(false);
  const torch::Device device = transformer_->img_in->weight.device();
  if (options.init_from.empty()) {
    controlnet_ =
        FluxControlNet(transformer_->params, options.double_blocks, options.single_blocks);
    controlnet_->copy_from(*transformer_);  // (float32 copies of the base's blocks)
  } else {
    const ControlNetFiles files = inspect_controlnet(options.init_from);
    check_controlnet_fits(files.params, transformer_->params,
                          "controlnet_init '" + options.init_from + "'");
    controlnet_ =
        FluxControlNet(files.params, files.params.depth, files.params.depth_single_blocks);
    load_controlnet(*controlnet_, files);
  }
  controlnet_->to(device);  // trains in float32 (master weights), under the run's autocast
  controlnet_->set_activation_checkpointing(transformer_->activation_checkpointing(),
                                            transformer_->checkpoint_every());
  controlnet_->train();
  for (auto& item : controlnet_->named_parameters())
    trainable_.push_back({item.key(), item.value()});
}

NamedTensors ControlNetFineTune::checkpoint_tensors() const {
  NamedTensors out;
  for (const auto& [name, p] : trainable_) out.push_back({name, p.detach()});
  return out;
}

void ControlNetFineTune::load_checkpoint(const SafetensorsFile& file) {
  load_named_tensors(
      file, trainable_,
      "the ControlNet's blocks (controlnet_double_blocks / controlnet_single_blocks) "
      "differ from the run that wrote it");
}

std::string ControlNetFineTune::describe() const {
  int64_t n = 0;
  for (const auto& [name, p] : trainable_) n += p.numel();
  return fmt::format(
      "controlnet: {} double + {} single blocks, {} parameters train; the base "
      "transformer is frozen",
      controlnet_->params.depth, controlnet_->params.depth_single_blocks, n);
}

std::map<std::string, TrainedModel::ExportFile> ControlNetFineTune::export_files(
    int64_t step) const {
  ExportFile f;
  f.tensors = controlnet_to_diffusers(*controlnet_.ptr(), options_.save_dtype);
  f.metadata = {{"format", "pt"}, {"fluxtrain.steps", std::to_string(step)}};
  return {{kDiffusersWeights, std::move(f)}};
}

std::map<std::string, std::string> ControlNetFineTune::export_texts() const {
  return {{"config.json", controlnet_diffusers_config(controlnet_->params).dump(2) + "\n"}};
}

}  // namespace fluxtrain
