// Module weights <-> named tensors (see weights.h).
#include "model/weights.h"

#include <set>

#include "core/device.h"
#include "core/errors.h"

namespace fluxtrain {

NamedTensors module_tensors(const torch::nn::Module& module) {
  NamedTensors out;
  for (const auto& kv : module.named_parameters()) out.emplace_back(kv.key(), kv.value().detach());
  for (const auto& kv : module.named_buffers()) out.emplace_back(kv.key(), kv.value().detach());
  return out;
}

void load_module_tensors(torch::nn::Module& module, const SafetensorsFile& file, bool strict) {
  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  auto load_into = [&](const std::string& name, torch::Tensor& dst) {
    if (!file.contains(name)) user_error("{}: tensor '{}' is missing", file.path(), name);
    const auto& info = file.info(name);
    if (c10::IntArrayRef(info.shape) != dst.sizes())
      user_error("{}: tensor '{}' has shape {}, the model expects {}", file.path(), name,
                 shape_str(info.shape), shape_str(dst.sizes()));
    dst.copy_(file.load(name, dst.scalar_type(), dst.device()));
    used.insert(name);
  };
  for (auto& kv : module.named_parameters()) load_into(kv.key(), kv.value());
  for (auto& kv : module.named_buffers()) load_into(kv.key(), kv.value());
  if (strict)
    for (const auto& name : file.names())
      if (!used.count(name))
        user_error("{}: tensor '{}' is not part of this model (wrong model preset?)", file.path(),
                   name);
}

}  // namespace fluxtrain
