// FLUX.1 transformer parameter names: Black Forest Labs' (flux1-dev.safetensors, FluxImpl's own
// names) <-> diffusers' FluxTransformer2DModel (transformer/diffusion_pytorch_model.safetensors).
// One rule table serves both directions. Each rule maps a BFL weight/bias/scale to one diffusers
// tensor or to several that are concatenated along dim 0 in BFL files ("pieces"):
//
//   BFL                                        diffusers
//   img_in / txt_in                            x_embedder / context_embedder
//   time_in.{in,out}_layer                     time_text_embed.timestep_embedder.linear_{1,2}
//   vector_in.{in,out}_layer                   time_text_embed.text_embedder.linear_{1,2}
//   guidance_in.{in,out}_layer                 time_text_embed.guidance_embedder.linear_{1,2}
//   double_blocks.N.                           transformer_blocks.N.
//     img_mod.lin / txt_mod.lin                  norm1.linear / norm1_context.linear
//     img_attn.qkv  [3H, H]                      attn.to_q + attn.to_k + attn.to_v  (pieces)
//     txt_attn.qkv  [3H, H]                      attn.add_q_proj + add_k_proj + add_v_proj
//     img_attn.norm.{query,key}_norm.scale       attn.norm_q.weight / attn.norm_k.weight
//     txt_attn.norm.{query,key}_norm.scale       attn.norm_added_q.weight / norm_added_k.weight
//     img_attn.proj / txt_attn.proj              attn.to_out.0 / attn.to_add_out
//     img_mlp.{0,2} / txt_mlp.{0,2}              ff.net.{0.proj,2} / ff_context.net.{0.proj,2}
//   single_blocks.N.                           single_transformer_blocks.N.
//     modulation.lin                             norm.linear
//     linear1 [3H + mlp, H]                      attn.to_q + to_k + to_v + proj_mlp  (pieces)
//     norm.{query,key}_norm.scale                attn.norm_q.weight / attn.norm_k.weight
//     linear2                                    proj_out
//   final_layer.linear                         proj_out
//   final_layer.adaLN_modulation.1             norm_out.linear, halves along dim 0 swapped
//                                              (BFL chunks shift, scale; diffusers scale, shift)
// Pieces: every piece but the last has hidden_size rows, the last has the rest (q, k, v: H each;
// linear1: H, H, H, mlp). Weights and biases split the same way.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "io/safetensors.h"
#include "model/flux.h"

namespace fluxtrain {

// How a FLUX transformer checkpoint names its tensors.
enum class WeightLayout {
  kBfl,        // Black Forest Labs (flux1-dev.safetensors), FluxImpl's parameter names
  kDiffusers,  // diffusers FluxTransformer2DModel (transformer/ directory)
};
std::string weight_layout_name(WeightLayout layout);  // "BFL" / "diffusers"

// ---- Name level (no shapes; any block index).

// The diffusers names of a BFL tensor name: one, or the pieces in concatenation order; nullopt
// for a name that is not part of a FLUX transformer.
std::optional<std::vector<std::string>> flux_bfl_to_diffusers_names(const std::string& bfl);

// Where a diffusers tensor goes in BFL form.
struct FluxPieceOf {
  std::string bfl;     // the BFL tensor name
  int piece = 0;       // index of this piece (0 when the tensor is not split)
  int num_pieces = 1;  // pieces of the BFL tensor
};
// nullopt for a name that is not part of a FLUX transformer.
std::optional<FluxPieceOf> flux_diffusers_to_bfl_name(const std::string& diffusers);

// ---- Table for one architecture (names, shapes, splits).

struct FluxWeightEntry {
  std::string bfl;                     // BFL name
  std::vector<int64_t> shape;          // BFL shape
  std::vector<std::string> diffusers;  // diffusers name(s), concatenation order
  std::vector<int64_t> rows;           // rows (dim 0) of each diffusers piece
  bool swap_halves = false;            // halves along dim 0 swapped (final-layer modulation)
  // The shape of diffusers piece i.
  std::vector<int64_t> piece_shape(size_t i) const;
};

// Every tensor of a FluxImpl with `params`, in flux_parameter_shapes order.
class FluxWeightTable {
 public:
  explicit FluxWeightTable(const FluxParams& params);
  const FluxParams& params() const { return params_; }
  const std::vector<FluxWeightEntry>& entries() const { return entries_; }
  // nullptr when the model has no such tensor.
  const FluxWeightEntry* by_bfl(const std::string& bfl) const;
  // The entry holding a diffusers tensor and the piece index; nullptr when the model has none.
  const FluxWeightEntry* by_diffusers(const std::string& diffusers, size_t* piece = nullptr) const;
  // One line describing the architecture for error messages ("hidden 64, 2 heads, 1 double +
  // 1 single blocks, guidance input no").
  std::string describe() const;

 private:
  FluxParams params_;
  std::vector<FluxWeightEntry> entries_;
  std::unordered_map<std::string, size_t> bfl_index_;
  std::unordered_map<std::string, std::pair<size_t, size_t>> diffusers_index_;  // entry, piece
};

// One tensor in diffusers form: its pieces (views of `bfl` where no swap is needed), named.
NamedTensors flux_tensor_to_diffusers(const FluxWeightEntry& entry, const torch::Tensor& bfl);
// One tensor in BFL form from its diffusers pieces (in entry.diffusers order).
torch::Tensor flux_tensor_from_diffusers(const FluxWeightEntry& entry,
                                         const std::vector<torch::Tensor>& pieces);

// Whole state dicts, in table order. UserError naming the tensor for a name the model does not
// have, a missing or duplicated tensor, or a wrong shape.
NamedTensors bfl_to_diffusers(const NamedTensors& bfl, const FluxParams& params);
NamedTensors diffusers_to_bfl(const NamedTensors& diffusers, const FluxParams& params);

}  // namespace fluxtrain
