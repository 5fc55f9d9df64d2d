// Merging LoRA adapters into weights (see lora_merge.h).
#include "model/lora_merge.h"

#include <fmt/ranges.h>

#include <cstdlib>
#include <set>
#include <unordered_map>

#include "core/device.h"
#include "core/errors.h"
#include "core/log.h"
#include "model/lora_adapter.h"
#include "model/weights.h"

namespace fluxtrain {

int64_t merge_lora(NamedTensors& bfl, const LoraWeights& lora, double strength) {
  std::unordered_map<std::string, torch::Tensor*> by_name;
  for (auto& [name, t] : bfl) by_name[name] = &t;
  torch::NoGradGuard no_grad;
  int64_t merged = 0;
  for (const auto& m : lora.modules) {
    auto it = by_name.find(m.module + ".weight");
    if (it == by_name.end())
      user_error("{}: has an adapter on '{}', a layer this model does not have", lora.origin,
                 m.module);
    torch::Tensor& w = *it->second;
    if (w.size(0) != m.up.size(0) || w.size(1) != m.down.size(1))
      user_error("{}: the adapter on '{}' is for a [{}, {}] weight; the model's is {}", lora.origin,
                 m.module, m.up.size(0), m.down.size(1), shape_str(w.sizes()));
    const auto wf = w.to(torch::kFloat);
    const auto delta = m.delta().to(w.device());
    const auto change =
        m.magnitude.defined() ? adapted_weight(wf, delta, m.magnitude.to(w.device())) - wf : delta;
    w.copy_((wf + strength * change).to(w.scalar_type()));
    ++merged;
  }
  return merged;
}

LoraSpec parse_lora_spec(const std::string& value) {
  LoraSpec s{value, 1.0};
  const auto colon = value.rfind(':');
  if (colon == std::string::npos) return s;
  const std::string tail = value.substr(colon + 1);
  char* end = nullptr;
  const double v = std::strtod(tail.c_str(), &end);
  if (tail.empty() || end != tail.c_str() + tail.size())
    return s;  // a ':' in the path itself (no scale given)
  s.path = value.substr(0, colon);
  s.strength = v;
  return s;
}

void merge_lora_file(torch::nn::Module& model, const LoraSpec& spec) {
  const LoraWeights lora = read_lora_file(spec.path);
  NamedTensors tensors = module_tensors(model);  // views of the parameters: merged in place
  const int64_t n = merge_lora(tensors, lora, spec.strength);
  std::set<int64_t> ranks;
  for (const auto& m : lora.modules) ranks.insert(m.rank());
  log_info("lora {}: {} layout, {} layers, rank {}{}, strength {}{}", spec.path,
           fmt::join(lora.layouts, "+"), n, fmt::join(ranks, "/"), lora.dora() ? " (DoRA)" : "",
           spec.strength,
           lora.text_encoder_tensors
               ? fmt::format("; {} text-encoder tensors not applied", lora.text_encoder_tensors)
               : std::string());
}

}  // namespace fluxtrain
