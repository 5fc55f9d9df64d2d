// The typed options of `fluxtrain train`, read from the resolved configuration once (as the
// libtorch examples' Options structs are): nothing below the command reads a config key by name.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "sample/model_files.h"
#include "train/controlnet_model.h"
#include "train/data_spec.h"
#include "train/flow_matching.h"
#include "train/lora_model.h"
#include "train/optimizer.h"
#include "train/schedule.h"

namespace fluxtrain {

struct TrainOptions {
  // run
  std::string name, output_dir;
  uint64_t seed = 0;
  torch::Device device = torch::kCPU;
  int64_t threads = 0, log_every = 10, profile_steps = 0;
  std::string resume;
  bool override_changes = false;

  // model
  std::string model;             // a preset name, or a model path (absolute)
  bool model_is_path = false;    // looks_like_model_path(model)
  ModelFileOverrides overrides;  // with a model path
  std::string method = "full";
  LoraOptions lora;  // method lora (seed and description filled in by build_trained_model)
  ControlNetOptions controlnet;                    // method controlnet
  BaseWeights base_weights = BaseWeights::kDense;  // frozen bases (lora, controlnet): 8-bit blocks
  int64_t blocks_to_swap = 0;                      // model/block_swap.h
  std::vector<std::string> train_blocks;           // name patterns; empty = all
  bool save_frozen = false;
  torch::ScalarType precision = torch::kFloat, weights = torch::kFloat;
  bool gradient_checkpointing = false, zero_init = true, stand_in_encoders = false;
  int64_t gradient_checkpointing_every = 1;  // checkpoint one block in k

  // data
  DataOptions data;
  int64_t resolution = 0;      // 0 = the model's default
  bool sample_latents = true;  // latent_sampling: sample (else the posterior mean)
  double caption_dropout = 0;

  // optimisation
  int64_t steps = 0, batch_size = 1, grad_accum = 1;
  double lr = 0;
  AdamWOptions adamw;
  LrSchedule schedule;
  double ema_decay = 0, max_grad_norm = 0;
  bool optimizer_in_backward = false;  // train/optimizer_in_backward.h
  bool ema_on_cpu = false;
  TimestepOptions timesteps;
  double guidance = -1;  // -1: the model's training default

  // validation
  int64_t val_every = 0, val_every_samples = 0, val_every_epochs = 0, val_samples = 0;
  double target_val_loss = 0;
  std::vector<std::string> validation_prompts;
  int64_t sample_every = 0;

  // checkpoints
  bool save_checkpoints = true, save_best = true;
  int64_t ckpt_every = 0, keep_last = 0;
  double price_per_hour = 0;  // for the run summary's cost

  // evaluation (and the sampling defaults a checkpoint records)
  std::string final_eval = "auto";
  int64_t eval_images_per_caption = 2, sample_steps = 0;
  uint64_t sample_seed = 0;
  double cfg_scale = 1;

  // UserError for combinations that cannot work (bf16 weights with fp32 compute, both validation
  // intervals, a model path with random-init keys, ...).
  static TrainOptions from_config(const Config& config);
};

// Makes a model path in `config` absolute (so a resumed run, sample and convert find it from any
// directory); preset names are left alone.
void normalise_model_path(Config& config);

}  // namespace fluxtrain
