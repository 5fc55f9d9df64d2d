// HashedWordConditioner: word splitting, hashed word vectors and batch encoding.
#include "text/hashed_words.h"

#include <cctype>

#include "core/errors.h"
#include "core/rng.h"
#include "text/truncation_warning.h"

namespace fluxtrain {

namespace {

// Stream tags for derive_seed: token and pooled vectors of a word are independent draws.
constexpr uint64_t kTokenStream = 0x68772d746f6b656eull;  // "hw-token"
constexpr uint64_t kPooledStream = 0x68772d706f6f6cull;   // "hw-pool"
constexpr size_t kMaxCachedHashedWords = 1 << 16;

// A standard-normal vector from a generator seeded by the word's hash, scaled to unit RMS.
torch::Tensor hashed_vector(const std::string& word, uint64_t seed, uint64_t stream, int64_t dim) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(derive_seed(seed, stream, fnv1a64(word)));
  auto v = torch::randn({dim}, gen, torch::kFloat32);
  return v / v.square().mean().sqrt().clamp_min(1e-12);
}

}  // namespace

uint64_t fnv1a64(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

HashedWordConditioner::HashedWordConditioner(int64_t context_dim, int64_t vec_dim,
                                             int64_t max_tokens, uint64_t seed)
    : context_dim_(context_dim), vec_dim_(vec_dim), max_tokens_(max_tokens), seed_(seed) {
  if (context_dim < 1) user_error("text context_dim {}: expected an integer >= 1", context_dim);
  if (vec_dim < 1) user_error("text vec_dim {}: expected an integer >= 1", vec_dim);
  if (max_tokens < 1) user_error("text max_tokens {}: expected an integer >= 1", max_tokens);
}

std::vector<std::string> HashedWordConditioner::split_words(const std::string& prompt) {
  std::vector<std::string> words;
  std::string word;
  for (unsigned char c : prompt) {
    if (std::isalnum(c) || c >= 0x80) {
      word.push_back(static_cast<char>(std::tolower(c)));
    } else if (!word.empty()) {
      words.push_back(std::move(word));
      word.clear();
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  return words;
}

torch::Tensor HashedWordConditioner::token_embedding(const std::string& word) const {
  return hashed_vector(word, seed_, kTokenStream, context_dim_);
}

torch::Tensor HashedWordConditioner::pooled_embedding(const std::string& word) const {
  return hashed_vector(word, seed_, kPooledStream, vec_dim_);
}

const HashedWordConditioner::WordVectors& HashedWordConditioner::word_vectors(
    const std::string& word) {
  auto it = cache_.find(word);
  if (it != cache_.end()) return it->second;
  if (cache_.size() >= kMaxCachedHashedWords) cache_.clear();
  return cache_.emplace(word, WordVectors{token_embedding(word), pooled_embedding(word)})
      .first->second;
}

TextEmbeddings HashedWordConditioner::encode(const std::vector<std::string>& prompts,
                                             torch::Device device) {
  const auto batch = static_cast<int64_t>(prompts.size());
  auto txt = torch::zeros({batch, max_tokens_, context_dim_}, torch::kFloat32);  // [B, T, C]
  auto vec = torch::zeros({batch, vec_dim_}, torch::kFloat32);                   // [B, V]
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (int64_t b = 0; b < batch; ++b) {
      const auto words = split_words(prompts[b]);
      if (static_cast<int64_t>(words.size()) > max_tokens_) {
        std::string cut;
        for (size_t i = static_cast<size_t>(max_tokens_); i < words.size(); ++i)
          cut += (cut.empty() ? "" : " ") + words[i];
        warn_if_truncated("the hashed-word encoder", prompts[b], static_cast<int64_t>(words.size()),
                          max_tokens_, "words",
                          "'" + cut + "'; the pooled vector still averages every word");
      }
      for (size_t i = 0; i < words.size(); ++i) {
        const auto& v = word_vectors(words[i]);
        if (static_cast<int64_t>(i) < max_tokens_) txt[b][i].copy_(v.token);
        vec[b].add_(v.pooled);
      }
      if (!words.empty()) vec[b].div_(static_cast<double>(words.size()));
    }
  }
  return {txt.to(device), vec.to(device)};
}

}  // namespace fluxtrain
