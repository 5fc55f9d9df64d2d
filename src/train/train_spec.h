// What a run is assembled from, built from its options (torchtitan's TrainSpec): the pipeline
// (a preset's random-initialised transformer and built-in encoders, or a real FLUX.1 model's
// weights, VAE and text encoders), the data, the model part for the method, the optimizer, the
// EMA, the schedule and the distributed context.
#pragma once
#include <memory>
#include <vector>

#include "data/dataset.h"
#include "sample/pipeline.h"
#include "train/train_options.h"
#include "train/trainer.h"

namespace fluxtrain {

// The transformer, text conditioner (a CachedTextConditioner) and autoencoder for `o.model`,
// weights in `o.weights`; encoders in bf16 on CUDA, fp32 on the CPU.
Pipeline build_pipeline(const TrainOptions& o);

// The transformer alone, as a run starts from it: a preset's seeded random initialisation (with
// zero_init), or a model path's weights, in `o.weights` on `o.device`.
Flux build_transformer(const TrainOptions& o);

// The model part for `o.method` over the pipeline's transformer.
std::unique_ptr<TrainedModel> build_trained_model(const TrainOptions& o, Flux transformer);

// Everything a Trainer needs. Text known up front (the datasets' captions, the validation
// prompts, the empty prompt) is encoded once; a real model's text encoders are then freed.
TrainParts build_train_parts(const TrainOptions& o);

}  // namespace fluxtrain
