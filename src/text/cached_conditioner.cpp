// Memoised text conditioning (see cached_conditioner.h).
#include "text/cached_conditioner.h"

#include <unordered_set>

#include "core/errors.h"
#include "core/log.h"
#include "core/torch_compat.h"

namespace fluxtrain {

CachedTextConditioner::CachedTextConditioner(std::shared_ptr<TextConditioner> encoder,
                                             Loader reload, torch::ScalarType storage_dtype,
                                             int64_t batch)
    : encoder_(std::move(encoder)),
      reload_(std::move(reload)),
      storage_dtype_(storage_dtype),
      batch_(std::max<int64_t>(1, batch)),
      context_dim_(encoder_->context_dim()),
      vec_dim_(encoder_->vec_dim()),
      max_tokens_(encoder_->max_tokens()),
      name_(encoder_->name()) {}

CachedTextConditioner::CachedTextConditioner(int64_t context_dim, int64_t vec_dim,
                                             int64_t max_tokens, std::string name,
                                             std::string missing_hint)
    : storage_dtype_(torch::kFloat),
      batch_(1),
      context_dim_(context_dim),
      vec_dim_(vec_dim),
      max_tokens_(max_tokens),
      name_(std::move(name)),
      missing_hint_(std::move(missing_hint)) {}

void CachedTextConditioner::insert(const std::string& prompt, const torch::Tensor& txt,
                                   const torch::Tensor& vec) {
  TORCH_CHECK(txt.dim() == 2 && txt.size(0) == max_tokens_ && txt.size(1) == context_dim_ &&
                  vec.dim() == 1 && vec.size(0) == vec_dim_,
              "CachedTextConditioner::insert: encodings of the wrong shape");
  std::lock_guard<std::mutex> lock(mutex_);
  cache_[prompt] = {txt.to(storage_dtype_).clone(), vec.to(storage_dtype_).clone()};
}

int64_t CachedTextConditioner::bytes_per_prompt() const {
  return (max_tokens_ * context_dim_ + vec_dim_) *
         static_cast<int64_t>(c10::elementSize(storage_dtype_));
}

CachedTextConditioner::Encodings CachedTextConditioner::encode_missing(
    const std::vector<std::string>& prompts, bool keep) {
  Encodings fresh;
  std::vector<std::string> missing;
  std::unordered_set<std::string> seen;
  for (const auto& p : prompts)
    if (!cache_.count(p) && seen.insert(p).second) missing.push_back(p);
  if (missing.empty()) return fresh;
  if (!encoder_ && !reload_)
    user_error(
        "text: prompt '{}' has no cached encoding and there is no text encoder to encode "
        "it{}",
        missing.front(), missing_hint_.empty() ? "" : " (" + missing_hint_ + ")");
  if (!encoder_) {
    log_warn("text encoders: {} prompt(s) not encoded up front (e.g. '{}'): loading {} again",
             missing.size(), missing.front(), name_);
    encoder_ = reload_();
  }
  for (size_t start = 0; start < missing.size(); start += static_cast<size_t>(batch_)) {
    const size_t end = std::min(missing.size(), start + static_cast<size_t>(batch_));
    std::vector<std::string> part(missing.begin() + start, missing.begin() + end);
    TextEmbeddings e = encoder_->encode(part, torch::kCPU);
    for (size_t i = 0; i < part.size(); ++i) {
      const auto k = static_cast<int64_t>(i);
      auto pair =
          std::make_pair(e.txt[k].to(storage_dtype_).clone(), e.vec[k].to(storage_dtype_).clone());
      if (keep || transient_bytes_ + bytes_per_prompt() <= transient_limit_) {
        if (!keep) transient_bytes_ += bytes_per_prompt();
        cache_.emplace(part[i], std::move(pair));
      } else {
        fresh.emplace(part[i], std::move(pair));
      }
    }
  }
  return fresh;
}

TextEmbeddings CachedTextConditioner::encode(const std::vector<std::string>& prompts,
                                             torch::Device device) {
  std::lock_guard<std::mutex> lock(mutex_);
  const Encodings fresh = encode_missing(prompts, /*keep=*/false);
  std::vector<torch::Tensor> txt, vec;
  for (const auto& p : prompts) {
    const auto it = cache_.find(p);
    const auto& [t, v] = it != cache_.end() ? it->second : fresh.at(p);
    txt.push_back(t);
    vec.push_back(v);
  }
  return {torch::stack(txt).to(device, torch::kFloat), torch::stack(vec).to(device, torch::kFloat)};
}

bool CachedTextConditioner::has(const std::string& prompt) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cache_.count(prompt) > 0;
}

void CachedTextConditioner::precompute(const std::vector<std::string>& prompts) {
  std::lock_guard<std::mutex> lock(mutex_);
  encode_missing(prompts, /*keep=*/true);
}

void CachedTextConditioner::release_encoder() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!reload_ || !encoder_) return;
  encoder_.reset();
  compat::empty_cuda_cache();
}

}  // namespace fluxtrain
