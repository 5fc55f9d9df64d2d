// The data a run trains and validates on, from its `data` keys: the built-in shapes, Debian's
// Fashion-MNIST, or a path (an image folder, webdataset .tar shards, Hugging Face .parquet files,
// with DreamBooth's class folder beside the instance images), with the batch sampler that suits
// it (aspect-ratio buckets for images of several shapes) and the report of what could not be used.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "core/config.h"
#include "data/batch_sampler.h"
#include "data/buckets.h"
#include "data/control_images.h"
#include "data/data_report.h"
#include "data/dataset.h"
#include "data/transforms.h"

namespace fluxtrain {

struct DataOptions {
  std::string data = "shapes";  // shapes | fashion-mnist[:DIR] | a path
  std::string format = "auto";  // auto | shapes | fashion-mnist | imagefolder | webdataset |
                                // parquet | cache
  int64_t shapes_size = 1000000;
  std::string instance_prompt, class_data, class_prompt;
  double prior_loss_weight = 1.0;
  int64_t num_class_images = 0;  // generate up to this many class images before training
  std::string caption_column, image_column = "image", caption_extension = ".txt";
  std::string conditioning_image_column = "conditioning_image";  // control_images column
  bool buckets = true;
  int64_t bucket_step = 0, bucket_min_side = 0, bucket_max_side = 0;  // 0: from the model
  double max_upscale = 4.0;
  TransformOptions transform;
  std::string val_data, val_split;
  bool strict = false;
  int64_t workers = 2, prefetch = 4;
  ControlImageOptions control;  // ControlNet runs: where control images come from

  static DataOptions from_config(const Config& config);
};

// The `data` keys (added to the train and prepare schemas).
void add_data_keys(ConfigSchema& schema);

// The format `data` names with format auto: shapes, fashion-mnist, webdataset (a .tar, a folder
// of them, a glob), parquet (a .parquet, a folder holding them), or imagefolder.
std::string detect_data_format(const DataOptions& o);

// The whole dataset `data` names, unsplit (what `prepare` encodes): shapes' or Fashion-MNIST's
// training split, or the images of a folder, shards or parquet files. `format` is set to what
// detect_data_format found.
std::shared_ptr<const Dataset> build_source_dataset(const DataOptions& o, int64_t resolution,
                                                    int64_t patch_px, uint64_t seed,
                                                    const std::shared_ptr<DataReport>& report,
                                                    std::string* format);

struct TrainData {
  std::shared_ptr<const Dataset> train, validation;  // validation may be null
  std::shared_ptr<const BatchSampler> sampler;       // over train
  std::shared_ptr<DataReport> report;
  std::string format;
  std::string describe;  // for the log: source, counts, buckets
};

// `patch_px` is the model's pixels per token side (bucket step); `val_samples` is the shapes'
// (and Fashion-MNIST's) validation count; rank and world shard the sampler.
// The control images `o` asks for (control_images), checked against the data's `format` (a
// control folder goes with an image folder, column with parquet; UserError otherwise).
ControlImageOptions control_image_options(const DataOptions& o, const std::string& format);
// What a latent cache records of them (null for none): the source, canny's thresholds and
// sigma, the column, or the folder's absolute path. A run on the cache must ask for the same.
nlohmann::json control_images_settings(const DataOptions& o);

TrainData build_train_data(const DataOptions& o, int64_t resolution, int64_t patch_px,
                           uint64_t seed, int64_t batch_size, int64_t val_samples, int64_t rank,
                           int64_t world);

}  // namespace fluxtrain
