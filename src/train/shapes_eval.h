// Evaluation on the built-in shapes data: sample every held-out caption, judge each image from
// its pixels (colour, position, shape) and report accuracies, with a grid of the samples.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "sample/pipeline.h"
#include "sample/sampler.h"

namespace fluxtrain {

// Generates `per_caption` images for each held-out caption, writes out_dir/heldout.png (one row
// per caption) and out_dir/eval.json, logs the accuracies and returns the JSON.
nlohmann::json evaluate_shapes(Pipeline& pipeline, const SampleOptions& options,
                               int64_t per_caption, const std::string& out_dir);

}  // namespace fluxtrain
