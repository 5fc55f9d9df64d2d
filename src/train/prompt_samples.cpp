// Sampling during training (see prompt_samples.h).
#include "train/prompt_samples.h"

#include <filesystem>

#include "core/log.h"
#include "io/image.h"
#include "io/text_render.h"

namespace fluxtrain {
namespace fs = std::filesystem;

SampleOptions evaluation_sample_options(const Pipeline& pipeline, const TrainOptions& o,
                                        int64_t resolution) {
  SampleOptions so = default_sample_options(pipeline.preset);
  so.height = so.width = resolution;
  if (o.sample_steps > 0) so.steps = o.sample_steps;
  so.seed = o.sample_seed;
  so.precision = o.precision;
  so.cfg_scale = o.cfg_scale;
  return so;
}

std::string write_prompt_samples(Pipeline& pipeline, const std::vector<std::string>& prompts,
                                 const SampleOptions& options, const std::string& samples_dir,
                                 int64_t step) {
  const std::string name = fmt::format("step-{:06d}", step);
  const fs::path dir = fs::path(samples_dir) / name;
  fs::create_directories(dir);
  const torch::Tensor images = generate_images(pipeline, prompts, options);  // [P, 3, H, W]
  for (size_t i = 0; i < prompts.size(); ++i)
    write_png((dir / fmt::format("{:02d}.png", i)).string(),
              to_uint8_hwc(images[static_cast<int64_t>(i)]),
              {{"prompt", prompts[i]},
               {"step", std::to_string(step)},
               {"steps", std::to_string(options.steps)},
               {"cfg_scale", fmt::format("{}", options.cfg_scale)},
               {"seed", std::to_string(options.seed)},
               {"Software", "fluxtrain " FLUXTRAIN_COMMIT}});
  // Small images are enlarged (nearest neighbour) so that the grid can be looked at and its
  // captions (one row per prompt) have room: at least 256 px wide.
  const int64_t zoom = std::max<int64_t>(1, (256 + images.size(-1) - 1) / images.size(-1));
  const auto shown = images.repeat_interleave(zoom, 2).repeat_interleave(zoom, 3);
  const std::string grid = (fs::path(samples_dir) / (name + ".png")).string();
  write_png(grid, to_uint8_hwc(make_labelled_grid(shown, 1, prompts, 2, 1.0f)),
            {{"Description", fmt::format("fluxtrain validation prompts at step {}", step)}});
  log_info("step {}: {} validation prompt samples in {}", step, prompts.size(), grid);
  return grid;
}

}  // namespace fluxtrain
