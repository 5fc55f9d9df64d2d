// Training configuration schema (see train_config.h).
#include "train/train_config.h"

#include "core/errors.h"
#include "model/presets.h"
#include "sample/model_files.h"
#include "train/data_spec.h"

namespace fluxtrain {

ConfigSchema train_schema() {
  ConfigSchema s;
  s.string("run", "name", "default", "run name: outputs go to <output_dir>/<name>/<id>/")
      .string("run", "output_dir", "runs", "root of run directories")
      .integer("run", "seed", 0, "seed of every random draw (init, data, noise, timesteps)", 0)
      .string("run", "device", "auto", "auto | cpu | cuda | cuda:N")
      .integer("run", "threads", 0, "CPU threads for tensor math (0 = all cores)", 0)
      .integer("run", "log_every", 10, "progress line every N steps", 1)
      .integer("run", "profile_steps", 0,
               "profile the last N training steps (never the process's first, unless it is the "
               "only one) with libtorch's profiler: profile.csv and profile.txt (top 15 ops) in "
               "the run directory (0 = off)",
               0)
      .path("run", "resume",
            "continue a run: its directory (the newest readable checkpoint, with the run's own "
            "configuration) or one checkpoint directory",
            true)
      .boolean("run", "override", false,
               "with resume: allow changes to keys that change what the run computes (steps of "
               "a decaying schedule, model, data, optimiser, ...)")
      .string("model", "model", "tiny",
              fmt::format("a preset ({}; random initialisation) or a FLUX.1 model to fine-tune: a "
                          "diffusers repository, BFL files' folder, Hugging Face cache entry or "
                          "transformer .safetensors file",
                          fmt::join(model_preset_names(), ", ")));
  add_model_file_keys(s, "model", "with a model path");
  s.choice("model", "method", "full", {"full", "lora", "controlnet"},
           "what trains: full = the parameters train_blocks selects; lora = LoRA/DoRA adapters on "
           "the layers lora_targets selects, the base frozen; controlnet = a FLUX ControlNet "
           "made from the base's first blocks (control images: control_images), the base frozen")
      .choice("model", "base_weights", "dense", {"dense", "int8", "fp8"},
              "storage of the frozen base's block weights (method lora, controlnet): dense (the "
              "`weights` dtype), int8 (per-output-channel scale) or fp8 (E4M3, per-output-channel "
              "scale), dequantized on the fly; read straight from the checkpoint")
      .integer("model", "blocks_to_swap", 0,
               "block swap (kohya's): N keeps the linear weights of the last N / 2 double and "
               "2 x (N - N / 2) single blocks in host memory and streams each block to the device "
               "as it runs (0: off; at most 38 for FLUX.1)",
               0)
      .integer("controlnet", "controlnet_double_blocks", 2,
               "the ControlNet's double blocks (diffusers' num_layers), copied from the base's "
               "first ones",
               0)
      .integer("controlnet", "controlnet_single_blocks", 4,
               "the ControlNet's single blocks (diffusers' num_single_layers)", 0)
      .path("controlnet", "controlnet_init",
            "a diffusers controlnet/ directory (or a controlnet run's checkpoint) to start from",
            true)
      .choice("controlnet", "controlnet_save_dtype", "bf16", {"bf16", "fp16", "fp32"},
              "dtype of the diffusers ControlNet file checkpoints hold")
      .integer("lora", "lora_rank", 16, "rank r of each adapter", 1)
      .real("lora", "lora_alpha", 0.0,
            "adapter scale alpha / r; 0 = alpha equal to the rank (scale 1)", 0.0)
      .real("lora", "lora_dropout", 0.0, "dropout on each adapter's input while training", 0.0,
            0.99)
      .boolean("lora", "use_dora", false,
               "DoRA: a learned magnitude per output channel (weight-decomposed LoRA, PEFT's "
               "form; saved in the diffusers layout only)")
      .list("lora", "lora_targets",
            "layers that get adapters: presets attn, attn_mlp, blocks (every block linear, "
            "modulation included), all (+ embedders, final layer), or BFL name patterns as "
            "train_blocks takes them; empty = attn_mlp")
      .path("lora", "lora_init",
            "start the adapters from a LoRA file (diffusers, kohya or ComfyUI layout): its "
            "layers, ranks, alphas and weights",
            true)
      .string("lora", "lora_format", "all",
              "LoRA files each checkpoint holds, by what loads them: comfyui "
              "(lora_comfyui.safetensors), diffusers (pytorch_lora_weights.safetensors), kohya "
              "(lora_kohya.safetensors; loads in ComfyUI and diffusers), all; comma-separated")
      .choice("lora", "lora_save_dtype", "bf16", {"bf16", "fp16", "fp32"},
              "dtype of those files' tensors (model.safetensors keeps fp32 for resuming)");
  s.list("model", "train_blocks",
         "parameters that train, as name patterns over BFL names (a pattern matches a name or "
         "any dotted prefix of it; * ? [] as in shell globs): e.g. [\"double_blocks.1*\", "
         "\"single_blocks.*\", \"final_layer\"]; empty = all. The rest is frozen: no "
         "gradients, no optimizer state, not in checkpoints unless save_frozen")
      .boolean("model", "save_frozen", false,
               "checkpoints also hold the frozen parameters (a complete transformer)")
      .choice("model", "precision", "fp32", {"fp32", "bf16"},
              "compute precision (bf16: autocast with fp32 weights and optimizer state)")
      .choice("model", "weights", "fp32", {"fp32", "bf16"},
              "dtype of the transformer's weights (bf16 needs precision bf16)")
      .choice("model", "optimizer_state", "fp32", {"fp32", "bf16", "int8"},
              "AdamW's moments: fp32, bf16, or int8 = 8-bit block-wise (bitsandbytes' 8-bit "
              "AdamW: a quarter of fp32's memory; tensors under 4096 values stay fp32)")
      .integer("model", "optimizer_block_size", 256,
               "values per absmax block of int8 moments (bitsandbytes: 256, formerly 2048)", 16)
      .boolean("model", "gradient_checkpointing", false,
               "recompute each block's activations in backward: less memory, about 1/3 more "
               "compute")
      .integer("model", "gradient_checkpointing_every", 1,
               "with gradient_checkpointing: checkpoint one block in k (blocks 0, k, 2k, ... of "
               "the double then single blocks; SimpleTuner's gradient_checkpointing_interval)",
               1)
      .boolean("model", "zero_init", true, "adaLN-zero init of modulation and output layers")
      .boolean(
          "model", "stand_in_encoders", false,
          "flux-dev/schnell without weights: hashed-word text and a projection autoencoder of the "
          "real shapes (benchmarks)")
      .integer("data", "resolution", 0, "image side in pixels (0 = the preset's default)", 0)
      .choice("data", "latent_sampling", "sample", {"sample", "mean"},
              "latents from the VAE posterior: a new sample per draw (as diffusers, kohya and "
              "MLPerf train), or its mean")
      .real("data", "caption_dropout", 0.0, "probability of training on the empty caption", 0.0,
            1.0)
      .integer("train", "steps", 600, "optimizer steps", 1)
      .integer("train", "batch_size", 32, "samples per micro-batch", 1)
      .integer("train", "grad_accum", 1, "micro-batches per optimizer step", 1)
      .real("train", "lr", 1e-3, "peak learning rate", 0.0)
      .real("train", "beta1", 0.9, "AdamW beta1", 0.0, 1.0)
      .real("train", "beta2", 0.999, "AdamW beta2", 0.0, 1.0)
      .real("train", "eps", 1e-8, "AdamW epsilon", 0.0)
      .real("train", "weight_decay", 0.0, "AdamW decoupled weight decay", 0.0)
      .choice("train", "lr_schedule", "cosine", {"constant", "warmup_hold", "cosine", "linear"},
              "learning-rate schedule")
      .integer("train", "warmup_steps", 50, "linear warm-up steps", 0)
      .real("train", "min_lr_ratio", 0.0, "floor of cosine/linear decay as a fraction of lr", 0.0,
            1.0)
      .real("train", "ema_decay", 0.0,
            "keep an exponential moving average of the weights for validation, evaluation and "
            "sampling (0 = off; e.g. 0.999)",
            0.0, 1.0)
      .boolean("train", "ema_on_cpu", false,
               "keep the EMA in CPU memory (frees the device of a copy of the trainable weights)")
      .real("train", "max_grad_norm", 1.0,
            "clip the global gradient norm (0 = no clipping); with optimizer_in_backward each "
            "parameter's own norm",
            0.0)
      .real("train", "memory_budget_gb", 0.0,
            "device memory to fit (GiB): turns on the savers you left at their defaults, in "
            "order (checkpointing, 8-bit AdamW, int8 base, step in backward), until the memory "
            "plan fits; 0 = off",
            0.0)
      .boolean("train", "optimizer_in_backward", false,
               "update each parameter as soon as backward has its gradient and free the gradient "
               "(less memory; no grad_accum; max_grad_norm clips per parameter)")
      .choice("train", "timestep_sampling", "logit_normal",
              {"uniform", "logit_normal", "shift", "flux_shift"},
              "how training timesteps are drawn")
      .real("train", "logit_mean", 0.0, "mean of the normal behind logit_normal/shift/flux_shift")
      .real("train", "logit_std", 1.0, "std of that normal", 0.0)
      .real("train", "shift", 3.0, "constant shift for timestep_sampling=shift", 0.0)
      .real("train", "guidance", -1.0, "guidance input while training (-1 = the preset's default)")
      .integer("validation", "val_every", 0,
               "validation loss every N steps, MLPerf style (0 = only at the end)", 0)
      .integer("validation", "val_every_samples", 0,
               "validation loss every N training samples instead (MLPerf counts samples: "
               "262144); 0 = use val_every",
               0)
      .integer("validation", "val_every_epochs", 0,
               "validation loss every N epochs of the training data instead; 0 = use val_every", 0)
      .integer("validation", "val_samples", 256, "validation samples (t = i/8 for i = index mod 8)",
               0)
      .real("validation", "target_val_loss", 0.0,
            "stop when validation loss reaches this (0 = off)", 0.0)
      .list("validation", "validation_prompts",
            "prompts sampled every sample_every steps and at the end, saved as "
            "samples/step-N.png (a labelled grid) and samples/step-N/<k>.png")
      .integer("validation", "sample_every", 0,
               "steps between validation_prompts samples (0 = only at the end)", 0)
      .boolean("checkpoint", "save_checkpoints", true,
               "write checkpoints at all (off for benchmarks of models too big to save quickly)")
      .integer("checkpoint", "ckpt_every", 0, "checkpoint every N steps (0 = only at the end)", 0)
      .integer("checkpoint", "keep_last", 3, "step checkpoints kept (0 = all)", 0)
      .integer("checkpoint", "checkpoints_total_limit", -1,
               "diffusers' name for keep_last (when >= 0 it wins)", -1)
      .real("run", "price_per_hour", 0.0,
            "price of one device-hour: the run summary adds the run's cost (0 = none)", 0.0)
      .boolean("checkpoint", "save_best", true,
               "keep checkpoints/best with the lowest validation loss")
      .choice("eval", "final_eval", "auto", {"auto", "shapes", "captions", "none"},
              "after training: shapes = sample the held-out captions and judge them; captions = "
              "a captioned grid of samples of each of the data's captions (at most 64 of them, "
              "e.g. Fashion-MNIST's classes); auto = shapes for the shapes, captions where the "
              "data has at most 64 captions, else none")
      .integer("eval", "eval_images_per_caption", 2, "images per caption in the evaluation", 1)
      .integer("eval", "sample_steps", 0, "sampler steps for evaluation (0 = the preset's)", 0)
      .integer("eval", "sample_seed", 12345, "seed of evaluation noise", 0)
      .real("eval", "cfg_scale", 1.0,
            "classifier-free guidance scale for evaluation samples (1 = off)", 0.0);
  add_data_keys(s);
  // Keys a resumed run may change without --override: they change how the run is carried out,
  // watched or saved, not the weights it computes.
  s.operational({"name",
                 "lora_format",
                 "lora_save_dtype",
                 "controlnet_save_dtype",
                 "output_dir",
                 "device",
                 "threads",
                 "log_every",
                 "profile_steps",
                 "resume",
                 "override",
                 "val_every",
                 "val_every_samples",
                 "val_every_epochs",
                 "validation_prompts",
                 "sample_every",
                 "save_checkpoints",
                 "ckpt_every",
                 "keep_last",
                 "checkpoints_total_limit",
                 "price_per_hour",
                 "save_best",
                 "final_eval",
                 "eval_images_per_caption",
                 "sample_steps",
                 "sample_seed",
                 "cfg_scale",
                 "workers",
                 "prefetch",
                 "strict"});
  return s;
}

}  // namespace fluxtrain
