// Images sampled while training: the sampler settings the run's evaluation uses (recorded in
// every checkpoint, so `sample --checkpoint` starts from them), and validation_prompts sampled
// every sample_every steps into samples/step-N/ with a captioned grid samples/step-N.png.
#pragma once
#include <nlohmann/json.hpp>
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

// images [N, 3, H, W] in [-1, 1] as a PNG of rows of `per_row` images, each row captioned (small
// images enlarged so that a row is at least 256 px wide); the captions go in a text chunk too.
void write_captioned_grid(const torch::Tensor& images, int64_t per_row,
                          const std::vector<std::string>& captions, const std::string& path,
                          const std::string& description);

// The most distinct captions a final evaluation samples one row each of (final_eval captions).
constexpr size_t kMaxEvaluationCaptions = 64;

// The final evaluation of a dataset with a small set of captions (Fashion-MNIST's classes):
// `per_caption` samples of each, as samples_dir/captions.png (one captioned row per caption).
// Returns what eval.json records.
nlohmann::json write_caption_samples(Pipeline& pipeline, const std::vector<std::string>& captions,
                                     int64_t per_caption, const SampleOptions& options,
                                     const std::string& samples_dir);

}  // namespace fluxtrain
