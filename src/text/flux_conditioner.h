// FLUX.1's text conditioning: T5-XXL's last hidden state for the tokens (txt, 4096 wide, 512
// tokens for dev and 256 for schnell, padded and run without an attention mask as BFL's
// HFEmbedder does) and CLIP-L's pooled output for the vector (vec, 768 wide, 77 tokens).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "text/conditioner.h"

namespace fluxtrain {

struct FluxTextFiles {
  std::string clip_tokenizer;  // tokenizer/ (vocab.json, merges.txt)
  std::string clip_encoder;    // text_encoder/ (config.json, model.safetensors)
  std::string t5_tokenizer;    // tokenizer_2/spiece.model
  std::string t5_encoder;      // text_encoder_2/ (config.json, shards + index)
};

class FluxTextConditioner : public TextConditioner {
 public:
  // Loads both tokenizers and encoders (weights in `dtype` on `device`, frozen).
  FluxTextConditioner(const FluxTextFiles& files, int64_t t5_max_tokens, torch::Device device,
                      torch::ScalarType dtype);
  ~FluxTextConditioner() override;
  // txt [B, t5_max_tokens, d_model] and vec [B, clip hidden], float32 on `device`.
  TextEmbeddings encode(const std::vector<std::string>& prompts, torch::Device device) override;
  int64_t context_dim() const override;
  int64_t vec_dim() const override;
  int64_t max_tokens() const override { return t5_max_tokens_; }
  std::string name() const override { return "T5-XXL + CLIP-L"; }
  // Moves both encoders (for offloading between phases).
  void to(torch::Device device);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int64_t t5_max_tokens_;
};

}  // namespace fluxtrain
