// fluxtrain's one linear layer: y = x W^T + b with parameters "weight" [out, in] and "bias"
// [out] (the names torch::nn::Linear registers, so checkpoints keep their keys), and the single
// place where an adapter (LoRA, DoRA: model/lora_adapter.h) attaches. An adapter's tensors are
// not registered as parameters of the layer: the module's state dict stays the base model's,
// and the method that owns the adapters (train/lora_model.h) lists, saves and loads them.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/quantized_weight.h"

namespace fluxtrain {

struct LinearImpl;
struct SwapSlot;

// Computes the adapted output of `base` for input x from the base output x W^T + b.
class LinearAdapter {
 public:
  virtual ~LinearAdapter() = default;
  // x: [..., in]; base_out: [..., out] -> [..., out].
  virtual torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& base_out,
                                const LinearImpl& base) = 0;
};

struct LinearImpl : torch::nn::Module {
  // Initialised as torch::nn::Linear is (weight Kaiming-uniform with a = sqrt(5), bias
  // U(-1/sqrt(in), 1/sqrt(in))), drawing the same numbers in the same order. Inside a
  // LinearStorageScope of int8 or fp8 the weight is not allocated: the layer waits for
  // set_quantized (a loader reading a checkpoint straight into 8 bits).
  LinearImpl(int64_t in_features, int64_t out_features, bool with_bias = true);
  // x: [..., in] -> [..., out].
  torch::Tensor forward(const torch::Tensor& x);

  // Frozen 8-bit storage: the weight's codes and scales replace `weight`, which stays registered
  // under its name as an empty tensor [0] (no gradient) so that names and devices stay as they
  // were; forward dequantizes on the fly (model/quantized_weight.h).
  void quantize_weight(BaseWeights kind);  // from the current weight, which is freed
  void set_quantized(QuantizedWeight w);
  bool is_quantized() const { return quantized != nullptr; }
  // The weight as float32 values [out, in]: `weight`, or the quantized one dequantized (on the
  // compute device: a swapped layer's copy).
  torch::Tensor dense_weight() const;
  // Where the layer computes (a swapped layer's weights are on the host, its bias is here).
  torch::Device device() const;

  // Module::to, moving the 8-bit storage along (its codes keep their dtype). A swapped layer's
  // weights stay on the host (a dtype change of them is a logic_error: convert before the swap);
  // its bias moves.
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, bool non_blocking = false) override;

  int64_t in_features, out_features;
  torch::Tensor weight, bias;                  // bias undefined without one
  std::shared_ptr<LinearAdapter> adapter;      // null: the plain layer
  std::shared_ptr<QuantizedWeight> quantized;  // null: `weight` holds the weights
  std::shared_ptr<SwapSlot> swap;  // block swap (model/block_swap.h): weights on the host
};
TORCH_MODULE(Linear);

// Linear layers built in this scope (on this thread) store their weights as `kind` (int8, fp8:
// unallocated until set_quantized; dense: as usual). FluxImpl builds its embedders and final
// layer dense whatever the scope says: only the blocks' layers are quantized.
class LinearStorageScope {
 public:
  explicit LinearStorageScope(BaseWeights kind);
  ~LinearStorageScope();
  LinearStorageScope(const LinearStorageScope&) = delete;
  LinearStorageScope& operator=(const LinearStorageScope&) = delete;
  static BaseWeights current();

 private:
  BaseWeights previous_;
};

// The linear layers of `model` by name (e.g. "double_blocks.0.img_attn.qkv"), in registration
// order.
std::vector<std::pair<std::string, LinearImpl*>> flux_linear_layers(torch::nn::Module& model);
// Quantizes the weights of every linear layer of the double and single blocks (the embedders and
// the final layer stay dense). Returns the bytes the weights take now.
int64_t quantize_block_weights(torch::nn::Module& model, BaseWeights kind);

}  // namespace fluxtrain
