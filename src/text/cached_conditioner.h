// A text conditioner that remembers what it has encoded: each distinct prompt goes through the
// encoders once and its embeddings (txt [T, ctx], vec [vec]) are kept on the CPU. When a
// dataset's captions are a known set, the trainer encodes them all up front and releases the
// encoders (T5-XXL alone is 9.5 GB in bf16); a prompt seen later reloads them, with a warning.
// Prompts met only on the way through encode() are remembered while they fit in
// kTransientTextBytes (a FLUX.1 T5 sequence is 8 MiB in float32: a dataset of unique captions
// must not pile them all up); beyond that they are encoded each time.
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

constexpr int64_t kTransientTextBytes = int64_t{1} << 30;
// The most a run encodes up front (a dataset's known captions): 8 GiB of host memory.
constexpr int64_t kUpFrontTextBytes = int64_t{8} << 30;

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
  // What one prompt's stored embeddings take.
  int64_t bytes_per_prompt() const;
  // The budget for prompts remembered on the way through encode() (kTransientTextBytes).
  void set_transient_limit(int64_t bytes) { transient_limit_ = bytes; }
  bool has(const std::string& prompt) const;

  int64_t context_dim() const override { return context_dim_; }
  int64_t vec_dim() const override { return vec_dim_; }
  int64_t max_tokens() const override { return max_tokens_; }
  std::string name() const override { return name_; }

 private:
  using Encodings = std::unordered_map<std::string, std::pair<torch::Tensor, torch::Tensor>>;
  // Encodes the prompts not cached yet; kept in cache_ when `keep` or while the transient budget
  // lasts, else returned.
  Encodings encode_missing(const std::vector<std::string>& prompts, bool keep);

  std::shared_ptr<TextConditioner> encoder_;
  Loader reload_;
  torch::ScalarType storage_dtype_;
  int64_t batch_;
  int64_t context_dim_, vec_dim_, max_tokens_;
  std::string name_, missing_hint_;
  mutable std::mutex mutex_;
  Encodings cache_;              // txt, vec
  int64_t transient_bytes_ = 0;  // of the prompts kept without `keep`
  int64_t transient_limit_ = kTransientTextBytes;
};

}  // namespace fluxtrain
