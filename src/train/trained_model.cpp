// Training methods as model parts (see trained_model.h).
#include "train/trained_model.h"

#include <fnmatch.h>

#include <set>

#include "core/device.h"
#include "core/errors.h"
#include "core/log.h"
#include "model/weights.h"

namespace fluxtrain {

namespace {

bool pattern_selects(const std::string& pattern, const std::string& name) {
  for (size_t end = name.find('.');; end = name.find('.', end + 1)) {
    const std::string prefix = end == std::string::npos ? name : name.substr(0, end);
    if (fnmatch(pattern.c_str(), prefix.c_str(), 0) == 0) return true;
    if (end == std::string::npos) return false;
  }
}

}  // namespace

std::vector<std::string> select_parameters(const std::vector<std::string>& names,
                                           const std::vector<std::string>& patterns,
                                           const std::string& key) {
  if (patterns.empty()) return names;
  std::vector<std::string> out;
  std::vector<bool> used(patterns.size(), false);
  for (const auto& n : names) {
    bool selected = false;
    for (size_t p = 0; p < patterns.size(); ++p)
      if (pattern_selects(patterns[p], n)) selected = used[p] = true;
    if (selected) out.push_back(n);
  }
  for (size_t p = 0; p < patterns.size(); ++p)
    if (!used[p])
      user_error(
          "{}: pattern '{}' selects no {} (names are BFL's: double_blocks.N, "
          "single_blocks.N, img_in, txt_in, time_in, vector_in, guidance_in, final_layer)",
          key, patterns[p], key == "train_blocks" ? "parameter" : "layer");
  return out;
}

void TrainedModel::load_averaged(const SafetensorsFile& file) {
  load_module_tensors(transformer(), file, /*strict=*/false);
}

void load_named_tensors(const SafetensorsFile& file, const AdamW::Named& tensors,
                        const std::string& why) {
  std::set<std::string> expected;
  for (const auto& [name, p] : tensors) expected.insert(name);
  for (const auto& n : file.names())
    if (!expected.count(n))
      user_error("{}: holds '{}', which this run does not train ({})", file.path(), n, why);
  torch::NoGradGuard no_grad;
  for (const auto& [name, p] : tensors) {
    if (!file.contains(name))
      user_error("{}: has no tensor '{}', which this run trains ({})", file.path(), name, why);
    auto t = file.load(name, p.scalar_type(), p.device());
    if (t.sizes() != p.sizes())
      user_error("{}: tensor '{}' has shape {}, expected {}", file.path(), name,
                 shape_str(t.sizes()), shape_str(p.sizes()));
    auto dst = p;
    dst.copy_(t);
  }
}

int64_t TrainedModel::trainable_parameters() const {
  int64_t n = 0;
  for (const auto& [name, p] : trainable()) n += p.numel();
  return n;
}

int64_t TrainedModel::total_parameters() {
  int64_t n = 0;
  for (const auto& p : transformer().parameters()) n += p.numel();
  return n;
}

FullFineTune::FullFineTune(Flux transformer, const std::vector<std::string>& train_blocks,
                           bool save_frozen)
    : transformer_(std::move(transformer)) {
  std::vector<std::string> names;
  for (const auto& kv : transformer_->named_parameters()) names.push_back(kv.key());
  total_tensors_ = static_cast<int64_t>(names.size());
  const auto selected = select_parameters(names, train_blocks);
  const std::set<std::string> chosen(selected.begin(), selected.end());
  for (auto& kv : transformer_->named_parameters()) {
    const bool train = chosen.count(kv.key()) > 0;
    kv.value().set_requires_grad(train);
    if (train) trainable_.emplace_back(kv.key(), kv.value());
  }
  all_train_ = trainable_.size() == names.size();
  complete_ = all_train_ || save_frozen;
}

NamedTensors FullFineTune::checkpoint_tensors() const {
  if (complete_) return module_tensors(*transformer_);
  NamedTensors out;
  for (const auto& [name, p] : trainable_) out.emplace_back(name, p.detach());
  return out;
}

void FullFineTune::load_checkpoint(const SafetensorsFile& file) {
  const auto names = file.names();
  const std::set<std::string> stored(names.begin(), names.end());
  if (stored.size() == static_cast<size_t>(total_tensors_) || complete_) {
    load_module_tensors(*transformer_, file);
    return;
  }
  load_named_tensors(file, trainable_, "train_blocks differs from the run that wrote it");
}

std::string FullFineTune::describe() const {
  int64_t total = 0, trained = 0;
  for (const auto& p : transformer_->parameters()) total += p.numel();
  for (const auto& [n, p] : trainable_) trained += p.numel();
  if (all_train_) return fmt::format("full: all {} parameters train", format_thousands(total));
  return fmt::format("full: {} of {} tensors ({} of {} parameters) train, the rest frozen{}",
                     trainable_.size(), total_tensors_, format_thousands(trained),
                     format_thousands(total),
                     complete_ ? "; checkpoints hold the frozen ones too" : "");
}

}  // namespace fluxtrain
