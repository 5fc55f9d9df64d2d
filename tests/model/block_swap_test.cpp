// Block swap: kohya's split of N into double and single blocks; a model whose last blocks live
// on the host computes bit for bit what the resident model does (forward, every gradient, with
// activation checkpointing, under bf16 autocast, with 8-bit weights); at most two swapped blocks
// are copied at a time; a changed host weight is copied again; Module::to leaves it on the host.
#include "model/block_swap.h"

#include <gtest/gtest.h>

#include "core/torch_compat.h"
#include "model/flux.h"
#include "model/linear.h"
#include "model/presets.h"

using namespace fluxtrain;

namespace {

FluxParams small_params() {
  FluxParams p = model_preset("tiny").flux;
  p.depth = 3;
  p.depth_single_blocks = 4;
  return p;
}

Flux make_model(const FluxParams& p) {
  torch::manual_seed(7);
  return Flux(p);  // (random modulations and output: every gradient is nonzero)
}

FluxInputs make_inputs(const FluxParams& p, int64_t B = 2) {
  torch::manual_seed(11);
  const int64_t h = 4, w = 4, Lt = 5;
  FluxInputs in;
  in.img = torch::randn({B, h * w, p.in_channels});
  in.img_ids = torch::zeros({B, h * w, 3});
  for (int64_t r = 0; r < h; ++r)
    for (int64_t c = 0; c < w; ++c) {
      in.img_ids.index_put_({torch::indexing::Slice(), r * w + c, 1}, static_cast<double>(r));
      in.img_ids.index_put_({torch::indexing::Slice(), r * w + c, 2}, static_cast<double>(c));
    }
  in.txt = torch::randn({B, Lt, p.context_in_dim});
  in.txt_ids = torch::zeros({B, Lt, 3});
  in.timesteps = torch::rand({B});
  in.y = torch::randn({B, p.vec_in_dim});
  return in;
}

void expect_same_gradients(FluxImpl& a, FluxImpl& b, const std::string& what) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  int compared = 0;
  for (const auto& item : pa) {
    const auto& ga = item.value().grad();
    const auto& gb = pb[item.key()].grad();
    ASSERT_EQ(ga.defined(), gb.defined()) << what << " " << item.key();
    if (!ga.defined()) continue;
    EXPECT_TRUE(torch::equal(ga, gb)) << what << " " << item.key();
    ++compared;
  }
  EXPECT_GT(compared, 50) << what;
}

// Loss of one forward + backward of `m` (a fixed weighting of the output, so that every output
// value gets its own gradient).
torch::Tensor loss_of(FluxImpl& m, const FluxInputs& in) {
  auto out = m.forward(in);
  torch::manual_seed(3);
  return (out * torch::randn(out.sizes(), out.options())).sum();
}

}  // namespace

TEST(BlockSwap, SplitsNAsKohyaDoes) {
  const FluxParams dev = model_preset("flux-dev").flux;  // 19 double, 38 single blocks
  EXPECT_EQ(max_blocks_to_swap(dev), 38);
  const auto s18 = block_swap_split(dev, 18);
  EXPECT_EQ(s18.double_blocks, 9);
  EXPECT_EQ(s18.single_blocks, 18);
  const auto s7 = block_swap_split(dev, 7);
  EXPECT_EQ(s7.double_blocks, 3);
  EXPECT_EQ(s7.single_blocks, 8);
  const auto s38 = block_swap_split(dev, 38);
  EXPECT_EQ(s38.double_blocks, 19);
  EXPECT_EQ(s38.single_blocks, 38);
  try {
    block_swap_split(dev, 39);
    FAIL() << "39 accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("blocks_to_swap 39: expected 0 to 38"), std::string::npos)
        << e.what();
  }
  // 3 double, 4 single blocks: 4 swaps 2 + 4; 5 would ask for 2 + 6.
  EXPECT_EQ(max_blocks_to_swap(small_params()), 4);
}

TEST(BlockSwap, SwappedModelComputesBitForBitWhatTheResidentOneDoes) {
  const FluxParams p = small_params();
  const FluxInputs in = make_inputs(p);
  for (const bool checkpointing : {false, true}) {
    Flux resident = make_model(p), swapped = make_model(p);
    const auto swap = enable_block_swap(*swapped, 3, torch::kCPU);  // 1 double + 4 single
    ASSERT_TRUE(swap);
    EXPECT_EQ(swap->blocks(), 5u);
    EXPECT_EQ(swapped->block_swap, swap);
    // Every linear layer of double block 2 and the single blocks is swapped, nothing else.
    for (const auto& [name, layer] : flux_linear_layers(*swapped)) {
      const bool expected =
          name.rfind("double_blocks.2.", 0) == 0 || name.rfind("single_blocks.", 0) == 0;
      EXPECT_EQ(layer->swap != nullptr, expected) << name;
    }
    resident->set_activation_checkpointing(checkpointing);
    swapped->set_activation_checkpointing(checkpointing);
    resident->train();
    swapped->train();
    auto la = loss_of(*resident, in), lb = loss_of(*swapped, in);
    EXPECT_EQ(la.item<double>(), lb.item<double>()) << "checkpointing " << checkpointing;
    swap->expect(-1);
    la.backward();
    lb.backward();
    expect_same_gradients(*resident, *swapped, checkpointing ? "checkpointed" : "plain");
    EXPECT_LE(swap->most_resident(), 2);
    // Forward copies each of the 5 blocks once; backward finds the last two still there and
    // copies the other three again.
    EXPECT_EQ(swap->copies(), 8);
    // The swapped weights' gradients live with the weights, on the host, and were not kept
    // elsewhere: the copies made for the device are different tensors.
    auto* qkv = swapped->single_blocks->ptr<SingleStreamBlockImpl>(0)->linear1.get();
    ASSERT_TRUE(qkv->swap);
    EXPECT_TRUE(qkv->weight.grad().defined());
    const auto& copy = swap->weights(qkv->swap->block, qkv->swap->layer)[0];
    EXPECT_NE(copy.data_ptr(), qkv->weight.data_ptr());
    EXPECT_TRUE(torch::equal(copy, qkv->weight));
  }
}

TEST(BlockSwap, Bf16AutocastAndNoGradAgreeBitForBit) {
  const FluxParams p = small_params();
  const FluxInputs in = make_inputs(p);
  Flux resident = make_model(p), swapped = make_model(p);
  enable_block_swap(*swapped, 4, torch::kCPU);
  compat::set_autocast(c10::DeviceType::CPU, true, torch::kBFloat16);
  auto la = loss_of(*resident, in), lb = loss_of(*swapped, in);
  la.backward();
  lb.backward();
  torch::Tensor na, nb;
  {
    torch::NoGradGuard no_grad;
    na = resident->forward(in);
    nb = swapped->forward(in);
  }
  compat::set_autocast(c10::DeviceType::CPU, false, torch::kBFloat16);
  at::autocast::clear_cache();
  EXPECT_EQ(la.item<double>(), lb.item<double>());
  EXPECT_TRUE(torch::equal(na, nb));
  expect_same_gradients(*resident, *swapped, "bf16 autocast");
}

TEST(BlockSwap, EightBitLayersSwapTheirCodesAndScales) {
  const FluxParams p = small_params();
  const FluxInputs in = make_inputs(p);
  Flux resident = make_model(p), swapped = make_model(p);
  for (Flux* m : {&resident, &swapped}) {
    quantize_block_weights(**m, BaseWeights::kInt8);
    for (auto& param : (*m)->parameters()) param.set_requires_grad(false);
  }
  auto swap = enable_block_swap(*swapped, 4, torch::kCPU);
  // The input's gradient flows through every swapped 8-bit layer.
  FluxInputs ia = in, ib = in;
  ia.img = in.img.clone().requires_grad_(true);
  ib.img = in.img.clone().requires_grad_(true);
  auto la = loss_of(*resident, ia), lb = loss_of(*swapped, ib);
  EXPECT_EQ(la.item<double>(), lb.item<double>());
  swap->expect(-1);
  la.backward();
  lb.backward();
  EXPECT_TRUE(torch::equal(ia.img.grad(), ib.img.grad()));
  EXPECT_GT(ia.img.grad().abs().sum().item<double>(), 0);
  // The codes of a swapped layer stay int8, on the host; the device copy holds codes and scales.
  auto* layer = swapped->single_blocks->ptr<SingleStreamBlockImpl>(3)->linear2.get();
  ASSERT_TRUE(layer->swap && layer->quantized);
  const auto& copies = swap->weights(layer->swap->block, layer->swap->layer);
  ASSERT_EQ(copies.size(), 2u);
  EXPECT_EQ(copies[0].scalar_type(), torch::kInt8);
  EXPECT_TRUE(torch::equal(copies[0], layer->quantized->codes));
  EXPECT_TRUE(torch::equal(copies[1], layer->quantized->scale));
}

TEST(BlockSwap, AChangedHostWeightIsCopiedAgainAloneWhenItIsNextUsed) {
  const FluxParams p = small_params();
  const FluxInputs in = make_inputs(p);
  Flux resident = make_model(p), swapped = make_model(p);
  // 1: the last 2 single blocks, which both stay on the device between passes.
  auto swap = enable_block_swap(*swapped, 1, torch::kCPU);
  ASSERT_EQ(swap->blocks(), 2u);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(resident->forward(in), swapped->forward(in)));
  EXPECT_EQ(swap->copies(), 2);
  // An optimizer step changes a weight in place: its copy is stale, the block's others are not.
  for (Flux* m : {&resident, &swapped})
    (*m)->single_blocks->ptr<SingleStreamBlockImpl>(3)->linear1->weight.mul_(1.5);
  const auto a = resident->forward(in), b = swapped->forward(in);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_EQ(swap->copies(), 2);     // no block copied again
  EXPECT_EQ(swap->refreshes(), 1);  // the one layer
  EXPECT_TRUE(torch::equal(resident->forward(in), swapped->forward(in)));
  EXPECT_EQ(swap->refreshes(), 1);
  // A whole block's weights share one host buffer (one page-locked range per block on CUDA).
  auto* l1 = swapped->single_blocks->ptr<SingleStreamBlockImpl>(3)->linear1.get();
  auto* l2 = swapped->single_blocks->ptr<SingleStreamBlockImpl>(3)->linear2.get();
  EXPECT_EQ(l1->weight.storage().data_ptr().get(), l2->weight.storage().data_ptr().get());
  EXPECT_LE(swap->most_resident(), 2);
}

TEST(BlockSwap, ModuleToLeavesSwappedWeightsOnTheHostAndRefusesToConvertThem) {
  const FluxParams p = small_params();
  Flux m = make_model(p);
  m->to(torch::kBFloat16);  // (dtype first, as every loader does)
  enable_block_swap(*m, 2, torch::kCPU);
  m->to(torch::kBFloat16);  // the same dtype: nothing to convert
  auto* swapped = m->single_blocks->ptr<SingleStreamBlockImpl>(3)->linear2.get();
  auto* resident = m->single_blocks->ptr<SingleStreamBlockImpl>(0)->linear2.get();
  ASSERT_TRUE(swapped->swap);
  ASSERT_FALSE(resident->swap);
  EXPECT_EQ(swapped->weight.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(swapped->bias.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(swapped->weight.device(), torch::Device(torch::kCPU));
  EXPECT_EQ(swapped->device(), torch::Device(torch::kCPU));  // the compute device
  // Converting a swapped weight would leave its block's host buffer behind: refused.
  EXPECT_THROW(m->to(torch::kFloat), std::logic_error);
  try {
    enable_block_swap(*make_model(p), 6, torch::kCPU);
    FAIL() << "6 accepted for 3 + 4 blocks";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("blocks_to_swap 6: expected 0 to 4"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(enable_block_swap(*make_model(p), 0, torch::kCPU), nullptr);
}

TEST(BlockSwap, OnCudaTheSideStreamCopiesGiveTheResidentResults) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const FluxParams p = small_params();
  const torch::Device cuda(torch::kCUDA, 0);
  FluxInputs in = make_inputs(p);
  for (auto* t : {&in.img, &in.img_ids, &in.txt, &in.txt_ids, &in.timesteps, &in.y})
    *t = t->to(cuda);
  Flux resident = make_model(p), swapped = make_model(p);
  resident->to(cuda);
  const auto swap = enable_block_swap(*swapped, 4, cuda);  // before the move, as loading does
  swapped->to(cuda);
  auto* layer = swapped->single_blocks->ptr<SingleStreamBlockImpl>(3)->linear1.get();
  EXPECT_TRUE(layer->weight.device().is_cpu());
  EXPECT_TRUE(layer->weight.is_pinned());
  EXPECT_TRUE(layer->bias.device().is_cuda());
  // Forward runs the same kernels on the same values: equal. Backward's weight gradients are
  // computed by this code's formulas, which may pick other cuBLAS calls than autograd's: within
  // float32 rounding.
  for (int step = 0; step < 2; ++step) {
    auto la = loss_of(*resident, in), lb = loss_of(*swapped, in);
    EXPECT_EQ(la.item<double>(), lb.item<double>()) << step;
    swap->expect(-1);
    la.backward();
    lb.backward();
    swap->expect(+1);
    auto pb = swapped->named_parameters();
    for (const auto& item : resident->named_parameters()) {
      const auto ga = item.value().grad().cpu(), gb = pb[item.key()].grad().cpu();
      EXPECT_LE((ga - gb).abs().max().item<double>(), 1e-5 * (ga.abs().max().item<double>() + 1))
          << item.key();
    }
    EXPECT_TRUE(layer->weight.grad().device().is_cpu());
    // A step changes the host weights; the next forward must see the new values.
    torch::NoGradGuard no_grad;
    for (Flux* m : {&resident, &swapped})
      for (auto& param : (*m)->parameters()) {
        param.sub_(param.grad().to(param.device()) * 1e-3);
        param.mutable_grad() = torch::Tensor();
      }
  }
  EXPECT_LE(swap->most_resident(), 2);
}
