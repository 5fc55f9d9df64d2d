// DreamBooth prior preservation: when the class folder holds fewer than `wanted` images, the
// missing ones are generated with the base model (the class prompt, one image per seed) before
// training, as diffusers' DreamBooth scripts do. Each image k is `class-<k, 6 digits>.png`, drawn
// from seed (run seed, k) alone and written atomically, so an interrupted generation resumes
// with the next k and the images do not depend on where it stopped.
#pragma once
#include <cstdint>
#include <string>

#include "sample/pipeline.h"

namespace fluxtrain {

struct ClassImageOptions {
  std::string dir, prompt;
  int64_t wanted = 0;
  int64_t resolution = 0;  // pixels per side
  int64_t steps = 0;       // sampler steps (0: the model's default)
  uint64_t seed = 0;
};

// The images under `dir` (recursively, as the image folder reader sees them); 0 when it is
// missing.
int64_t count_class_images(const std::string& dir);
// Generates what `dir` lacks; returns how many images were written.
int64_t ensure_class_images(Pipeline& pipeline, const ClassImageOptions& options);

}  // namespace fluxtrain
