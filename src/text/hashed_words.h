// HashedWordConditioner: a frozen, download-free stand-in for T5 + CLIP. Each word maps to a fixed
// pseudo-random vector generated from a hash of the word, so there is no vocabulary table and
// distinct words get distinct (nearly orthogonal) vectors.
#pragma once
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "text/conditioner.h"

namespace fluxtrain {

// 64-bit FNV-1a hash of a byte string.
uint64_t fnv1a64(std::string_view bytes);

class HashedWordConditioner : public TextConditioner {
 public:
  // Throws UserError for a dimension or max_tokens below 1.
  HashedWordConditioner(int64_t context_dim, int64_t vec_dim, int64_t max_tokens,
                        uint64_t seed = 0);

  // txt: word vectors in order, truncated to max_tokens, zero-padded. vec: the mean of the words'
  // pooled vectors. "" (or a prompt without words) gives all zeros in both.
  TextEmbeddings encode(const std::vector<std::string>& prompts, torch::Device device) override;
  int64_t context_dim() const override { return context_dim_; }
  int64_t vec_dim() const override { return vec_dim_; }
  int64_t max_tokens() const override { return max_tokens_; }
  std::string name() const override { return "hashed-words"; }

  // Lower-cased ASCII words, split on every character that is not alphanumeric (bytes >= 0x80,
  // i.e. UTF-8 text, count as word characters): "A red, circle!" -> {"a", "red", "circle"}.
  static std::vector<std::string> split_words(const std::string& prompt);

  // The fixed vectors of one word (unit RMS): token embedding [context_dim], pooled [vec_dim].
  torch::Tensor token_embedding(const std::string& word) const;
  torch::Tensor pooled_embedding(const std::string& word) const;

 private:
  struct WordVectors {
    torch::Tensor token;   // [context_dim]
    torch::Tensor pooled;  // [vec_dim]
  };
  const WordVectors& word_vectors(const std::string& word);

  int64_t context_dim_, vec_dim_, max_tokens_;
  uint64_t seed_;
  std::mutex mutex_;                                    // encode may be called from loader threads
  std::unordered_map<std::string, WordVectors> cache_;  // a pure function of the word, memoised
};

}  // namespace fluxtrain
