// The trainer, assembled from the parts it is handed (torchtitan's TrainSpec + train_step): a
// pipeline (the frozen text and image encoders around the transformer), the model part (what
// trains, what is frozen, what a checkpoint saves), a loader, a validation set, an optimizer, a
// schedule, an EMA and a distributed context. Its loop reads: next batch, step, maybe validate,
// maybe sample, maybe save. Everything a checkpoint records is one TrainState.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "core/config.h"
#include "data/data_report.h"
#include "data/loader.h"
#include "dist/context.h"
#include "model/flux_call.h"
#include "sample/pipeline.h"
#include "train/ema.h"
#include "train/optimizer.h"
#include "train/optimizer_in_backward.h"
#include "train/resume.h"
#include "train/schedule.h"
#include "train/train_options.h"
#include "train/train_state.h"
#include "train/trained_model.h"

namespace fluxtrain {

struct TrainResult {
  std::string run_dir;
  int64_t steps = 0;               // optimizer steps completed in total
  double last_loss = 0;            // mean loss of the last step
  std::optional<double> val_loss;  // last validation
  std::optional<double> best_val_loss;
  bool reached_target = false;
  bool interrupted = false;
  nlohmann::json eval;  // final evaluation (empty if none)
};

struct TrainParts {
  Pipeline pipeline;                    // transformer + text conditioner + autoencoder
  std::unique_ptr<TrainedModel> model;  // the pipeline's transformer, as the method trains it
  std::unique_ptr<Loader> data;
  std::shared_ptr<const Dataset> validation;  // MLPerf validation samples (null: none)
  std::unique_ptr<AdamW> optimizer;
  std::unique_ptr<Ema> ema;  // null: no EMA
  LrSchedule schedule;
  std::shared_ptr<DistContext> dist;
  std::shared_ptr<DataReport> report;  // what the data could not use
  std::string data_format;             // shapes, fashion-mnist, imagefolder, ...
  int64_t resolution = 0;              // training image side in pixels (buckets vary around it)
};

class Trainer {
 public:
  Trainer(TrainParts parts, TrainOptions options, std::string run_dir, std::string config_yaml);
  ~Trainer();
  // A new run's state, or `from`'s with the weights, optimizer and EMA restored from it.
  TrainState fresh_state() const;
  TrainState restore(const ResumePoint& from);
  // Trains from `state` to options.steps (or a stop, or the target validation loss), then runs
  // the final evaluation.
  TrainResult run(TrainState state);

 private:
  struct StepStats;
  // A batch as the transformer takes it: latent tokens [B, L, C] (and the latent's size for the
  // position ids) and the captions' text embeddings.
  struct Encoded {
    torch::Tensor x0;
    TextEmbeddings cond;
    int64_t latent_height = 0, latent_width = 0;
    torch::Tensor control;  // [B, L, C] the control images' latents, packed (ControlNet runs)
  };
  // The ControlNet's part in a call on `e` (none without a ControlNet).
  ControlInput control_of(const Encoded& e);
  Encoded encode(const Batch& batch);
  StepStats train_step(int64_t step);
  double validate();
  void save(const std::string& dir);
  void sample_validation_prompts(int64_t step);
  void choose_final_evaluation();  // eval_kind_: shapes, captions or none (UserError if unfit)
  void final_evaluation(TrainResult& result);

  TrainParts p_;
  TrainOptions o_;
  std::unique_ptr<OptimizerInBackward> in_backward_;  // optimizer_in_backward only
  std::string run_dir_, config_yaml_;
  TrainState state_;
  double guidance_ = 0;
  std::string eval_kind_;
  std::vector<std::string> eval_captions_;
};

// `fluxtrain train` with the configuration the user gave: resumes when `resume` is set (with the
// run's own configuration, see resume.h), builds the parts (train_spec.h) and runs.
TrainResult train(const Config& config);

// Installs SIGINT/SIGTERM handlers: the first signal asks the loop to stop after the current step
// and write a checkpoint; a second one ends the process.
void install_stop_handlers();

}  // namespace fluxtrain
