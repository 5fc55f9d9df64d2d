// A text conditioner that remembers what it has encoded: each distinct prompt goes through the
// encoders once and its embeddings (txt [T, ctx], vec [vec]) are kept on the CPU. When a
// dataset's captions are a known set, the trainer encodes them all up front and releases the
// encoders (T5-XXL alone is 9.5 GB in bf16); a prompt seen later reloads them, with a warning.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "text/conditioner.h"

namespace fluxtrain {

class CachedTextConditioner : public TextConditioner {
 public:
  using Loader = std::function<std::shared_ptr<TextConditioner>()>;
  // `encoder` is the live one; `reload` builds it again after release_encoder() (may be empty:
  // then the encoder cannot be released). Embeddings are kept in `storage_dtype` (bf16 for
  // encoders that compute in bf16 loses nothing).
  CachedTextConditioner(std::shared_ptr<TextConditioner> encoder, Loader reload,
                        torch::ScalarType storage_dtype = torch::kFloat, int64_t batch = 8);
  // Without any encoder: every prompt must be insert()ed (a latent cache's captions); a missing
  // one is a UserError naming it, followed by `missing_hint`.
  CachedTextConditioner(int64_t context_dim, int64_t vec_dim, int64_t max_tokens, std::string name,
                        std::string missing_hint);
  // Adds a prompt's encodings (txt [T, ctx], vec [vec]).
  void insert(const std::string& prompt, const torch::Tensor& txt, const torch::Tensor& vec);

  // Rows of the cached (or now encoded) embeddings, float32 on `device`; the same values, row
  // for row, as the encoder gives each prompt.
  TextEmbeddings encode(const std::vector<std::string>& prompts, torch::Device device) override;
  // Encodes every prompt not cached yet, `batch` at a time.
  void precompute(const std::vector<std::string>& prompts);
  // Frees the encoder (a no-op without a reload function).
  void release_encoder();
  bool encoder_loaded() const { return encoder_ != nullptr; }
  size_t cached() const { return cache_.size(); }
  bool has(const std::string& prompt) const;

  int64_t context_dim() const override { return context_dim_; }
  int64_t vec_dim() const override { return vec_dim_; }
  int64_t max_tokens() const override { return max_tokens_; }
  std::string name() const override { return name_; }

 private:
  void encode_missing(const std::vector<std::string>& prompts);

  std::shared_ptr<TextConditioner> encoder_;
  Loader reload_;
  torch::ScalarType storage_dtype_;
  int64_t batch_;
  int64_t context_dim_, vec_dim_, max_tokens_;
  std::string name_, missing_hint_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::pair<torch::Tensor, torch::Tensor>> cache_;  // txt, vec
};

}  // namespace fluxtrain
