// LoRA adapters applied to FLUX weights: merged into the tensors (sampling with --lora,
// `fluxtrain convert --lora`), several files stacking.
#pragma once
#include <string>

#include "io/safetensors.h"
#include "model/lora_file.h"

namespace fluxtrain {

// Adds strength x each adapter's change to the weights of `bfl` (FluxImpl names; tensors
// modified in place, so module_tensors(model) merges into a model): W += strength * s B A for
// LoRA; for DoRA W += strength * (m / ||W + s B A||_row * (W + s B A) - W). UserError naming the
// file and the layer for an adapter on a layer `bfl` lacks or whose shape differs. Returns the
// number of layers changed.
int64_t merge_lora(NamedTensors& bfl, const LoraWeights& lora, double strength);

// "FILE" or "FILE:scale" (scale a number; default 1).
struct LoraSpec {
  std::string path;
  double strength = 1.0;
};
LoraSpec parse_lora_spec(const std::string& value);

// Reads spec.path (any layout) and merges it into `model`'s weights at spec.strength, logging
// what it merged ("lora FILE: kohya layout, 24 layers, rank 16, strength 0.8").
void merge_lora_file(torch::nn::Module& model, const LoraSpec& spec);

}  // namespace fluxtrain
