// The FLUX.1 rectified-flow transformer (Black Forest Labs' architecture and parameter names).
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/layers.h"

namespace fluxtrain {

class BlockSwap;

struct FluxParams {
  int64_t in_channels = 64;  // latent channels x 2 x 2 patch
  int64_t out_channels = 64;
  int64_t vec_in_dim = 768;       // pooled text vector (CLIP-L)
  int64_t context_in_dim = 4096;  // text tokens (T5-XXL)
  int64_t hidden_size = 3072;
  double mlp_ratio = 4.0;
  int64_t num_heads = 24;
  int64_t depth = 19;  // double-stream blocks
  int64_t depth_single_blocks = 38;
  std::vector<int64_t> axes_dim = {16, 56, 56};
  double theta = 10000.0;
  bool qkv_bias = true;
  bool guidance_embed = false;
  // Throws UserError naming the inconsistent field (heads must divide hidden, axes must sum to
  // the head dim, ...).
  void validate() const;
};

// Everything one transformer call takes (B batch, Li image tokens, Lt text tokens). Built by
// make_flux_inputs (model/flux_call.h) for training, validation and sampling alike.
struct FluxInputs {
  torch::Tensor img;                      // [B, Li, in_channels] patchified latents
  torch::Tensor img_ids;                  // [B, Li, 3] position ids (0, row, col)
  torch::Tensor txt;                      // [B, Lt, context_in_dim] text tokens (T5)
  torch::Tensor txt_ids;                  // [B, Lt, 3] zeros
  torch::Tensor timesteps;                // [B] in [0, 1]
  torch::Tensor y;                        // [B, vec_in_dim] pooled text vector (CLIP)
  std::optional<torch::Tensor> guidance;  // [B], models with guidance_embed only
  // ControlNet residuals, added to the image tokens after the blocks as diffusers'
  // FluxTransformer2DModel adds them: with n residuals for D double blocks, residual
  // i / ceil(D / n) after double block i (each [B, Li, H]); likewise for the single blocks,
  // added to the image part of [txt, img]. Empty: no control.
  std::vector<torch::Tensor> double_block_residuals, single_block_residuals;
};

// The streams the blocks run on, after the embedders (H hidden size).
struct FluxStreams {
  torch::Tensor img;  // [B, Li, H] image tokens
  torch::Tensor txt;  // [B, Lt, H] text tokens
  torch::Tensor vec;  // [B, H] modulation vector (timestep + pooled text [+ guidance])
  torch::Tensor pe;   // RoPE of the [txt, img] positions
};

struct FluxImpl : torch::nn::Module {
  // `final_layer` false leaves out the output layer (a ControlNet's copy of the first blocks
  // ends in its own projections: model/controlnet.h).
  explicit FluxImpl(const FluxParams& params, bool with_final_layer = true);
  // The predicted velocity [B, Li, out_channels] (see FluxInputs).
  torch::Tensor forward(const FluxInputs& inputs);

  // The embedders applied to `inputs` (img_in, time_in, guidance_in, vector_in, txt_in, RoPE).
  FluxStreams embed(const FluxInputs& inputs);
  // After block `index` of the double blocks (single false) or the single blocks (single true):
  // sees the image tokens [B, Li, H] and returns them, changed or not.
  using AfterBlock =
      std::function<torch::Tensor(bool single, size_t index, const torch::Tensor& img)>;
  // The double blocks, then the single blocks on [txt, img], with activation checkpointing as set;
  // `after_block` (when set) runs after each. Returns the image tokens after the last block.
  torch::Tensor run_blocks(FluxStreams streams, const AfterBlock& after_block);

  // Activation checkpointing: in training mode with grad enabled, every double and single block
  // keeps only its inputs and recomputes its activations in backward (less memory, about 1/3
  // more compute). `every` k > 1 checkpoints one block in k (blocks 0, k, 2k, ... counting the
  // double blocks, then the single ones), trading memory for speed in between. Eval mode and
  // no-grad passes run as usual. Off by default.
  void set_activation_checkpointing(bool on, int64_t every = 1) {
    activation_checkpointing_ = on;
    checkpoint_every_ = every < 1 ? 1 : every;
  }
  bool activation_checkpointing() const { return activation_checkpointing_; }
  int64_t checkpoint_every() const { return checkpoint_every_; }

  FluxParams params;
  Linear img_in{nullptr}, txt_in{nullptr};
  MLPEmbedder time_in{nullptr}, vector_in{nullptr}, guidance_in{nullptr};
  torch::nn::ModuleList double_blocks{nullptr}, single_blocks{nullptr};
  LastLayer final_layer{nullptr};
  // Block swap (model/block_swap.h: enable_block_swap), null when off.
  std::shared_ptr<BlockSwap> block_swap;

 private:
  bool activation_checkpointing_ = false;
  int64_t checkpoint_every_ = 1;
};
TORCH_MODULE(Flux);

// Whether a parameter or module name lies in the double or single blocks
// ("double_blocks.3.img_attn.qkv.weight"), not the embedders or the final layer.
inline bool is_flux_block_name(const std::string& name) {
  return name.rfind("double_blocks.", 0) == 0 || name.rfind("single_blocks.", 0) == 0;
}

// Every parameter of the model by name and shape, in registration order, without allocating
// anything (used to count 12B-parameter presets and to check checkpoints against a preset).
struct ParamShape {
  std::string name;
  std::vector<int64_t> shape;
  int64_t numel() const;
};
std::vector<ParamShape> flux_parameter_shapes(const FluxParams& params);

// Matmul FLOPs of one forward pass per sample (2 x multiply-adds of every linear layer applied
// to its tokens, plus attention scores and values: 4 x L^2 x H per block).
double flux_forward_flops(const FluxParams& params, int64_t image_tokens, int64_t text_tokens);

}  // namespace fluxtrain
