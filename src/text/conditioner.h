// TextConditioner: the interface every text encoder stack implements (T5 + CLIP for real
// checkpoints, HashedWordConditioner built in): prompts -> token embeddings and a pooled vector.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace fluxtrain {

// What the transformer is conditioned on.
struct TextEmbeddings {
  torch::Tensor txt;  // [B, T, context_dim] float32, T = max_tokens (zero-padded)
  torch::Tensor vec;  // [B, vec_dim] float32 (pooled embedding)
};

// A frozen text encoder. The empty prompt "" encodes to the "empty conditioning" used for caption
// dropout during training and for the unconditional branch of classifier-free guidance.
class TextConditioner {
 public:
  virtual ~TextConditioner() = default;
  virtual TextEmbeddings encode(const std::vector<std::string>& prompts, torch::Device device) = 0;
  virtual int64_t context_dim() const = 0;  // width of txt tokens (T5: 4096)
  virtual int64_t vec_dim() const = 0;      // width of the pooled vector (CLIP-L: 768)
  virtual int64_t max_tokens() const = 0;   // T
  virtual std::string name() const = 0;
};

}  // namespace fluxtrain
