// Held-out caption evaluation on shapes (see shapes_eval.h).
#include "train/shapes_eval.h"

#include <filesystem>
#include <fstream>

#include "core/log.h"
#include "data/shape_judge.h"
#include "data/shapes.h"
#include "io/image.h"

namespace fluxtrain {
namespace fs = std::filesystem;

nlohmann::json evaluate_shapes(Pipeline& pipe, const SampleOptions& options, int64_t per_caption,
                               const std::string& out_dir) {
  const auto combos = ShapesDataset::held_out_combinations();
  std::vector<std::string> prompts;
  std::vector<ShapeAttributes> wanted;
  for (const auto& c : combos)
    for (int64_t k = 0; k < per_caption; ++k) {
      prompts.push_back(shape_caption(c));
      wanted.push_back(c);
    }
  // Generate in chunks; image i's noise depends only on (seed, i).
  std::vector<torch::Tensor> images;
  const size_t chunk = 64;
  for (size_t start = 0; start < prompts.size(); start += chunk) {
    std::vector<std::string> part(prompts.begin() + start,
                                  prompts.begin() + std::min(prompts.size(), start + chunk));
    SampleOptions o = options;
    o.seed = options.seed + start;  // offsets keep every image's noise distinct
    images.push_back(generate_images(pipe, part, o));
  }
  auto all = torch::cat(images, 0);
  auto score = score_samples(all, wanted);
  fs::create_directories(out_dir);
  const std::string grid_path = (fs::path(out_dir) / "heldout.png").string();
  write_png(grid_path, to_uint8_hwc(make_grid(all, per_caption, 2, 0.5f)),
            {{"Description", "fluxtrain held-out captions, one row per caption"},
             {"Captions", [&] {
                std::string s;
                for (const auto& c : combos) s += shape_caption(c) + "\n";
                return s;
              }()}});
  nlohmann::json out = score.to_json();
  out["captions"] = combos.size();
  out["images_per_caption"] = per_caption;
  out["steps"] = options.steps;
  out["grid"] = grid_path;
  std::ofstream(fs::path(out_dir) / "eval.json") << out.dump(2) << "\n";
  log_info("held-out captions: {} x {} images -> colour {:.1f}%, position {:.1f}%, shape {:.1f}% "
           "(all three {:.1f}%, found {:.1f}%); grid {}",
           combos.size(), per_caption, 100 * score.colour, 100 * score.position, 100 * score.shape,
           100 * score.all, 100 * score.found, grid_path);
  return out;
}

}  // namespace fluxtrain
