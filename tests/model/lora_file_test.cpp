// LoRA files in the three layouts: the key names each layout writes, exact round trips, every
// layout read into every other with the same weight deltas (fused qkv / linear1 <-> diffusers'
// split pieces included, the final layer's swapped halves too), files other trainers write
// (independent q/k/v adapters, PEFT metadata alphas, OneTrainer names), the metadata, the
// warnings about what loads where, and the errors.
#include "model/lora_file.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "fixtures/flux_fixture.h"
#include "model/lora_merge.h"
#include "model/weight_names.h"
#include "test_util.h"

using namespace fluxtrain;
using fluxtrain::testing::error_of;

namespace {

FluxParams small_params() {
  FluxParams p = fixtures::tiny_repo_flux_params(/*guidance=*/true);
  p.depth = p.depth_single_blocks = 2;
  return p;
}

// [out, in] of every linear layer, by BFL module name.
std::map<std::string, std::pair<int64_t, int64_t>> layer_shapes() {
  std::map<std::string, std::pair<int64_t, int64_t>> out;
  const FluxWeightTable table(small_params());
  for (const auto& e : table.entries())
    if (e.shape.size() == 2) out[e.bfl.substr(0, e.bfl.size() - 7)] = {e.shape[0], e.shape[1]};
  return out;
}

// Random adapters (alpha != rank) on `modules`.
LoraWeights random_lora(const std::vector<std::string>& modules, int64_t rank, double alpha,
                        bool dora = false, uint64_t seed = 1) {
  torch::manual_seed(seed);
  const auto shapes = layer_shapes();
  LoraWeights w;
  for (const auto& m : modules) {
    const auto [out, in] = shapes.at(m);
    LoraModuleWeights a;
    a.module = m;
    a.down = torch::randn({rank, in});
    a.up = torch::randn({out, rank});
    a.alpha = alpha;
    if (dora) a.magnitude = torch::rand({out}) + 0.5;
    w.modules.push_back(a);
  }
  return w;
}

const std::vector<std::string> kModules = {"double_blocks.0.img_attn.qkv",
                                           "double_blocks.1.txt_mlp.0",
                                           "double_blocks.0.img_mod.lin",
                                           "single_blocks.1.linear1",
                                           "single_blocks.0.linear2",
                                           "img_in",
                                           "time_in.out_layer",
                                           "final_layer.adaLN_modulation.1",
                                           "final_layer.linear"};

LoraWeights through(const LoraWeights& w, LoraLayout layout) {
  return lora_from_tensors(lora_layout_tensors(w, layout, torch::kFloat),
                           lora_layout_metadata(w, layout, {}), lora_layout_name(layout));
}

void expect_same_deltas(const LoraWeights& a, const LoraWeights& b, const std::string& what) {
  ASSERT_EQ(a.modules.size(), b.modules.size()) << what;
  for (const auto& m : a.modules) {
    const auto* o = b.find(m.module);
    ASSERT_NE(o, nullptr) << what << ": " << m.module;
    EXPECT_TRUE(torch::allclose(m.delta(), o->delta(), 1e-5, 1e-5)) << what << ": " << m.module;
    EXPECT_EQ(m.magnitude.defined(), o->magnitude.defined());
    if (m.magnitude.defined()) EXPECT_TRUE(torch::equal(m.magnitude, o->magnitude)) << m.module;
  }
}

std::map<std::string, torch::Tensor> by_name(const NamedTensors& t) {
  return {t.begin(), t.end()};
}

}  // namespace

TEST(LoraFile, EachLayoutWritesTheKeysItsLoadersLookFor) {
  const auto w = random_lora({"double_blocks.0.img_attn.qkv", "single_blocks.1.linear1"}, 4, 8.0);
  const auto comfy = by_name(lora_layout_tensors(w, LoraLayout::kComfyUI, torch::kFloat));
  EXPECT_EQ(comfy.size(), 6u);
  EXPECT_TRUE(torch::equal(comfy.at("diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight"),
                           w.modules[0].down));
  EXPECT_TRUE(torch::equal(comfy.at("diffusion_model.single_blocks.1.linear1.lora_B.weight"),
                           w.modules[1].up));
  EXPECT_EQ(comfy.at("diffusion_model.single_blocks.1.linear1.alpha").item<double>(), 8.0);

  const auto kohya = by_name(lora_layout_tensors(w, LoraLayout::kKohya, torch::kBFloat16));
  EXPECT_EQ(kohya.size(), 6u);
  const auto& alpha = kohya.at("lora_unet_double_blocks_0_img_attn_qkv.alpha");
  EXPECT_EQ(alpha.dim(), 0);  // kohya's 0-d alpha, in the save dtype
  EXPECT_EQ(alpha.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(kohya.at("lora_unet_single_blocks_1_linear1.lora_down.weight").sizes(),
            (std::vector<int64_t>{4, 64}));
  EXPECT_EQ(kohya.at("lora_unet_single_blocks_1_linear1.lora_up.weight").sizes(),
            (std::vector<int64_t>{3 * 64 + 256, 4}));

  // diffusers: q, k, v (and proj_mlp) pieces share the down matrix; up's rows split; the scale
  // (8 / 4 = 2) folded into up; no alpha tensors.
  const auto d = by_name(lora_layout_tensors(w, LoraLayout::kDiffusers, torch::kFloat));
  EXPECT_EQ(d.size(), 2u * (3 + 4));
  const std::string q = "transformer.transformer_blocks.0.attn.to_q.",
                    k = "transformer.transformer_blocks.0.attn.to_k.";
  EXPECT_TRUE(torch::equal(d.at(q + "lora_A.weight"), w.modules[0].down));
  EXPECT_TRUE(torch::equal(d.at(k + "lora_A.weight"), w.modules[0].down));
  EXPECT_TRUE(torch::allclose(d.at(k + "lora_B.weight"), 2.0 * w.modules[0].up.narrow(0, 64, 64)));
  EXPECT_EQ(d.at("transformer.single_transformer_blocks.1.proj_mlp.lora_B.weight").sizes(),
            (std::vector<int64_t>{256, 4}));
  EXPECT_TRUE(
      torch::allclose(d.at("transformer.single_transformer_blocks.1.attn.to_v.lora_B.weight"),
                      2.0 * w.modules[1].up.narrow(0, 128, 64)));
}

TEST(LoraFile, TheFinalLayersModulationHalvesAreSwappedForDiffusersOnly) {
  const auto w = random_lora({"final_layer.adaLN_modulation.1"}, 2, 2.0);
  const auto d = by_name(lora_layout_tensors(w, LoraLayout::kDiffusers, torch::kFloat));
  const auto& up = d.at("transformer.norm_out.linear.lora_B.weight");  // [2H, r]: scale, shift
  EXPECT_TRUE(torch::equal(up.narrow(0, 0, 64), w.modules[0].up.narrow(0, 64, 64)));
  EXPECT_TRUE(torch::equal(up.narrow(0, 64, 64), w.modules[0].up.narrow(0, 0, 64)));
  EXPECT_TRUE(torch::equal(d.at("transformer.norm_out.linear.lora_A.weight"), w.modules[0].down));
  const auto k = by_name(lora_layout_tensors(w, LoraLayout::kKohya, torch::kFloat));
  EXPECT_TRUE(torch::equal(k.at("lora_unet_final_layer_adaLN_modulation_1.lora_up.weight"),
                           w.modules[0].up));
}

TEST(LoraFile, EveryLayoutReadsIntoEveryOtherWithTheSameDeltas) {
  const auto w = random_lora(kModules, 4, 6.0);
  const std::vector<LoraLayout> layouts = {LoraLayout::kComfyUI, LoraLayout::kDiffusers,
                                           LoraLayout::kKohya};
  for (auto l1 : layouts) {
    const auto once = through(w, l1);
    EXPECT_EQ(once.layouts, std::vector<std::string>{lora_layout_name(l1)});
    // Fused layers come back fused with their rank (diffusers' pieces share the down matrix).
    for (const auto& m : once.modules) EXPECT_EQ(m.rank(), 4) << m.module;
    expect_same_deltas(w, once, lora_layout_name(l1));
    for (auto l2 : layouts)
      expect_same_deltas(w, through(once, l2),
                         lora_layout_name(l1) + " -> " + lora_layout_name(l2));
  }
  // The BFL layouts keep the tensors exactly.
  const auto k = through(w, LoraLayout::kKohya);
  for (size_t i = 0; i < w.modules.size(); ++i) {
    EXPECT_TRUE(torch::equal(k.modules[i].down, w.modules[i].down));
    EXPECT_TRUE(torch::equal(k.modules[i].up, w.modules[i].up));
    EXPECT_EQ(k.modules[i].alpha, 6.0);
  }
}

TEST(LoraFile, DoraRoundTripsInTheDiffusersLayoutOnly) {
  const auto w = random_lora({"double_blocks.0.img_attn.qkv", "final_layer.adaLN_modulation.1"}, 3,
                             3.0, /*dora=*/true);
  const auto d = by_name(lora_layout_tensors(w, LoraLayout::kDiffusers, torch::kFloat));
  EXPECT_TRUE(torch::equal(d.at("transformer.transformer_blocks.0.attn.to_v.lora_magnitude_vector"),
                           w.modules[0].magnitude.narrow(0, 128, 64)));
  expect_same_deltas(w, through(w, LoraLayout::kDiffusers), "dora");
  EXPECT_NE(error_of([&] {
              lora_layout_tensors(w, LoraLayout::kKohya, torch::kFloat);
            }).find("DoRA adapters have no kohya form"),
            std::string::npos);
}

TEST(LoraFile, IndependentPieceAdaptersFuseToTheSameDelta) {
  // Another trainer's diffusers file: q and k with their own down matrices, ranks and alphas,
  // no v; proj_mlp alone on a single block.
  torch::manual_seed(3);
  NamedTensors t;
  const std::string b = "transformer.transformer_blocks.1.attn.";
  auto qA = torch::randn({2, 64}), qB = torch::randn({64, 2}), kA = torch::randn({3, 64}),
       kB = torch::randn({64, 3});
  t.emplace_back(b + "to_q.lora_A.weight", qA);
  t.emplace_back(b + "to_q.lora_B.weight", qB);
  t.emplace_back(b + "to_q.alpha", torch::scalar_tensor(4.0));
  t.emplace_back(b + "to_k.lora_A.weight", kA);
  t.emplace_back(b + "to_k.lora_B.weight", kB);
  t.emplace_back(b + "to_k.alpha", torch::scalar_tensor(1.5));
  auto mA = torch::randn({2, 64}), mB = torch::randn({256, 2});
  t.emplace_back("transformer.single_transformer_blocks.0.proj_mlp.lora_A.weight", mA);
  t.emplace_back("transformer.single_transformer_blocks.0.proj_mlp.lora_B.weight", mB);
  const auto w = lora_from_tensors(t, {}, "other.safetensors");
  const auto* qkv = w.find("double_blocks.1.img_attn.qkv");
  ASSERT_NE(qkv, nullptr);
  EXPECT_EQ(qkv->rank(), 5);  // stacked: 2 + 3
  EXPECT_EQ(qkv->scale(), 1.0);
  const auto delta = qkv->delta();  // [192, 64]
  EXPECT_TRUE(torch::allclose(delta.narrow(0, 0, 64), 2.0 * torch::mm(qB, qA), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(delta.narrow(0, 64, 64), 0.5 * torch::mm(kB, kA), 1e-5, 1e-5));
  EXPECT_EQ(delta.narrow(0, 128, 64).abs().max().item<double>(), 0.0);
  const auto* l1 = w.find("single_blocks.0.linear1");
  ASSERT_NE(l1, nullptr);
  EXPECT_EQ(l1->up.size(0), 3 * 64 + 256);  // missing q, k, v rows are zero
  EXPECT_TRUE(torch::allclose(l1->delta().narrow(0, 192, 256), torch::mm(mB, mA), 1e-5, 1e-5));
  EXPECT_EQ(l1->delta().narrow(0, 0, 192).abs().max().item<double>(), 0.0);
  // Written fused (kohya) and read back: the same deltas.
  expect_same_deltas(w, through(w, LoraLayout::kKohya), "fused");
}

TEST(LoraFile, AlphaComesFromTensorsThenPeftMetadataThenTheRank) {
  torch::manual_seed(4);
  auto A = torch::randn({4, 64}), B = torch::randn({64, 4});
  NamedTensors t = {
      {"transformer.transformer_blocks.0.attn.to_out.0.lora_A.weight", A},
      {"transformer.transformer_blocks.0.attn.to_out.0.lora_B.weight", B},
      {"transformer.transformer_blocks.0.ff.net.2.lora_A.weight", torch::randn({4, 256})},
      {"transformer.transformer_blocks.0.ff.net.2.lora_B.weight", torch::randn({64, 4})}};
  EXPECT_EQ(lora_from_tensors(t, {}, "f").modules[0].scale(), 1.0);  // no alpha: alpha = r
  const std::string md =
      R"({"transformer.r": 4, "transformer.lora_alpha": 8, "transformer.alpha_pattern": {"ff.net.2": 2}})";
  const auto w = lora_from_tensors(t, {{"lora_adapter_metadata", md}}, "f");
  EXPECT_EQ(w.find("double_blocks.0.img_attn.proj")->scale(), 2.0);
  EXPECT_EQ(w.find("double_blocks.0.img_mlp.2")->scale(), 0.5);
  EXPECT_NE(error_of([&] {
              lora_from_tensors(t, {{"lora_adapter_metadata", "{"}}, "f.st");
            }).find("f.st: metadata lora_adapter_metadata is not JSON"),
            std::string::npos);
}

TEST(LoraFile, ReadsOtherTrainersNamesAndSkipsTextEncoders) {
  torch::manual_seed(5);
  NamedTensors t = {
      // OneTrainer: kohya style over diffusers names.
      {"lora_transformer_single_transformer_blocks_0_proj_out.lora_down.weight",
       torch::randn({2, 320})},
      {"lora_transformer_single_transformer_blocks_0_proj_out.lora_up.weight",
       torch::randn({64, 2})},
      {"lora_transformer_single_transformer_blocks_0_proj_out.alpha", torch::scalar_tensor(1.0)},
      // BFL names without a prefix (BFL's own LoRAs).
      {"double_blocks.1.txt_attn.proj.lora_A.weight", torch::randn({2, 64})},
      {"double_blocks.1.txt_attn.proj.lora_B.weight", torch::randn({64, 2})},
      {"lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", torch::randn({2, 8})},
      {"lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight", torch::randn({8, 2})}};
  const auto w = lora_from_tensors(t, {}, "mixed.safetensors");
  EXPECT_EQ(w.text_encoder_tensors, 2);
  ASSERT_EQ(w.modules.size(), 2u);
  EXPECT_EQ(w.modules[0].module, "single_blocks.0.linear2");
  EXPECT_EQ(w.modules[0].scale(), 0.5);
  EXPECT_EQ(w.modules[1].module, "double_blocks.1.txt_attn.proj");
}

TEST(LoraFile, BadFilesNameTheKey) {
  auto msg = [](NamedTensors t) { return error_of([&] { lora_from_tensors(t, {}, "x.st"); }); };
  EXPECT_EQ(
      msg({{"double_blocks.0.img_attn.qkvv.lora_A.weight", torch::zeros({1, 1})}}),
      "x.st: key 'double_blocks.0.img_attn.qkvv.lora_A.weight' is no FLUX.1 LoRA tensor "
      "fluxtrain reads (expected diffusion_model.<BFL layer>.lora_A.weight, "
      "lora_unet_<BFL layer>.lora_down.weight or transformer.<diffusers layer>.lora_A.weight, "
      "with lora_B/lora_up and .alpha)");
  EXPECT_EQ(msg({{"lora_unet_img_in.lora_down.weight", torch::zeros({2, 16})}}),
            "x.st: the adapter on 'img_in' (lora_unet_img_in.lora_down.weight) has no up "
            "(lora_B / lora_up) matrix");
  EXPECT_EQ(msg({{"lora_unet_img_in.lora_down.weight", torch::zeros({2, 16})},
                 {"lora_unet_img_in.lora_up.weight", torch::zeros({64, 3})}}),
            "x.st: the adapter on 'img_in' has down [2, 16] and up [64, 3], expected [r, in] and "
            "[out, r]");
  EXPECT_NE(msg({{"diffusion_model.img_in.lora_B.bias", torch::zeros({64})}})
                .find("lora_B.bias tensors are not applied"),
            std::string::npos);
  EXPECT_EQ(msg({{"lora_te1_x.lora_down.weight", torch::zeros({1, 1})}}),
            "x.st: holds no FLUX.1 transformer LoRA tensors (1 text-encoder tensors)");
}

TEST(LoraFile, MetadataRecordsRankAlphaAndTheLoadersConfig) {
  const auto w = random_lora({"double_blocks.0.img_attn.qkv", "img_in"}, 4, 8.0);
  LoraDescription d{"/models/flux-dev", "flux-1-dev", "attn_mlp", 120, 0.1};
  const auto kohya = lora_layout_metadata(w, LoraLayout::kKohya, d);
  EXPECT_EQ(kohya.at("ss_network_module"), "networks.lora_flux");
  EXPECT_EQ(kohya.at("ss_network_dim"), "4");
  EXPECT_EQ(kohya.at("ss_network_alpha"), "8");
  EXPECT_EQ(kohya.at("modelspec.architecture"), "flux-1-dev/lora");
  EXPECT_EQ(kohya.at("fluxtrain.steps"), "120");
  EXPECT_EQ(kohya.at("fluxtrain.base_model"), "/models/flux-dev");
  const auto diff = lora_layout_metadata(w, LoraLayout::kDiffusers, d);
  const auto cfg = nlohmann::json::parse(diff.at("lora_adapter_metadata"));
  EXPECT_EQ(cfg["transformer.r"], 4);
  EXPECT_EQ(cfg["transformer.lora_alpha"], 4);  // the scale is folded into lora_B
  EXPECT_EQ(cfg["transformer.use_dora"], false);
  EXPECT_EQ(cfg["transformer.target_modules"],
            (nlohmann::json{"transformer_blocks.0.attn.to_k", "transformer_blocks.0.attn.to_q",
                            "transformer_blocks.0.attn.to_v", "x_embedder"}));
  EXPECT_EQ(diff.at("fluxtrain.alpha"), "8");
}

TEST(LoraFile, WarnsWhereALoaderWouldDropAdapters) {
  const std::vector<std::string> m = {"double_blocks.0.img_attn.qkv", "img_in",
                                      "final_layer.linear"};
  EXPECT_TRUE(lora_layout_gaps(m, parse_lora_formats("all")).empty());
  EXPECT_TRUE(lora_layout_gaps(m, {LoraLayout::kDiffusers}).empty());
  const auto kohya = lora_layout_gaps(m, {LoraLayout::kKohya});
  ASSERT_EQ(kohya.size(), 1u);
  EXPECT_NE(kohya[0].find("drops the adapters on img_in, final_layer.linear"), std::string::npos);
  EXPECT_TRUE(lora_layout_gaps({"double_blocks.0.img_attn.qkv"}, {LoraLayout::kKohya}).empty());
  const auto comfy = lora_layout_gaps(m, {LoraLayout::kComfyUI});
  ASSERT_EQ(comfy.size(), 1u);
  EXPECT_NE(comfy[0].find("diffusers loads nothing from this layout"), std::string::npos);
  EXPECT_EQ(error_of([] { parse_lora_formats("comfy"); }),
            "lora_format: 'comfy' (expected comfyui, diffusers, kohya or all, comma-separated)");
  EXPECT_EQ(parse_lora_formats("kohya,diffusers,kohya"),
            (std::vector<LoraLayout>{LoraLayout::kKohya, LoraLayout::kDiffusers}));
}

TEST(LoraMerge, MergesDeltasAtAStrengthAndParsesSpecs) {
  const auto w = random_lora({"double_blocks.0.img_attn.qkv"}, 2, 4.0);
  NamedTensors model = {{"double_blocks.0.img_attn.qkv.weight", torch::randn({192, 64})}};
  const auto before = model[0].second.clone();
  EXPECT_EQ(merge_lora(model, w, 0.5), 1);
  EXPECT_TRUE(torch::allclose(model[0].second,
                              before + 0.5 * 2.0 * torch::mm(w.modules[0].up, w.modules[0].down),
                              1e-5, 1e-5));
  NamedTensors other = {{"img_in.weight", torch::zeros({64, 16})}};
  LoraWeights named = w;
  named.origin = "a.safetensors";
  EXPECT_EQ(error_of([&] { merge_lora(other, named, 1.0); }),
            "a.safetensors: has an adapter on 'double_blocks.0.img_attn.qkv', a layer this model "
            "does not have");
  EXPECT_EQ(parse_lora_spec("style.safetensors:0.75").strength, 0.75);
  EXPECT_EQ(parse_lora_spec("style.safetensors:0.75").path, "style.safetensors");
  EXPECT_EQ(parse_lora_spec("dir:name/style.safetensors").path, "dir:name/style.safetensors");
  EXPECT_EQ(parse_lora_spec("style.safetensors").strength, 1.0);
}
TEST(LoraNames, UnderscoredNamesMapBackToModules) {
  EXPECT_EQ(bfl_module_from_underscored("double_blocks_12_img_attn_qkv"),
            "double_blocks.12.img_attn.qkv");
  EXPECT_EQ(bfl_module_from_underscored("single_blocks_3_modulation_lin"),
            "single_blocks.3.modulation.lin");
  EXPECT_EQ(bfl_module_from_underscored("final_layer_adaLN_modulation_1"),
            "final_layer.adaLN_modulation.1");
  EXPECT_EQ(bfl_module_from_underscored("time_in_out_layer"), "time_in.out_layer");
  EXPECT_EQ(bfl_module_from_underscored("double_blocks_0_img_attn_norm"), std::nullopt);
  EXPECT_EQ(diffusers_module_from_underscored("transformer_blocks_2_attn_to_out_0"),
            "transformer_blocks.2.attn.to_out.0");
  EXPECT_EQ(diffusers_module_from_underscored("single_transformer_blocks_0_proj_mlp"),
            "single_transformer_blocks.0.proj_mlp");
  EXPECT_EQ(kohya_lora_name("double_blocks.0.txt_mlp.2"), "lora_unet_double_blocks_0_txt_mlp_2");
  EXPECT_TRUE(is_flux_linear_module("guidance_in.in_layer"));
  EXPECT_FALSE(is_flux_linear_module("double_blocks.0.img_attn.norm.query_norm"));
}
