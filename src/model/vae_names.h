// FLUX autoencoder parameter names: Black Forest Labs' `ae.safetensors` names (the module's own)
// <-> diffusers `vae/diffusion_pytorch_model.safetensors` names (AutoencoderKL).
//
//   BFL                                  diffusers
//   {enc,dec}.norm_out                   {enc,dec}.conv_norm_out
//   encoder.down.I.block.J               encoder.down_blocks.I.resnets.J
//   encoder.down.I.downsample.conv       encoder.down_blocks.I.downsamplers.0.conv
//   decoder.up.I.block.J                 decoder.up_blocks.(n-1-I).resnets.J   (order reversed)
//   decoder.up.I.upsample.conv           decoder.up_blocks.(n-1-I).upsamplers.0.conv
//   *.nin_shortcut                       *.conv_shortcut
//   X.mid.block_1 / block_2              X.mid_block.resnets.0 / 1
//   X.mid.attn_1.{norm,q,k,v,proj_out}
//   X.mid_block.attentions.0.{group_norm,to_q,to_k,to_v,to_out.0} conv_in, conv_out, quant_conv,
//   post_quant_conv: the same in both.
// The attention q/k/v/proj_out weights are 1x1 convs [C, C, 1, 1] in BFL files and Linear
// weights [C, C] in diffusers files. n is the number of resolution levels (len(ch_mult)).
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace fluxtrain {

// How a FLUX autoencoder checkpoint is stored.
enum class VaeLayout {
  kBfl,        // one safetensors file with BFL names (ae.safetensors)
  kDiffusers,  // a diffusers vae/ directory: config.json + diffusion_pytorch_model.safetensors
};
std::string vae_layout_name(VaeLayout layout);  // "BFL" / "diffusers"

// The diffusers name of a BFL parameter name; nullopt for a name that is not part of the FLUX
// autoencoder (or a level index outside [0, num_levels)).
std::optional<std::string> vae_bfl_to_diffusers(const std::string& bfl_name, int64_t num_levels);
// The BFL name of a diffusers parameter name; nullopt for a name that is not part of the FLUX
// autoencoder (or a level index outside [0, num_levels)).
std::optional<std::string> vae_diffusers_to_bfl(const std::string& diffusers_name,
                                                int64_t num_levels);
// True for the BFL names whose tensors are 1x1 convs in BFL files and Linear weights in diffusers
// files: *.mid.attn_1.{q,k,v,proj_out}.weight.
bool vae_is_attention_projection(const std::string& bfl_name);

}  // namespace fluxtrain
