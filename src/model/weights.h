// Module weights <-> named tensors (safetensors files), by the module's own parameter names.
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "io/safetensors.h"

namespace fluxtrain {

// Parameters and buffers by name (detached, as stored).
NamedTensors module_tensors(const torch::nn::Module& module);
// Copies every parameter of `module` from `file` (converted to the parameter's dtype and device).
// A missing tensor, a wrong shape, or (strict) a tensor the module does not have is a UserError
// naming the file and the key.
void load_module_tensors(torch::nn::Module& module, const SafetensorsFile& file,
                         bool strict = true);

}  // namespace fluxtrain
