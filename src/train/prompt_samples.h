// Images sampled while training: the sampler settings the run's evaluation uses (recorded in
// every checkpoint, so `sample --checkpoint` starts from them), and validation_prompts sampled
// every sample_every steps into samples/step-N/ with a captioned grid samples/step-N.png.
#pragma once
#include <string>
#include <vector>

#include "sample/pipeline.h"
#include "sample/sampler.h"
#include "train/train_options.h"

namespace fluxtrain {

// The preset's sampling defaults at `resolution` x `resolution`, with the run's sample_steps,
// sample_seed, cfg_scale and compute precision.
SampleOptions evaluation_sample_options(const Pipeline& pipeline, const TrainOptions& o,
                                        int64_t resolution);

// One image per prompt (image i from noise (options.seed, i)), written as
// samples_dir/step-NNNNNN/<i>.png (prompt and settings in the PNG's text chunks) and
// samples_dir/step-NNNNNN.png, one captioned row per prompt. Returns the grid's path.
std::string write_prompt_samples(Pipeline& pipeline, const std::vector<std::string>& prompts,
                                 const SampleOptions& options, const std::string& samples_dir,
                                 int64_t step);

}  // namespace fluxtrain
