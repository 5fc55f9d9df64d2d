#include "text/flux_conditioner.h"

#include <algorithm>

#include "core/errors.h"
#include "model/clip_text.h"
#include "model/t5.h"
#include "text/clip_tokenizer.h"
#include "text/t5_tokenizer.h"
#include "text/truncation_warning.h"

namespace fluxtrain {

namespace {
// Prompts per encoder call: bounds activation memory (T5-XXL at 512 tokens is ~40 MB per prompt
// and layer in fp32) without a per-prompt call for long prompt files.
constexpr size_t kEncodeChunk = 16;
}  // namespace

struct FluxTextConditioner::Impl {
  ClipTokenizer clip_tokenizer;
  T5Tokenizer t5_tokenizer;
  ClipTextModel clip{nullptr};
  T5Encoder t5{nullptr};
  torch::Device device;

  Impl(const FluxTextFiles& files, torch::Device device, torch::ScalarType dtype)
      : clip_tokenizer(files.clip_tokenizer), t5_tokenizer(files.t5_tokenizer), device(device) {
    clip = load_clip_text(files.clip_encoder, device, dtype);
    t5 = load_t5_encoder(files.t5_encoder, device, dtype);
    if (clip_tokenizer.vocab_size() > clip->config().vocab_size)
      user_error("{}: the tokenizer has {} tokens but the CLIP encoder in {} embeds {}",
                 files.clip_tokenizer, clip_tokenizer.vocab_size(), files.clip_encoder,
                 clip->config().vocab_size);
    if (t5_tokenizer.vocab_size() > t5->cfg.vocab_size)
      user_error("{}: the tokenizer has {} pieces but the T5 encoder in {} embeds {}",
                 files.t5_tokenizer, t5_tokenizer.vocab_size(), files.t5_encoder,
                 t5->cfg.vocab_size);
  }
};

FluxTextConditioner::FluxTextConditioner(const FluxTextFiles& files, int64_t t5_max_tokens,
                                         torch::Device device, torch::ScalarType dtype)
    : impl_(std::make_unique<Impl>(files, device, dtype)), t5_max_tokens_(t5_max_tokens) {
  if (t5_max_tokens < 1) user_error("T5 max tokens must be positive, got {}", t5_max_tokens);
}

FluxTextConditioner::~FluxTextConditioner() = default;

TextEmbeddings FluxTextConditioner::encode(const std::vector<std::string>& prompts,
                                           torch::Device device) {
  torch::NoGradGuard no_grad;
  const int64_t clip_len = impl_->clip->config().max_position_embeddings;
  for (const auto& p : prompts) {  // [bos] ... [eos] for CLIP, ... </s> for T5
    warn_if_truncated("CLIP-L", p, static_cast<int64_t>(impl_->clip_tokenizer.encode(p).size()),
                      clip_len - 2, "CLIP tokens");
    warn_if_truncated("T5", p, static_cast<int64_t>(impl_->t5_tokenizer.encode(p).size()),
                      t5_max_tokens_ - 1, "T5 tokens");
  }
  std::vector<torch::Tensor> txts, vecs;
  for (size_t begin = 0; begin < prompts.size(); begin += kEncodeChunk) {
    const size_t end = std::min(prompts.size(), begin + kEncodeChunk);
    const std::vector<std::string> chunk(prompts.begin() + begin, prompts.begin() + end);
    // T5: padded to max tokens and run without an attention mask (BFL's HFEmbedder and
    // diffusers' FluxPipeline do the same), last hidden state.
    const torch::Tensor t5_ids =
        impl_->t5_tokenizer.encode_batch(chunk, t5_max_tokens_).to(impl_->device);
    txts.push_back(impl_->t5->forward(t5_ids).to(torch::kFloat).to(device));
    // CLIP: 77 tokens, pooled output at the end-of-text token.
    const torch::Tensor clip_ids =
        impl_->clip_tokenizer.encode_batch(chunk, clip_len).to(impl_->device);
    vecs.push_back(impl_->clip->forward(clip_ids).pooled.to(torch::kFloat).to(device));
  }
  if (prompts.empty())
    return {torch::zeros({0, t5_max_tokens_, context_dim()}, torch::TensorOptions(device)),
            torch::zeros({0, vec_dim()}, torch::TensorOptions(device))};
  return {torch::cat(txts), torch::cat(vecs)};
}

int64_t FluxTextConditioner::context_dim() const {
  return impl_->t5->cfg.d_model;
}
int64_t FluxTextConditioner::vec_dim() const {
  return impl_->clip->config().hidden_size;
}

void FluxTextConditioner::to(torch::Device device) {
  impl_->clip->to(device);
  impl_->t5->to(device);
  impl_->device = device;
}

}  // namespace fluxtrain
