// DreamBooth class images (see class_images.h).
#include "train/class_images.h"

#include <filesystem>

#include "core/errors.h"
#include "core/log.h"
#include "core/rng.h"
#include "data/image_source.h"
#include "io/image.h"
#include "sample/sampler.h"

namespace fluxtrain {
namespace fs = std::filesystem;

int64_t count_class_images(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return 0;
  int64_t n = 0;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec))
    if (!it->is_directory() && has_image_extension(it->path().filename().string())) ++n;
  if (ec) user_error("class_data {}: cannot list ({})", dir, ec.message());
  return n;
}

int64_t ensure_class_images(Pipeline& pipe, const ClassImageOptions& o) {
  const int64_t have = count_class_images(o.dir);
  if (have >= o.wanted) return 0;
  std::error_code ec;
  fs::create_directories(o.dir, ec);
  if (ec) user_error("class_data {}: cannot create ({})", o.dir, ec.message());
  const int64_t missing = o.wanted - have;
  log_info(
      "class images: {} has {} of num_class_images {}; generating {} with the base model "
      "(\"{}\")",
      o.dir, have, o.wanted, missing, o.prompt);
  SampleOptions so = default_sample_options(pipe.preset);
  so.height = so.width = o.resolution;
  if (o.steps > 0) so.steps = o.steps;
  int64_t made = 0;
  for (int64_t k = 0; made < missing; ++k) {
    const fs::path path = fs::path(o.dir) / fmt::format("class-{:06d}.png", k);
    if (fs::exists(path, ec)) continue;  // written by an earlier, interrupted generation
    so.seed = derive_seed(o.seed, static_cast<uint64_t>(RngStream::kClassImages),
                          static_cast<uint64_t>(k));
    const auto image = generate_images(pipe, {o.prompt}, so);  // [1, 3, H, W] in [-1, 1]
    const std::string tmp = path.string() + ".tmp";
    write_png(tmp, to_uint8_hwc(image[0]),
              {{"prompt", o.prompt},
               {"seed", std::to_string(so.seed)},
               {"Software", "fluxtrain " FLUXTRAIN_COMMIT}});
    fs::rename(tmp, path, ec);
    if (ec) user_error("{}: cannot rename into place ({})", path.string(), ec.message());
    ++made;
    log_info("class images: {}/{} {}", made, missing, path.string());
  }
  return made;
}

}  // namespace fluxtrain
