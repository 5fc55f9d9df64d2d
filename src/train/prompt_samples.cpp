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
  const std::string grid = (fs::path(samples_dir) / (name + ".png")).string();
  write_captioned_grid(images, 1, prompts, grid,
                       fmt::format("fluxtrain validation prompts at step {}", step));
  log_info("step {}: {} validation prompt samples in {}", step, prompts.size(), grid);
  return grid;
}

void write_captioned_grid(const torch::Tensor& images, int64_t per_row,
                          const std::vector<std::string>& captions, const std::string& path,
                          const std::string& description) {
  // Small images are enlarged (nearest neighbour) so that the grid can be looked at and its
  // captions have room: each row at least 256 px wide.
  const int64_t row = images.size(-1) * per_row;
  const int64_t zoom = std::max<int64_t>(1, (256 + row - 1) / row);
  const auto shown = images.repeat_interleave(zoom, 2).repeat_interleave(zoom, 3);
  std::string all;
  for (const auto& c : captions) all += c + "\n";
  write_png(path, to_uint8_hwc(make_labelled_grid(shown, per_row, captions, 2, 1.0f)),
            {{"Description", description}, {"Captions", all}});
}

nlohmann::json write_caption_samples(Pipeline& pipeline, const std::vector<std::string>& captions,
                                     int64_t per_caption, const SampleOptions& options,
                                     const std::string& samples_dir) {
  std::vector<std::string> prompts;
  for (const auto& c : captions)
    for (int64_t k = 0; k < per_caption; ++k) prompts.push_back(c);
  std::vector<torch::Tensor> images;
  for (size_t start = 0; start < prompts.size(); start += 64) {  // image i from (seed, i)
    std::vector<std::string> part(prompts.begin() + start,
                                  prompts.begin() + std::min(prompts.size(), start + 64));
    SampleOptions o = options;
    o.seed = options.seed + start;
    images.push_back(generate_images(pipeline, part, o));
  }
  fs::create_directories(samples_dir);
  const std::string grid = (fs::path(samples_dir) / "captions.png").string();
  write_captioned_grid(torch::cat(images), per_caption, captions, grid,
                       "fluxtrain samples, one row per caption");
  log_info("{} captions x {} samples: {}", captions.size(), per_caption, grid);
  return {{"captions", captions},
          {"images_per_caption", per_caption},
          {"grid", grid},
          {"steps", options.steps},
          {"cfg_scale", options.cfg_scale}};
}

}  // namespace fluxtrain
