// Counter-based randomness: every random draw in a run comes from a generator seeded by
// (run seed, stream, counter). Resuming needs only the counters, never a generator's state, and
// each rank or step gets an independent stream.
#pragma once
#include <torch/torch.h>

#include <cstdint>

namespace fluxtrain {

// SplitMix64 finaliser: a well-mixed 64-bit hash.
inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

inline uint64_t derive_seed(uint64_t seed, uint64_t stream, uint64_t counter = 0) {
  return mix64(mix64(seed ^ mix64(stream)) ^ counter);
}

// Named streams so that two uses never share a generator by accident.
enum class RngStream : uint64_t {
  kNoise = 1,
  kTimestep = 2,
  kCaptionDropout = 3,
  kData = 4,
  kValidation = 5,
  kInit = 6,
  kSample = 7,
  kShuffle = 8,
  kAugment = 9,   // random crops and flips of training images, by sample position
  kLatent = 10,   // draws from a VAE posterior (cached mean and log-variance), by sample position
  kDropout = 11,  // dropout inside the model (LoRA adapters), by micro-batch
  kClassImages = 12,  // DreamBooth class images generated before training, by image number
};

inline at::Generator make_generator(uint64_t seed, RngStream stream, uint64_t counter = 0) {
  return at::make_generator<at::CPUGeneratorImpl>(
      derive_seed(seed, static_cast<uint64_t>(stream), counter));
}

}  // namespace fluxtrain
