// Building a run's datasets from its data keys (see data_spec.h).
#include "train/data_spec.h"

#include <filesystem>

#include "core/errors.h"
#include "data/fashion_mnist.h"
#include "data/image_dataset.h"
#include "data/image_folder.h"
#include "data/latent_cache.h"
#include "data/parquet_source.h"
#include "data/shapes.h"
#include "data/subset.h"
#include "data/webdataset.h"

namespace fluxtrain {
namespace fs = std::filesystem;

void add_data_keys(ConfigSchema& s) {
  s.string("data", "data", "shapes",
           "training data: shapes (built in), fashion-mnist (Debian's dataset-fashion-mnist; or "
           "fashion-mnist:DIR), or a path: an image folder (metadata.jsonl/json, side-car .txt "
           "captions, or instance_prompt), webdataset .tar shards (a file, a folder or a glob), "
           "Hugging Face .parquet files (a file or a folder), or a `fluxtrain prepare` cache")
      .choice("data", "data_format", "auto",
              {"auto", "shapes", "fashion-mnist", "imagefolder", "webdataset", "parquet", "cache"},
              "how to read `data` (auto: from what it is)")
      .integer("data", "dataset_size", 1000000, "examples per epoch of the procedural shapes", 1)
      .string("data", "instance_prompt", "",
              "one caption for every training image (DreamBooth's instance prompt)")
      .path("data", "class_data",
            "DreamBooth prior preservation: a folder of class images (created when "
            "num_class_images asks for more than it holds)",
            false)
      .integer("data", "num_class_images", 0,
               "with class_data: generate the class images the folder lacks with the base model "
               "(class_prompt) before training, up to this many (0 = use what is there)",
               0)
      .string("data", "class_prompt", "", "the caption of every class image")
      .real("data", "prior_loss_weight", 1.0, "loss weight of the class images", 0.0)
      .string("data", "caption_column", "",
              "metadata/parquet/json caption field (default: text, caption or prompt)")
      .string("data", "image_column", "image", "parquet image column (a struct with bytes)")
      .string("data", "caption_extension", ".txt", "side-car caption files beside the images")
      .boolean("data", "buckets", true,
               "aspect-ratio buckets (batches of one shape); off: every image centre-cropped "
               "square")
      .integer("data", "bucket_step", 0, "bucket sides in steps of (0: the model's patch, 16 px)",
               0)
      .integer("data", "bucket_min_side", 0, "smallest bucket side (0: resolution / 2)", 0)
      .integer("data", "bucket_max_side", 0, "largest bucket side (0: 2 x resolution)", 0)
      .real("data", "max_upscale", 4.0,
            "the most an image is enlarged to fill its bucket (smaller buckets beyond)", 1.0)
      .boolean("data", "random_crop", false, "crop at a random offset (else centred)")
      .boolean("data", "random_flip", false, "mirror left-right with probability 1/2")
      .string("data", "val_data", "", "validation images: a path read like `data`")
      .string("data", "control_images", "",
              "ControlNet control images: canny (edges of each training image, computed after its "
              "crop and flip), column (parquet data's conditioning_image_column, one per row), "
              "or a folder holding a control image per training image under the same relative "
              "file name")
      .string("data", "conditioning_image_column", "conditioning_image",
              "parquet data: the column of control images (control_images column; stored as "
              "the image column is: a struct of bytes and path, or bytes)")
      .real("data", "canny_low_threshold", 100.0,
            "Canny's low hysteresis threshold on the L2 Sobel magnitude (0..1442)", 0.0)
      .real("data", "canny_high_threshold", 200.0, "Canny's high hysteresis threshold", 0.0)
      .real("data", "canny_sigma", 1.4, "Gaussian blur before Canny, pixels (0: none)", 0.0)
      .string("data", "val_split", "",
              "validation split of the training data: a fraction (0.05) or a count (50)")
      .boolean("data", "strict", false, "unusable data is an error instead of counted and listed")
      .integer("data", "workers", 2, "loader threads (0: load in the training thread)", 0)
      .integer("data", "prefetch", 4, "batches loaded ahead", 1);
}

DataOptions DataOptions::from_config(const Config& c) {
  DataOptions o;
  o.data = c.s("data");
  o.format = c.s("data_format");
  o.shapes_size = c.i("dataset_size");
  o.instance_prompt = c.s("instance_prompt");
  o.class_data = c.s("class_data");
  o.class_prompt = c.s("class_prompt");
  o.num_class_images = c.i("num_class_images");
  o.prior_loss_weight = c.f("prior_loss_weight");
  o.caption_column = c.s("caption_column");
  o.image_column = c.s("image_column");
  o.caption_extension = c.s("caption_extension");
  o.buckets = c.b("buckets");
  o.bucket_step = c.i("bucket_step");
  o.bucket_min_side = c.i("bucket_min_side");
  o.bucket_max_side = c.i("bucket_max_side");
  o.max_upscale = c.f("max_upscale");
  o.transform.random_crop = c.b("random_crop");
  o.transform.random_flip = c.b("random_flip");
  o.val_data = c.s("val_data");
  o.val_split = c.s("val_split");
  o.control.source = c.s("control_images");
  o.conditioning_image_column = c.s("conditioning_image_column");
  o.control.canny = {c.f("canny_low_threshold"), c.f("canny_high_threshold"), c.f("canny_sigma")};
  o.strict = c.b("strict");
  o.workers = c.i("workers");
  o.prefetch = c.i("prefetch");
  if (o.data.empty()) user_error("--data: expected shapes, fashion-mnist or a path");
  if (o.num_class_images > 0 && o.class_data.empty())
    user_error("num_class_images {}: give class_data, the folder to hold the class images",
               o.num_class_images);
  if (!o.class_data.empty() && o.class_prompt.empty())
    user_error("class_data '{}': give class_prompt, the caption of the class images", o.class_data);
  if (!o.val_data.empty() && !o.val_split.empty())
    user_error("val_data and val_split: give one source of validation data");
  return o;
}

std::string detect_data_format(const DataOptions& o) {
  if (o.format != "auto") return o.format;
  if (o.data == "shapes") return "shapes";
  if (is_latent_cache(o.data)) return "cache";
  if (o.data == "fashion-mnist" || o.data.rfind("fashion-mnist:", 0) == 0) return "fashion-mnist";
  std::error_code ec;
  const fs::path p(o.data);
  auto ext_is = [](const fs::path& f, const char* e) { return f.extension() == e; };
  if (fs::is_regular_file(p, ec)) {
    if (ext_is(p, ".tar")) return "webdataset";
    if (ext_is(p, ".parquet")) return "parquet";
    user_error("data '{}': a file, but neither a .tar shard nor a .parquet file", o.data);
  }
  if (fs::is_directory(p, ec)) {
    bool tar = false, parquet = false;
    for (auto it = fs::recursive_directory_iterator(p, ec); !ec && it != fs::end(it);
         it.increment(ec)) {
      if (it.depth() == 0 && ext_is(it->path(), ".tar")) tar = true;
      if (ext_is(it->path(), ".parquet")) parquet = true;
      if (has_image_extension(it->path().string()) || it->path().filename() == "metadata.jsonl" ||
          it->path().filename() == "metadata.json")
        return "imagefolder";
    }
    if (tar) return "webdataset";
    if (parquet) return "parquet";
    return "imagefolder";
  }
  if (o.data.find_first_of("*?[") != std::string::npos) {
    if (o.data.size() > 4 && o.data.compare(o.data.size() - 4, 4, ".tar") == 0) return "webdataset";
    if (o.data.size() > 8 && o.data.compare(o.data.size() - 8, 8, ".parquet") == 0)
      return "parquet";
  }
  user_error("data '{}': no such file or directory (expected shapes, fashion-mnist or a path)",
             o.data);
}

namespace {

std::shared_ptr<ImageSource> image_source(const std::string& format, const std::string& path,
                                          const DataOptions& o, DataReport& report) {
  if (format == "webdataset")
    return std::make_shared<WebDatasetSource>(find_shards(path), o.caption_column, report);
  if (format == "parquet")
    return std::make_shared<ParquetSource>(
        find_parquet_files(path),
        ParquetSourceOptions{o.image_column, o.caption_column,
                             o.control.source == "column" ? o.conditioning_image_column : ""},
        report);
  ImageFolderOptions fo;
  fo.caption_column = o.caption_column;
  fo.caption_extension = o.caption_extension;
  fo.instance_prompt = o.instance_prompt;
  auto instance = std::make_shared<ImageFolderSource>(path, fo, report);
  if (o.class_data.empty()) return instance;
  ImageFolderOptions co = fo;
  co.instance_prompt = o.class_prompt;
  co.loss_weight = o.prior_loss_weight;
  auto cls = std::make_shared<ImageFolderSource>(o.class_data, co, report);
  return std::make_shared<ConcatSource>(std::vector<std::shared_ptr<ImageSource>>{instance, cls});
}

std::string fashion_dir(const std::string& data) {
  const auto colon = data.find(':');
  return colon == std::string::npos ? kFashionMnistDir : data.substr(colon + 1);
}

ImageDatasetOptions image_dataset_options(const DataOptions& o, int64_t resolution,
                                          int64_t patch_px) {
  ImageDatasetOptions io;
  io.resolution = resolution;
  io.buckets = o.buckets;
  io.bucket.step = o.bucket_step > 0 ? o.bucket_step : patch_px;
  io.bucket.min_side =
      o.bucket_min_side > 0
          ? o.bucket_min_side
          : std::max(io.bucket.step, resolution / 2 / io.bucket.step * io.bucket.step);
  io.bucket.max_side = o.bucket_max_side > 0 ? o.bucket_max_side : 2 * resolution;
  io.bucket.max_upscale = o.max_upscale;
  io.transform = o.transform;
  return io;
}

}  // namespace

std::shared_ptr<const Dataset> build_source_dataset(const DataOptions& o, int64_t resolution,
                                                    int64_t patch_px, uint64_t seed,
                                                    const std::shared_ptr<DataReport>& report,
                                                    std::string* format) {
  *format = detect_data_format(o);
  if (*format == "shapes")
    return std::make_shared<ShapesDataset>("train", resolution, seed, o.shapes_size);
  if (*format == "fashion-mnist")
    return std::make_shared<FashionMnistDataset>(fashion_dir(o.data), "train", resolution);
  if (*format == "cache") user_error("data '{}': already a latent cache", o.data);
  return std::make_shared<ImageDataset>(image_source(*format, o.data, o, *report),
                                        image_dataset_options(o, resolution, patch_px), report);
}

namespace {

TrainData build_images_and_order(const DataOptions& o, int64_t resolution, int64_t patch_px,
                                 uint64_t seed, int64_t batch_size, int64_t val_samples,
                                 int64_t rank, int64_t world) {
  TrainData d;
  d.report = std::make_shared<DataReport>(o.strict);
  d.format = detect_data_format(o);
  SampleOrderOptions order{true, seed, rank, world};
  auto sequential = [&](const std::shared_ptr<const Dataset>& train) {
    order.shuffle = train->wants_shuffle();
    return std::make_shared<SequentialBatches>(SampleOrder(train->size(), order), batch_size);
  };
  if (d.format == "shapes") {
    d.train = std::make_shared<ShapesDataset>("train", resolution, seed, o.shapes_size);
    if (val_samples > 0)
      d.validation = std::make_shared<ShapesDataset>("val", resolution, seed, val_samples);
    d.sampler = sequential(d.train);
    d.describe = d.train->name();
    return d;
  }
  if (d.format == "fashion-mnist") {
    const std::string dir = fashion_dir(o.data);
    d.train = std::make_shared<FashionMnistDataset>(dir, "train", resolution);
    if (val_samples > 0) {
      auto test = std::make_shared<FashionMnistDataset>(dir, "test", resolution, true);
      std::vector<int64_t> first(static_cast<size_t>(std::min(val_samples, test->size())));
      for (size_t i = 0; i < first.size(); ++i) first[i] = static_cast<int64_t>(i);
      d.validation = std::make_shared<SubsetDataset>(test, first, true, "validation");
    }
    d.sampler = sequential(d.train);
    d.describe = d.train->name();
    return d;
  }
  if (d.format == "cache") {
    auto train = std::make_shared<LatentCacheDataset>(o.data, false);
    auto val = std::make_shared<LatentCacheDataset>(o.data, true);
    if (val->size() > 0 && val_samples > 0) d.validation = val;
    d.sampler = std::make_shared<BucketBatches>(train->bucket_ids(), batch_size, order);
    d.train = train;
    d.describe = fmt::format("{}; {} validation examples", train->name(), val->size());
    return d;
  }
  const ImageDatasetOptions io = image_dataset_options(o, resolution, patch_px);
  auto all =
      std::make_shared<ImageDataset>(image_source(d.format, o.data, o, *d.report), io, d.report);
  std::shared_ptr<const Dataset> train = all;
  if (!o.val_split.empty()) {
    auto [tr, va] = split_indices(all->size(), o.val_split, seed);
    if (!va.empty()) {
      train = std::make_shared<SubsetDataset>(all, tr, false, "training");
      d.validation = std::make_shared<SubsetDataset>(all, va, true, "validation");
    }
  } else if (!o.val_data.empty()) {
    DataOptions vo = o;
    vo.data = o.val_data;
    vo.format = "auto";
    vo.class_data.clear();
    auto val = std::make_shared<ImageDataset>(
        image_source(detect_data_format(vo), o.val_data, vo, *d.report), io, d.report);
    std::vector<int64_t> every(static_cast<size_t>(val->size()));
    for (size_t i = 0; i < every.size(); ++i) every[i] = static_cast<int64_t>(i);
    d.validation = std::make_shared<SubsetDataset>(val, every, true, "validation");
  }
  // Buckets: batches of one shape, planned per epoch over the training indices.
  const std::vector<int64_t> all_buckets = all->bucket_ids();
  const auto* sub = dynamic_cast<const SubsetDataset*>(train.get());
  std::vector<int64_t> bucket_of;
  for (int64_t i = 0; i < train->size(); ++i)
    bucket_of.push_back(all_buckets[static_cast<size_t>(sub ? sub->base_index(i) : i)]);
  d.sampler = std::make_shared<BucketBatches>(bucket_of, batch_size, order);
  d.train = train;
  d.describe = fmt::format("{}; buckets {}", train->name(), all->bucket_summary());
  return d;
}

}  // namespace

ControlImageOptions control_image_options(const DataOptions& o, const std::string& format) {
  ControlImageOptions c = o.control;
  c.transform = o.transform;
  if (c.source == "column") {
    DataOptions val = o;
    val.data = o.val_data;
    val.format = "auto";  // (as the validation set is read)
    if (format != "parquet")
      user_error(
          "control_images column: the control images come from a parquet column "
          "(conditioning_image_column '{}'), but `data` is {}",
          o.conditioning_image_column, format);
    if (!o.val_data.empty() && detect_data_format(val) != "parquet")
      user_error("control_images column: val_data '{}' is {}, not parquet with a '{}' column",
                 o.val_data, detect_data_format(val), o.conditioning_image_column);
    if (!o.class_data.empty())
      user_error("control_images column: class_data '{}' (a folder) has no control images",
                 o.class_data);
  } else if (c.source != "canny") {
    if (!o.val_data.empty() || !o.class_data.empty())
      user_error(
          "control_images '{}': a control folder mirrors the training folder only; "
          "val_data / class_data have no control images (use val_split, or "
          "control_images canny)",
          c.source);
    if (format != "imagefolder")
      user_error("control_images '{}': a control folder goes with an image folder, `data` is {}",
                 c.source, format);
    c.image_dir = o.data;
  }
  return c;
}

nlohmann::json control_images_settings(const DataOptions& o) {
  if (o.control.source.empty()) return nullptr;
  nlohmann::json j = {{"source", o.control.source}};
  if (o.control.source == "canny")
    j["canny"] = {{"low_threshold", o.control.canny.low_threshold},
                  {"high_threshold", o.control.canny.high_threshold},
                  {"sigma", o.control.canny.sigma}};
  else if (o.control.source == "column")
    j["column"] = o.conditioning_image_column;
  else
    j["source"] = fs::absolute(o.control.source).lexically_normal().string();
  return j;
}

TrainData build_train_data(const DataOptions& o, int64_t resolution, int64_t patch_px,
                           uint64_t seed, int64_t batch_size, int64_t val_samples, int64_t rank,
                           int64_t world) {
  TrainData d =
      build_images_and_order(o, resolution, patch_px, seed, batch_size, val_samples, rank, world);
  if (d.format == "cache") {
    // The cache's control latents (prepare --control_images) go with the same control_images.
    const auto cached =
        read_latent_cache_manifest(o.data, false).json.value("control", nlohmann::json(nullptr));
    const auto wanted = control_images_settings(o);
    if (!wanted.is_null() && cached != wanted)
      user_error(
          "control_images: the latent cache {} holds {} but this run asks for {}; prepare the "
          "cache with the run's control_images (and canny thresholds), or give the cache's",
          o.data, cached.is_null() ? "no control latents" : "control latents of " + cached.dump(),
          wanted.dump());
    if (!wanted.is_null()) d.describe += fmt::format("; control latents: {}", cached.dump());
    return d;
  }
  if (o.control.source.empty()) return d;
  const ControlImageOptions c = control_image_options(o, d.format);
  d.train = with_control_images(d.train, c);
  d.validation = with_control_images(d.validation, c);
  d.describe += fmt::format("; control images: {}", c.source);
  return d;
}

}  // namespace fluxtrain
