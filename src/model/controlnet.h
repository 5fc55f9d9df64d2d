// The FLUX ControlNet as diffusers' FluxControlNetModel defines it: a copy of the transformer's
// embedders and first blocks (`num_layers` double, `num_single_layers` single) whose image stream
// also takes the control image's packed VAE latents through a zero-initialised
// `controlnet_x_embedder`; after each block the image tokens go through a zero-initialised
// H x H projection (`controlnet_blocks.i`, `controlnet_single_blocks.i`) and, times the
// conditioning scale, become the residuals the base transformer adds after its blocks
// (FluxInputs::double_block_residuals: residual i / ceil(D / n) after block i).
//
// Parameter names: the blocks and embedders under FluxImpl's (BFL) names, the ControlNet's own
// layers under diffusers' names, which are the same in both. On disk: diffusers' controlnet/
// directory (config.json + diffusion_pytorch_model.safetensors, FluxTransformer2DModel's names
// for the copied parts), which FluxControlNetModel.from_pretrained reads.
// Not supported (refused by name when read): union ControlNets (num_mode) and XLabs' pixel-space
// input_hint_block (conditioning_embedding_channels).
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "model/flux.h"

namespace fluxtrain {

struct ControlNetResiduals {
  std::vector<torch::Tensor> double_blocks, single_blocks;  // each [B, Li, H]
};

struct FluxControlNetImpl : FluxImpl {
  // `base`: the transformer's architecture; its depths are replaced by num_double / num_single.
  // Every parameter starts as FluxImpl initialises it, the ControlNet's own layers at zero.
  FluxControlNetImpl(const FluxParams& base, int64_t num_double, int64_t num_single);
  // diffusers' from_transformer: the embedders and the first blocks copied from `base` (same
  // hidden size and heads); the ControlNet's own layers stay zero.
  void copy_from(FluxImpl& base);
  // The residuals for `inputs` (the base call's inputs, residuals ignored) with the control
  // latents `control` [B, Li, in_channels] packed like inputs.img, times `scale`.
  ControlNetResiduals forward(const FluxInputs& inputs, const torch::Tensor& control, double scale);

  Linear controlnet_x_embedder{nullptr};
  torch::nn::ModuleList controlnet_blocks{nullptr}, controlnet_single_blocks{nullptr};
};
TORCH_MODULE(FluxControlNet);

// UserError "<origin>: <field> <a>, the base transformer has <b>" for the first field in which a
// ControlNet of `controlnet` cannot feed a transformer of `base` (width, heads, channels, text
// and pooled dims, guidance input, more blocks than the base's).
void check_controlnet_fits(const FluxParams& controlnet, const FluxParams& base,
                           const std::string& origin);

// diffusers' controlnet/config.json for a ControlNet of `params` (FluxControlNetModel's
// arguments: num_layers, num_single_layers, attention_head_dim, ...).
nlohmann::json controlnet_diffusers_config(const FluxParams& params);
// The ControlNet's tensors under diffusers' names (qkv split into to_q/to_k/to_v, ...), as
// contiguous CPU copies in `dtype` (what the diffusers file holds).
NamedTensors controlnet_to_diffusers(FluxControlNetImpl& net, torch::ScalarType dtype);
// Writes `net` as diffusers' controlnet/ directory at `dir` (atomically: a temporary name, then
// rename), tensors in `dtype`.
void save_controlnet(FluxControlNetImpl& net, const std::string& dir, torch::ScalarType dtype);

// A ControlNet directory read: its architecture from config.json (checked against the tensors).
struct ControlNetFiles {
  std::string dir;
  std::string weights;  // its diffusion_pytorch_model.safetensors (or the shard index)
  FluxParams params;    // depth / depth_single_blocks: the ControlNet's own
};
// UserError naming the file and the key for a missing config or weights file, a union or XLabs
// ControlNet, or tensors that do not fit the config.
ControlNetFiles inspect_controlnet(const std::string& dir);
// Copies the directory's tensors into `net` (built with files.params), converting dtype and
// device. UserError naming the tensor for a missing, unexpected or wrong-shaped one.
void load_controlnet(FluxControlNetImpl& net, const ControlNetFiles& files);

}  // namespace fluxtrain
