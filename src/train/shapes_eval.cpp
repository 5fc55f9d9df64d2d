// Held-out caption evaluation on shapes (see shapes_eval.h).
#include "train/shapes_eval.h"

#include <filesystem>
#include <fstream>

#include "core/log.h"
#include "data/shape_judge.h"
#include "data/shapes.h"
#include "io/image.h"
#include "io/text_render.h"

namespace fluxtrain {
namespace fs = std::filesystem;

namespace {

struct Scored {
  torch::Tensor images;
  ShapeScore score;
  nlohmann::json json;
};

// Samples `per_caption` images of each combination and judges them.
Scored sample_and_score(Pipeline& pipe, const SampleOptions& options, int64_t per_caption,
                        const std::vector<ShapeAttributes>& combos) {
  std::vector<std::string> prompts;
  std::vector<ShapeAttributes> wanted;
  for (const auto& c : combos)
    for (int64_t k = 0; k < per_caption; ++k) {
      prompts.push_back(shape_caption(c));
      wanted.push_back(c);
    }
  std::vector<torch::Tensor> images;
  const size_t chunk = 64;
  for (size_t start = 0; start < prompts.size(); start += chunk) {
    std::vector<std::string> part(prompts.begin() + start,
                                  prompts.begin() + std::min(prompts.size(), start + chunk));
    SampleOptions o = options;
    o.seed = options.seed + start;  // image i's noise depends only on (seed, i)
    images.push_back(generate_images(pipe, part, o));
  }
  Scored s;
  s.images = torch::cat(images, 0);
  s.score = score_samples(s.images, wanted);
  s.json = s.score.to_json();
  // Shape confusion: rows = wanted shape, columns = judged shape (last column: not found).
  std::vector<std::vector<int64_t>> confusion(kNumShapes, std::vector<int64_t>(kNumShapes + 1, 0));
  for (size_t i = 0; i < wanted.size(); ++i) {
    const auto& j = s.score.judgements[i];
    confusion[wanted[i].shape][j.found && j.shape >= 0 ? j.shape : kNumShapes] += 1;
  }
  s.json["shape_confusion"] = confusion;
  return s;
}

}  // namespace

nlohmann::json evaluate_shapes(Pipeline& pipe, const SampleOptions& options, int64_t per_caption,
                               const std::string& out_dir) {
  const auto held_out = ShapesDataset::held_out_combinations();
  auto h = sample_and_score(pipe, options, per_caption, held_out);
  // The same number of training (seen) combinations, spread over the list, for comparison.
  const auto seen_all = ShapesDataset::training_combinations();
  std::vector<ShapeAttributes> seen;
  for (size_t i = 0; i < held_out.size(); ++i)
    seen.push_back(seen_all[i * seen_all.size() / held_out.size()]);
  SampleOptions so = options;
  so.seed = options.seed + 1000003;
  auto s = sample_and_score(pipe, so, per_caption, seen);

  fs::create_directories(out_dir);
  const std::string grid_path = (fs::path(out_dir) / "heldout.png").string();
  // Small images are enlarged (nearest neighbour) so that the grid can be looked at.
  const int64_t zoom = std::max<int64_t>(1, 96 / h.images.size(-1));
  auto shown = h.images.repeat_interleave(zoom, 2).repeat_interleave(zoom, 3);
  std::string captions;
  std::vector<std::string> labels;
  for (const auto& c : held_out) {
    captions += shape_caption(c) + "\n";
    labels.push_back(shape_caption(c));
  }
  write_png(grid_path, to_uint8_hwc(make_labelled_grid(shown, per_caption, labels, 2, 0.5f)),
            {{"Description", "fluxtrain held-out captions, one row per caption"},
             {"Captions", captions}});
  nlohmann::json out = h.json;
  out["captions"] = held_out.size();
  out["images_per_caption"] = per_caption;
  out["steps"] = options.steps;
  out["cfg_scale"] = options.cfg_scale;
  out["grid"] = grid_path;
  out["seen_combinations"] = s.json;
  std::ofstream(fs::path(out_dir) / "eval.json") << out.dump(2) << "\n";
  log_info(
      "held-out captions: {} x {} images -> colour {:.1f}%, position {:.1f}%, shape {:.1f}% "
      "(all three {:.1f}%, found {:.1f}%); grid {}",
      held_out.size(), per_caption, 100 * h.score.colour, 100 * h.score.position,
      100 * h.score.shape, 100 * h.score.all, 100 * h.score.found, grid_path);
  log_info("seen combinations, for comparison: colour {:.1f}%, position {:.1f}%, shape {:.1f}%",
           100 * s.score.colour, 100 * s.score.position, 100 * s.score.shape);
  return out;
}

}  // namespace fluxtrain
