// method: lora (see lora_model.h).
#include "train/lora_model.h"

#include <ATen/CPUGeneratorImpl.h>

#include <map>
#include <mutex>
#include <regex>
#include <set>

#include "core/device.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/rng.h"

namespace fluxtrain {
namespace {

std::map<std::string, LinearImpl*> linear_layers(FluxImpl& model) {
  std::map<std::string, LinearImpl*> out;
  for (const auto& [name, layer] : flux_linear_layers(model)) out[name] = layer;
  return out;
}

bool in_preset(const std::string& preset, const std::string& name) {
  static const std::regex attn(
      R"(^(double_blocks\.[0-9]+\.(img|txt)_attn\.(qkv|proj)|single_blocks\.[0-9]+\.linear[12])$)");
  static const std::regex mlp(R"(^double_blocks\.[0-9]+\.(img|txt)_mlp\.[02]$)");
  const bool block = is_flux_block_name(name);
  if (preset == "attn") return std::regex_match(name, attn);
  if (preset == "attn_mlp") return std::regex_match(name, attn) || std::regex_match(name, mlp);
  if (preset == "blocks") return block;
  return true;  // all
}

}  // namespace

std::vector<std::string> lora_target_layers(FluxImpl& model,
                                            const std::vector<std::string>& targets) {
  std::vector<std::string> names;
  for (const auto& [name, layer] : flux_linear_layers(model)) names.push_back(name);
  return lora_target_layers(names, targets);
}

std::vector<std::string> lora_target_layers(const std::vector<std::string>& names,
                                            const std::vector<std::string>& targets) {
  std::set<std::string> chosen;
  std::vector<std::string> patterns;
  for (const auto& t : targets) {
    if (t == "attn" || t == "attn_mlp" || t == "blocks" || t == "all") {
      for (const auto& n : names)
        if (in_preset(t, n)) chosen.insert(n);
    } else {
      patterns.push_back(t);
    }
  }
  if (!patterns.empty())
    for (const auto& n : select_parameters(names, patterns, "lora_targets")) chosen.insert(n);
  std::vector<std::string> out;
  for (const auto& n : names)
    if (chosen.count(n)) out.push_back(n);
  if (out.empty())
    user_error("lora_targets: [{}] selects no linear layer (presets: attn, attn_mlp, blocks, all)",
               fmt::join(targets, ", "));
  return out;
}

LoraFineTune::LoraFineTune(Flux transformer, const LoraOptions& o)
    : transformer_(std::move(transformer)), options_(o) {
  for (auto& p : transformer_->parameters()) p.set_requires_grad(false);
  auto linears = linear_layers(*transformer_);
  std::optional<LoraWeights> init;
  if (!o.init_from.empty()) {
    init = read_lora_file(o.init_from);
    for (const auto& m : init->modules) layers_.push_back(m.module);
  } else {
    layers_ = lora_target_layers(*transformer_, o.targets);
  }
  auto gen = at::detail::createCPUGenerator(o.seed);
  for (const auto& name : layers_) {
    auto it = linears.find(name);
    if (it == linears.end())
      user_error("lora_init: {} has an adapter on '{}', a layer this model does not have",
                 o.init_from, name);
    LinearImpl& layer = *it->second;
    LoraAdapterOptions ao = o.adapter;
    const LoraModuleWeights* from = init ? init->find(name) : nullptr;
    if (from) {
      ao.rank = from->rank();
      ao.alpha = from->alpha;
      ao.dora = from->magnitude.defined();
      if (from->up.size(0) != layer.out_features || from->down.size(1) != layer.in_features)
        user_error(
            "lora_init: {}: the adapter on '{}' is for a [{}, {}] weight; the model's is "
            "[{}, {}]",
            o.init_from, name, from->up.size(0), from->down.size(1), layer.out_features,
            layer.in_features);
    }
    auto a = std::make_shared<LoraAdapter>(layer, ao, gen);
    if (from) {
      torch::NoGradGuard no_grad;
      a->down.copy_(from->down);
      a->up.copy_(from->up);
      if (ao.dora) a->magnitude.copy_(from->magnitude);
    }
    layer.adapter = a;
    adapters_.push_back(a);
    trainable_.emplace_back(name + ".lora_A.weight", a->down);
    trainable_.emplace_back(name + ".lora_B.weight", a->up);
    if (ao.dora) trainable_.emplace_back(name + ".lora_magnitude_vector", a->magnitude);
  }
  const bool dora = std::any_of(adapters_.begin(), adapters_.end(),
                                [](const auto& a) { return a->magnitude.defined(); });
  if (dora && options_.formats != std::vector<LoraLayout>{LoraLayout::kDiffusers}) {
    log_warn(
        "lora_init {}: DoRA adapters; checkpoints hold the diffusers layout only (the "
        "comfyui and kohya layouts have no DoRA magnitude)",
        o.init_from);
    options_.formats = {LoraLayout::kDiffusers};
  }
}

NamedTensors LoraFineTune::checkpoint_tensors() const {
  NamedTensors out;
  for (const auto& [name, p] : trainable_) out.emplace_back(name, p.detach());
  return out;
}

void LoraFineTune::load_checkpoint(const SafetensorsFile& file) {
  load_named_tensors(file, trainable_,
                     "lora_targets, lora_rank, use_dora or lora_init differ from the run that "
                     "wrote it");
}

LoraWeights LoraFineTune::weights() const {
  LoraWeights w;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const auto& a = *adapters_[i];
    LoraModuleWeights m;
    m.module = layers_[i];
    m.down = a.down.detach().to(torch::kCPU, torch::kFloat).clone();
    m.up = a.up.detach().to(torch::kCPU, torch::kFloat).clone();
    m.alpha = a.options.alpha;
    if (a.magnitude.defined()) m.magnitude = a.magnitude.detach().to(torch::kCPU).clone();
    w.modules.push_back(std::move(m));
  }
  return w;
}

std::map<std::string, TrainedModel::ExportFile> LoraFineTune::export_files(int64_t step) const {
  const LoraWeights w = weights();
  LoraDescription d = options_.description;
  d.steps = step;
  std::map<std::string, ExportFile> out;
  for (auto layout : options_.formats)
    out[lora_file_name(layout)] = {lora_layout_tensors(w, layout, options_.save_dtype),
                                   lora_layout_metadata(w, layout, d)};
  return out;
}

void LoraFineTune::begin_micro_batch(uint64_t counter) {
  if (options_.adapter.dropout <= 0) return;
  auto gen = at::globalContext().defaultGenerator(transformer_->img_in->weight.device());
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_current_seed(
      derive_seed(options_.seed, static_cast<uint64_t>(RngStream::kDropout), counter));
}

std::string LoraFineTune::describe() const {
  int64_t total = 0;
  for (const auto& p : transformer_->parameters()) total += p.numel();
  const int64_t trained = trainable_parameters();
  const auto& a = adapters_.front()->options;
  const bool uniform = std::all_of(adapters_.begin(), adapters_.end(), [&](const auto& x) {
    return x->options.rank == a.rank && x->options.alpha == a.alpha;
  });
  return fmt::format(
      "{}: {} on {} linear layers ({}); {} parameters train ({:.2f} % of the {} frozen base "
      "parameters){}",
      a.dora ? "lora (DoRA)" : "lora",
      uniform ? fmt::format("rank {}, alpha {} (scale {})", a.rank, a.alpha,
                            a.alpha / static_cast<double>(a.rank))
              : std::string("mixed ranks"),
      layers_.size(),
      options_.init_from.empty() ? fmt::format("{}", fmt::join(options_.targets, ", "))
                                 : "from " + options_.init_from,
      format_thousands(trained), 100.0 * static_cast<double>(trained) / static_cast<double>(total),
      format_thousands(total), a.dropout > 0 ? fmt::format("; dropout {}", a.dropout) : "");
}

}  // namespace fluxtrain
