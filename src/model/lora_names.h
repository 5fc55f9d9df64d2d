// Name-level facts of the three FLUX.1 LoRA layouts (docs/lora-formats.md): which module a key
// adapts, in BFL names (FluxImpl's: "double_blocks.0.img_attn.qkv"), and the key names each
// layout writes for one.
//
//   layout     key of the down matrix (A, [r, in])                              scale
//   comfyui    diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight        .alpha / r
//   kohya      lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight           .alpha / r
//   diffusers  transformer.transformer_blocks.0.attn.to_q.lora_A.weight (q,k,v   folded into B
//              pieces of the fused BFL layer; linear1 -> to_q, to_k, to_v, proj_mlp)
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace fluxtrain {

enum class LoraLayout { kComfyUI, kDiffusers, kKohya };
std::string lora_layout_name(LoraLayout layout);  // "comfyui" / "diffusers" / "kohya"
// "comfyui", "diffusers", "kohya" or "all" (the three), comma-separated; UserError otherwise.
std::vector<LoraLayout> parse_lora_formats(const std::string& value);
// The file a checkpoint holds for the layout: lora_comfyui.safetensors,
// pytorch_lora_weights.safetensors (the name diffusers' load_lora_weights(dir) looks for),
// lora_kohya.safetensors.
std::string lora_file_name(LoraLayout layout);

// "lora_unet_" + the BFL module name with '.' -> '_'.
std::string kohya_lora_name(const std::string& bfl_module);
// A BFL module from its underscored form ("double_blocks_0_img_attn_qkv"); nullopt when it
// names no FLUX linear layer.
std::optional<std::string> bfl_module_from_underscored(const std::string& underscored);
// A diffusers module from its underscored form ("transformer_blocks_0_attn_to_out_0", as
// OneTrainer writes after "lora_transformer_"); nullopt when it names no FLUX linear layer.
std::optional<std::string> diffusers_module_from_underscored(const std::string& underscored);
// True for the BFL name of a FLUX linear layer (any block index).
bool is_flux_linear_module(const std::string& bfl_module);

// The diffusers modules of a BFL linear layer: one, or the pieces of a fused one in row order.
std::vector<std::string> diffusers_lora_modules(const std::string& bfl_module);
struct LoraPieceOf {
  std::string bfl_module;
  int piece = 0, num_pieces = 1;
};
// Where a diffusers module's adapter belongs; nullopt for a module that is not a FLUX linear.
std::optional<LoraPieceOf> bfl_module_of_diffusers(const std::string& diffusers_module);
// The final layer's modulation, whose output halves diffusers stores swapped.
bool lora_swaps_halves(const std::string& bfl_module);
// Embedders and the final layer: what diffusers' kohya converter drops without an error.
bool is_flux_embedder_or_final(const std::string& bfl_module);

}  // namespace fluxtrain
