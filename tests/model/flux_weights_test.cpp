// FLUX.1 transformer checkpoints: the BFL <-> diffusers name table (against hand-written pairs
// and the fixture's hand-written splits), architecture inference from both layouts (tiny files
// and full-size flux-dev / flux-schnell headers over sparse files), loading, export and its
// round trips, and one-line errors for malformed checkpoints.
#include "model/flux_weights.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "fixtures/fixtures.h"
#include "fixtures/flux_fixture.h"
#include "model/latents.h"
#include "model/presets.h"
#include "test_util.h"

using namespace fluxtrain;
using fluxtrain::testing::error_of;
namespace fs = std::filesystem;

namespace {

std::string params_str(const FluxParams& p) {
  std::string axes;
  for (auto a : p.axes_dim) axes += std::to_string(a) + " ";
  return fmt::format(
      "in {} out {} vec {} ctx {} hidden {} mlp {} heads {} depth {}+{} axes {}theta {} qkv_bias "
      "{} guidance {}",
      p.in_channels, p.out_channels, p.vec_in_dim, p.context_in_dim, p.hidden_size, p.mlp_ratio,
      p.num_heads, p.depth, p.depth_single_blocks, axes, p.theta, p.qkv_bias, p.guidance_embed);
}

std::string temp_dir(const std::string& name) {
  return fluxtrain::testing::fresh_temp_dir("flux_weights_" + name).string();
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// All tensors of a file (or index) by name.
std::map<std::string, torch::Tensor> load_all(const std::string& path) {
  ShardedSafetensors st(path);
  std::map<std::string, torch::Tensor> out;
  for (const auto& n : st.names()) out[n] = st.load(n);
  return out;
}

void expect_same_tensors(const std::map<std::string, torch::Tensor>& a,
                         const std::map<std::string, torch::Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    EXPECT_EQ(t.scalar_type(), b.at(name).scalar_type()) << name;
    EXPECT_TRUE(torch::equal(t, b.at(name))) << name;
  }
}

// The fixture's tensors as one layout's state dict.
NamedTensors fixture_state(const FluxParams& p, uint64_t seed, WeightLayout layout) {
  NamedTensors out;
  for (auto& t : fixtures::tiny_flux_tensors(p, seed)) {
    if (layout == WeightLayout::kBfl)
      out.emplace_back(t.bfl_name, t.bfl_value);
    else
      for (auto& d : t.diffusers) out.push_back(d);
  }
  return out;
}

std::map<std::string, torch::Tensor> as_map(const NamedTensors& t) {
  return {t.begin(), t.end()};
}

// A single-line UserError message that mentions every piece.
void expect_error(const std::function<void()>& f, const std::vector<std::string>& pieces) {
  const std::string msg = error_of(f);
  ASSERT_FALSE(msg.empty()) << "no UserError; expected one mentioning " << pieces[0];
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  for (const auto& p : pieces) EXPECT_NE(msg.find(p), std::string::npos) << p << " in: " << msg;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Name table.

TEST(WeightNames, KnownPairsBothWays) {
  // Written out by hand from diffusers' convert_flux_to_diffusers.py / FluxTransformer2DModel.
  const std::vector<std::pair<std::string, std::vector<std::string>>> pairs = {
      {"img_in.weight", {"x_embedder.weight"}},
      {"txt_in.bias", {"context_embedder.bias"}},
      {"time_in.in_layer.weight", {"time_text_embed.timestep_embedder.linear_1.weight"}},
      {"time_in.out_layer.bias", {"time_text_embed.timestep_embedder.linear_2.bias"}},
      {"vector_in.in_layer.weight", {"time_text_embed.text_embedder.linear_1.weight"}},
      {"vector_in.out_layer.weight", {"time_text_embed.text_embedder.linear_2.weight"}},
      {"guidance_in.in_layer.bias", {"time_text_embed.guidance_embedder.linear_1.bias"}},
      {"guidance_in.out_layer.weight", {"time_text_embed.guidance_embedder.linear_2.weight"}},
      {"double_blocks.7.img_mod.lin.weight", {"transformer_blocks.7.norm1.linear.weight"}},
      {"double_blocks.0.txt_mod.lin.bias", {"transformer_blocks.0.norm1_context.linear.bias"}},
      {"double_blocks.3.img_attn.qkv.weight",
       {"transformer_blocks.3.attn.to_q.weight", "transformer_blocks.3.attn.to_k.weight",
        "transformer_blocks.3.attn.to_v.weight"}},
      {"double_blocks.18.txt_attn.qkv.bias",
       {"transformer_blocks.18.attn.add_q_proj.bias", "transformer_blocks.18.attn.add_k_proj.bias",
        "transformer_blocks.18.attn.add_v_proj.bias"}},
      {"double_blocks.0.img_attn.norm.query_norm.scale",
       {"transformer_blocks.0.attn.norm_q.weight"}},
      {"double_blocks.0.img_attn.norm.key_norm.scale", {"transformer_blocks.0.attn.norm_k.weight"}},
      {"double_blocks.2.txt_attn.norm.query_norm.scale",
       {"transformer_blocks.2.attn.norm_added_q.weight"}},
      {"double_blocks.2.txt_attn.norm.key_norm.scale",
       {"transformer_blocks.2.attn.norm_added_k.weight"}},
      {"double_blocks.1.img_attn.proj.weight", {"transformer_blocks.1.attn.to_out.0.weight"}},
      {"double_blocks.1.txt_attn.proj.bias", {"transformer_blocks.1.attn.to_add_out.bias"}},
      {"double_blocks.5.img_mlp.0.weight", {"transformer_blocks.5.ff.net.0.proj.weight"}},
      {"double_blocks.5.img_mlp.2.bias", {"transformer_blocks.5.ff.net.2.bias"}},
      {"double_blocks.5.txt_mlp.0.bias", {"transformer_blocks.5.ff_context.net.0.proj.bias"}},
      {"double_blocks.5.txt_mlp.2.weight", {"transformer_blocks.5.ff_context.net.2.weight"}},
      {"single_blocks.37.modulation.lin.weight",
       {"single_transformer_blocks.37.norm.linear.weight"}},
      {"single_blocks.4.linear1.weight",
       {"single_transformer_blocks.4.attn.to_q.weight",
        "single_transformer_blocks.4.attn.to_k.weight",
        "single_transformer_blocks.4.attn.to_v.weight",
        "single_transformer_blocks.4.proj_mlp.weight"}},
      {"single_blocks.4.linear1.bias",
       {"single_transformer_blocks.4.attn.to_q.bias", "single_transformer_blocks.4.attn.to_k.bias",
        "single_transformer_blocks.4.attn.to_v.bias", "single_transformer_blocks.4.proj_mlp.bias"}},
      {"single_blocks.10.norm.query_norm.scale",
       {"single_transformer_blocks.10.attn.norm_q.weight"}},
      {"single_blocks.10.norm.key_norm.scale", {"single_transformer_blocks.10.attn.norm_k.weight"}},
      {"single_blocks.0.linear2.weight", {"single_transformer_blocks.0.proj_out.weight"}},
      {"final_layer.linear.weight", {"proj_out.weight"}},
      {"final_layer.linear.bias", {"proj_out.bias"}},
      {"final_layer.adaLN_modulation.1.weight", {"norm_out.linear.weight"}},
      {"final_layer.adaLN_modulation.1.bias", {"norm_out.linear.bias"}},
  };
  for (const auto& [bfl, diffusers] : pairs) {
    const auto got = flux_bfl_to_diffusers_names(bfl);
    ASSERT_TRUE(got.has_value()) << bfl;
    EXPECT_EQ(*got, diffusers) << bfl;
    for (size_t i = 0; i < diffusers.size(); ++i) {
      const auto back = flux_diffusers_to_bfl_name(diffusers[i]);
      ASSERT_TRUE(back.has_value()) << diffusers[i];
      EXPECT_EQ(back->bfl, bfl) << diffusers[i];
      EXPECT_EQ(back->piece, static_cast<int>(i)) << diffusers[i];
      EXPECT_EQ(back->num_pieces, static_cast<int>(diffusers.size())) << diffusers[i];
    }
  }
  for (const char* bad :
       {"img_in.scale", "double_blocks.x.img_mod.lin.weight", "double_blocks.01.img_mod.lin.weight",
        "double_blocks.0.linear1.weight", "single_blocks.0.img_mod.lin.weight",
        "model.diffusion_model.img_in.weight", "double_blocks.0.img_attn.qkv.lora_A.weight",
        "final_layer.adaLN_modulation.0.weight"})
    EXPECT_FALSE(flux_bfl_to_diffusers_names(bad).has_value()) << bad;
  for (const char* bad : {"transformer_blocks.0.attn.to_q.scale", "img_in.weight",
                          "transformer_blocks.0.proj_mlp.weight",
                          "single_transformer_blocks.0.attn.add_q_proj.weight",
                          "single_transformer_blocks.a.proj_out.weight", "norm_out.weight"})
    EXPECT_FALSE(flux_diffusers_to_bfl_name(bad).has_value()) << bad;
}

TEST(WeightNames, TableCoversEveryParameterOnce) {
  for (const auto& p : {fixtures::tiny_repo_flux_params(true), model_preset("flux-dev").flux,
                        model_preset("flux-schnell").flux}) {
    const FluxWeightTable table(p);
    const auto shapes = flux_parameter_shapes(p);
    ASSERT_EQ(table.entries().size(), shapes.size());
    std::set<std::string> diffusers;
    for (size_t i = 0; i < shapes.size(); ++i) {
      const auto& e = table.entries()[i];
      EXPECT_EQ(e.bfl, shapes[i].name);
      EXPECT_EQ(e.shape, shapes[i].shape);
      int64_t rows = 0;
      for (size_t k = 0; k < e.diffusers.size(); ++k) {
        EXPECT_TRUE(diffusers.insert(e.diffusers[k]).second) << e.diffusers[k];
        size_t piece = 99;
        EXPECT_EQ(table.by_diffusers(e.diffusers[k], &piece), &e);
        EXPECT_EQ(piece, k);
        rows += e.rows[k];
      }
      EXPECT_EQ(rows, e.shape[0]) << e.bfl;
      EXPECT_EQ(table.by_bfl(e.bfl), &e);
    }
  }
  // flux-dev: 19 x 2 x (2 + 2 + 3) fused q/k/v pieces replace 19 x 2 x 2 qkv tensors, and
  // 38 x 2 x 4 single-block pieces replace 38 x 2 linear1 tensors.
  const FluxWeightTable dev(model_preset("flux-dev").flux);
  size_t pieces = 0;
  for (const auto& e : dev.entries()) pieces += e.diffusers.size();
  EXPECT_EQ(pieces, dev.entries().size() + 19 * 2 * 2 * 2 + 38 * 2 * 3);
  const auto* linear1 = dev.by_bfl("single_blocks.0.linear1.weight");
  ASSERT_NE(linear1, nullptr);
  EXPECT_EQ(linear1->rows, (std::vector<int64_t>{3072, 3072, 3072, 12288}));
  EXPECT_EQ(dev.by_bfl("double_blocks.19.img_mod.lin.weight"), nullptr);
  EXPECT_EQ(dev.by_diffusers("single_transformer_blocks.38.proj_out.weight"), nullptr);
}

TEST(WeightNames, SplitsAndFinalLayerSwapOnValues) {
  // By hand: q/k/v are row blocks of qkv in that order; the final modulation's halves swap.
  const FluxParams p = fixtures::tiny_repo_flux_params(false);
  const int64_t H = p.hidden_size;
  const FluxWeightTable table(p);
  const auto& qkv = *table.by_bfl("double_blocks.0.img_attn.qkv.weight");
  auto fused = torch::arange(3 * H * H, torch::kFloat).reshape({3 * H, H});
  auto pieces = flux_tensor_to_diffusers(qkv, fused);
  ASSERT_EQ(pieces.size(), 3u);
  EXPECT_EQ(pieces[0].first, "transformer_blocks.0.attn.to_q.weight");
  EXPECT_EQ(pieces[2].first, "transformer_blocks.0.attn.to_v.weight");
  EXPECT_EQ(pieces[1].second[0][0].item<float>(), float(H * H));  // to_k starts at row H
  EXPECT_TRUE(torch::equal(pieces[2].second, fused.narrow(0, 2 * H, H)));
  const auto& mod = *table.by_bfl("final_layer.adaLN_modulation.1.bias");
  auto bias = torch::arange(2 * H, torch::kFloat);  // shift = 0..H-1, scale = H..2H-1
  auto swapped = flux_tensor_to_diffusers(mod, bias);
  ASSERT_EQ(swapped.size(), 1u);
  EXPECT_EQ(swapped[0].first, "norm_out.linear.bias");
  EXPECT_EQ(swapped[0].second[0].item<float>(), float(H));  // scale first
  EXPECT_EQ(swapped[0].second[H].item<float>(), 0.f);
  EXPECT_TRUE(torch::equal(flux_tensor_from_diffusers(mod, {swapped[0].second}), bias));

  // Whole state dicts against the fixture's hand-written diffusers names and values.
  for (bool guidance : {false, true}) {
    const auto q = fixtures::tiny_repo_flux_params(guidance);
    const auto bfl = fixture_state(q, 5, WeightLayout::kBfl);
    const auto diffusers = fixture_state(q, 5, WeightLayout::kDiffusers);
    const auto to_d = bfl_to_diffusers(bfl, q);
    EXPECT_EQ(to_d.size(), diffusers.size());
    expect_same_tensors(as_map(to_d), as_map(diffusers));
    expect_same_tensors(as_map(diffusers_to_bfl(diffusers, q)), as_map(bfl));
  }
}

TEST(WeightNames, ConversionErrorsNameTheTensor) {
  const auto p = fixtures::tiny_repo_flux_params(false);
  auto bfl = fixture_state(p, 1, WeightLayout::kBfl);
  auto extra = bfl;
  extra.emplace_back("guidance_in.in_layer.weight", torch::zeros({64, 256}));
  expect_error(
      [&] { bfl_to_diffusers(extra, p); },
      {"guidance_in.in_layer.weight", "not part of a FLUX transformer", "guidance input no"});
  auto missing = bfl;
  missing.erase(missing.begin() + 3);
  expect_error([&] { bfl_to_diffusers(missing, p); }, {bfl[3].first, "is missing"});
  auto twice = bfl;
  twice.push_back(bfl[0]);
  expect_error([&] { bfl_to_diffusers(twice, p); }, {bfl[0].first, "twice"});
  auto wrong = bfl;
  for (auto& [n, t] : wrong)
    if (n == "double_blocks.0.txt_attn.qkv.weight") t = torch::zeros({64, 64});
  expect_error([&] { bfl_to_diffusers(wrong, p); },
               {"double_blocks.0.txt_attn.qkv.weight", "[64, 64]", "[192, 64]"});

  auto d = fixture_state(p, 1, WeightLayout::kDiffusers);
  auto dmissing = d;
  dmissing.erase(std::find_if(dmissing.begin(), dmissing.end(), [](const auto& kv) {
    return kv.first == "single_transformer_blocks.0.proj_mlp.bias";
  }));
  expect_error([&] { diffusers_to_bfl(dmissing, p); },
               {"single_transformer_blocks.0.proj_mlp.bias", "is missing"});
  auto dextra = d;
  dextra.emplace_back("transformer_blocks.1.attn.to_q.weight", torch::zeros({64, 64}));
  expect_error([&] { diffusers_to_bfl(dextra, p); },
               {"transformer_blocks.1.attn.to_q.weight", "not part of a FLUX transformer"});
}

// ---------------------------------------------------------------------------------------------
// Inspecting checkpoints.

TEST(FluxWeights, InspectInfersTheArchitectureFromBothLayouts) {
  const std::string dir = temp_dir("inspect");
  for (bool guidance : {false, true}) {
    const auto p = fixtures::tiny_repo_flux_params(guidance);
    int64_t numel = 0;
    for (const auto& s : flux_parameter_shapes(p)) numel += s.numel();
    const std::string tag = guidance ? "g" : "n";
    const std::string bfl = dir + "/" + tag + ".safetensors";
    const std::string diffusers = dir + "/" + tag + "-diffusers/transformer";
    const std::string sharded = dir + "/" + tag + "-sharded";
    fixtures::write_tiny_flux_transformer(bfl, WeightLayout::kBfl, p, 3);
    fixtures::write_tiny_flux_transformer(diffusers, WeightLayout::kDiffusers, p, 3);
    fixtures::write_tiny_flux_transformer(sharded, WeightLayout::kDiffusers, p, 3, 3);
    struct Case {
      std::string path;
      WeightLayout layout;
      size_t files;
    };
    for (const auto& c : std::vector<Case>{
             {bfl, WeightLayout::kBfl, 1},
             {diffusers, WeightLayout::kDiffusers, 1},
             {dir + "/" + tag + "-diffusers", WeightLayout::kDiffusers, 1},  // pipeline dir
             {diffusers + "/diffusion_pytorch_model.safetensors", WeightLayout::kDiffusers, 1},
             {sharded, WeightLayout::kDiffusers, 3},
             {sharded + "/diffusion_pytorch_model.safetensors.index.json", WeightLayout::kDiffusers,
              3}}) {
      const FluxWeights w = inspect_flux_weights(c.path);
      EXPECT_EQ(params_str(w.params), params_str(p)) << c.path;
      EXPECT_EQ(w.layout, c.layout) << c.path;
      EXPECT_EQ(w.files.size(), c.files) << c.path;
      EXPECT_EQ(w.path, c.path);
      EXPECT_EQ(w.preset, "custom");
      EXPECT_EQ(w.stored_dtype, torch::kFloat);
      EXPECT_EQ(w.num_params, numel) << c.path;
    }
  }
  // Without config.json the axes follow the head dim (32 -> 4, 14, 14); with one, its
  // axes_dims_rope wins.
  const auto p = fixtures::tiny_repo_flux_params(false);
  const std::string d = dir + "/noconfig";
  fixtures::write_tiny_flux_transformer(d, WeightLayout::kDiffusers, p, 3);
  fs::remove(d + "/config.json");
  EXPECT_EQ(inspect_flux_weights(d).params.axes_dim, (std::vector<int64_t>{4, 14, 14}));
  auto cfg = fixtures::tiny_flux_diffusers_config(p);
  cfg["axes_dims_rope"] = {8, 12, 12};
  fixtures::write_json(d + "/config.json", cfg);
  EXPECT_EQ(inspect_flux_weights(d).params.axes_dim, (std::vector<int64_t>{8, 12, 12}));
  EXPECT_EQ(inspect_flux_weights(d, {2, 14, 16}).params.axes_dim,
            (std::vector<int64_t>{2, 14, 16}));
  fs::remove_all(dir);
}

TEST(FluxWeights, DefaultAxesAndPresetNames) {
  EXPECT_EQ(default_axes_dim(128), (std::vector<int64_t>{16, 56, 56}));
  EXPECT_EQ(default_axes_dim(32), (std::vector<int64_t>{4, 14, 14}));
  EXPECT_EQ(default_axes_dim(64), (std::vector<int64_t>{8, 28, 28}));
  EXPECT_FALSE(default_axes_dim(16).has_value());  // 2, 7, 7: odd
  EXPECT_FALSE(default_axes_dim(40).has_value());
  EXPECT_EQ(flux_preset_of(model_preset("flux-dev").flux), "flux-dev");
  EXPECT_EQ(flux_preset_of(model_preset("flux-schnell").flux), "flux-schnell");
  EXPECT_EQ(flux_preset_of(model_preset("tiny").flux), "custom");
  auto p = model_preset("flux-dev").flux;
  p.depth_single_blocks = 37;
  EXPECT_EQ(flux_preset_of(p), "custom");
  p = model_preset("flux-schnell").flux;
  p.context_in_dim = 2048;
  EXPECT_EQ(flux_preset_of(p), "custom");
}

namespace {

// A safetensors file with the given tensors' header and a data area that is never written: the
// file is extended with truncate(), so a filesystem with holes stores only the header. Returns
// false when the filesystem allocated the data anyway (the file is then removed).
bool write_sparse_safetensors(const std::string& path,
                              const std::vector<std::pair<std::string, std::vector<int64_t>>>& t) {
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (const auto& [name, shape] : t) {
    uint64_t bytes = 2;
    for (auto d : shape) bytes *= static_cast<uint64_t>(d);
    header[name] = {
        {"dtype", "BF16"}, {"shape", shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  while (text.size() % 8) text += ' ';
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    uint64_t n = text.size();
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
    out << text;
  }
  EXPECT_EQ(::truncate(path.c_str(), static_cast<off_t>(8 + text.size() + offset)), 0);
  struct stat st {};
  ::stat(path.c_str(), &st);
  if (static_cast<uint64_t>(st.st_blocks) * 512 > (uint64_t{64} << 20)) {
    fs::remove(path);
    return false;
  }
  return true;
}

}  // namespace

TEST(FluxWeights, FullSizePresetsAreRecognisedFromHeaders) {
  const std::string dir = temp_dir("presets");
  for (const std::string preset : {"flux-dev", "flux-schnell"}) {
    const auto p = model_preset(preset).flux;
    std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
    for (const auto& s : flux_parameter_shapes(p)) shapes.emplace_back(s.name, s.shape);
    const std::string file = dir + "/" + preset + ".safetensors";
    if (!write_sparse_safetensors(file, shapes)) GTEST_SKIP() << "no sparse files in " << dir;
    const auto w = inspect_flux_weights(file);
    EXPECT_EQ(w.preset, preset);
    EXPECT_EQ(w.layout, WeightLayout::kBfl);
    EXPECT_EQ(w.stored_dtype, torch::kBFloat16);
    EXPECT_EQ(params_str(w.params), params_str(p));
    EXPECT_EQ(w.num_params, preset == "flux-dev" ? 11901408320LL : 11891178560LL);
  }
  // FLUX.1-dev as diffusers publishes it: three shards, an index, and its config.json (which has
  // neither axes_dims_rope nor out_channels).
  const auto p = model_preset("flux-dev").flux;
  const std::string t = dir + "/FLUX.1-dev/transformer";
  fs::create_directories(t);
  std::vector<std::pair<std::string, std::vector<int64_t>>> pieces;
  const FluxWeightTable dev_table(p);
  for (const auto& e : dev_table.entries())
    for (size_t k = 0; k < e.diffusers.size(); ++k)
      pieces.emplace_back(e.diffusers[k], e.piece_shape(k));
  nlohmann::json weight_map;
  for (size_t s = 0; s < 3; ++s) {
    const std::string file =
        fmt::format("diffusion_pytorch_model-{:05d}-of-00003.safetensors", s + 1);
    std::vector<std::pair<std::string, std::vector<int64_t>>> part(
        pieces.begin() + static_cast<std::ptrdiff_t>(s * pieces.size() / 3),
        pieces.begin() + static_cast<std::ptrdiff_t>((s + 1) * pieces.size() / 3));
    for (const auto& kv : part) weight_map[kv.first] = file;
    ASSERT_TRUE(write_sparse_safetensors(t + "/" + file, part));
  }
  fixtures::write_json(t + "/diffusion_pytorch_model.safetensors.index.json",
                       {{"metadata", {{"total_size", 23802816640LL}}}, {"weight_map", weight_map}});
  fixtures::write_json(t + "/config.json", {{"_class_name", "FluxTransformer2DModel"},
                                            {"_diffusers_version", "0.30.0.dev0"},
                                            {"attention_head_dim", 128},
                                            {"guidance_embeds", true},
                                            {"in_channels", 64},
                                            {"joint_attention_dim", 4096},
                                            {"num_attention_heads", 24},
                                            {"num_layers", 19},
                                            {"num_single_layers", 38},
                                            {"patch_size", 1},
                                            {"pooled_projection_dim", 768}});
  const auto w = inspect_flux_weights(dir + "/FLUX.1-dev");
  EXPECT_EQ(w.preset, "flux-dev");
  EXPECT_EQ(w.layout, WeightLayout::kDiffusers);
  EXPECT_EQ(w.files.size(), 3u);
  EXPECT_EQ(w.num_params, 11901408320LL);
  EXPECT_EQ(params_str(w.params), params_str(p));
  fs::remove_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Loading and exporting.

TEST(FluxWeights, BothLayoutsLoadTheSameModel) {
  const std::string dir = temp_dir("load");
  for (bool guidance : {false, true}) {
    const auto p = fixtures::tiny_repo_flux_params(guidance);
    fixtures::write_tiny_flux_transformer(dir + "/bfl.safetensors", WeightLayout::kBfl, p, 9);
    fixtures::write_tiny_flux_transformer(dir + "/diffusers", WeightLayout::kDiffusers, p, 9, 2);
    const auto wb = inspect_flux_weights(dir + "/bfl.safetensors");
    const auto wd = inspect_flux_weights(dir + "/diffusers");
    Flux a(wb.params), b(wd.params);
    load_flux_weights(*a, wb);
    load_flux_weights(*b, wd);
    // Every parameter is the fixture's BFL value, bit for bit.
    const auto expected = fixtures::tiny_flux_bfl_weights(p, 9);
    auto pa = a->named_parameters(), pb = b->named_parameters();
    ASSERT_EQ(pa.size(), expected.size());
    for (const auto& kv : pa) {
      EXPECT_TRUE(torch::equal(kv.value(), expected.at(kv.key()))) << kv.key();
      EXPECT_TRUE(torch::equal(pb[kv.key()], expected.at(kv.key()))) << kv.key();
    }
    // Same outputs on random inputs.
    torch::NoGradGuard no_grad;
    const int64_t B = 2, Lt = 5;
    auto gen = at::detail::createCPUGenerator(17);
    auto img = torch::randn({B, 16, 64}, gen), txt = torch::randn({B, Lt, 32}, gen);
    auto y = torch::randn({B, 32}, gen), t = torch::tensor({0.25f, 0.8f});
    auto ids = image_ids(B, 8, 8, torch::kCPU), tids = text_ids(B, Lt, torch::kCPU);
    std::optional<torch::Tensor> g;
    if (guidance) g = torch::tensor({3.5f, 1.f});
    auto out_a = a->forward(FluxInputs{img, ids, txt, tids, t, y, g});
    auto out_b = b->forward(FluxInputs{img, ids, txt, tids, t, y, g});
    EXPECT_TRUE(torch::equal(out_a, out_b));
    EXPECT_GT(out_a.abs().max().item<float>(), 0.f);
    // read_flux_tensors_bfl gives the same tensors, in the requested dtype.
    for (const auto& [name, tensor] : read_flux_tensors_bfl(wd, torch::kBFloat16)) {
      EXPECT_EQ(tensor.scalar_type(), torch::kBFloat16);
      EXPECT_TRUE(torch::equal(tensor, expected.at(name).to(torch::kBFloat16))) << name;
    }
  }
  // A model built with other params is refused.
  const auto wb = inspect_flux_weights(dir + "/bfl.safetensors");
  auto other = wb.params;
  other.depth_single_blocks = 2;
  Flux c(other);
  expect_error([&] { load_flux_weights(*c, wb); }, {dir + "/bfl.safetensors", "single_blocks.1"});
  fs::remove_all(dir);
}

TEST(FluxWeights, ExportRoundTripsAreBitIdentical) {
  const std::string dir = temp_dir("export");
  const auto p = fixtures::tiny_repo_flux_params(true);
  const std::string original = dir + "/original.safetensors";
  fixtures::write_tiny_flux_transformer(original, WeightLayout::kBfl, p, 4);
  fixtures::write_tiny_flux_transformer(dir + "/fixture-diffusers", WeightLayout::kDiffusers, p, 4);

  // In memory: BFL -> diffusers -> BFL.
  const auto bfl = read_flux_tensors_bfl(inspect_flux_weights(original), torch::kFloat);
  export_flux_weights(bfl, p, dir + "/diffusers", WeightLayout::kDiffusers);
  EXPECT_TRUE(fs::exists(dir + "/diffusers/diffusion_pytorch_model.safetensors"));
  EXPECT_FALSE(fs::exists(dir + "/diffusers/diffusion_pytorch_model.safetensors.index.json"));
  // The diffusers tensors are exactly the fixture's hand-made ones.
  expect_same_tensors(load_all(dir + "/diffusers/diffusion_pytorch_model.safetensors"),
                      load_all(dir + "/fixture-diffusers/diffusion_pytorch_model.safetensors"));
  std::ifstream cin(dir + "/diffusers/config.json");
  auto config = nlohmann::json::parse(cin);
  auto expected = fixtures::tiny_flux_diffusers_config(p);
  config.erase("_diffusers_version");
  expected.erase("_diffusers_version");
  EXPECT_EQ(config, expected);
  const auto wd = inspect_flux_weights(dir + "/diffusers");
  EXPECT_EQ(params_str(wd.params), params_str(p));
  export_flux_weights(read_flux_tensors_bfl(wd, torch::kFloat), wd.params,
                      dir + "/back.safetensors", WeightLayout::kBfl);
  EXPECT_EQ(read_bytes(dir + "/back.safetensors"), read_bytes(original));

  // Streaming: the same through convert_flux_weights (over the directories written above).
  convert_flux_weights(inspect_flux_weights(original), dir + "/diffusers",
                       WeightLayout::kDiffusers);
  const int64_t bytes = convert_flux_weights(inspect_flux_weights(dir + "/diffusers"),
                                             dir + "/back2.safetensors", WeightLayout::kBfl);
  EXPECT_EQ(read_bytes(dir + "/back2.safetensors"), read_bytes(original));
  EXPECT_EQ(bytes, inspect_flux_weights(original).num_params * 4);
  // No temporary files are left behind.
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();

  // Axes that a reader would not infer travel in the BFL file's metadata.
  auto q = p;
  q.axes_dim = {8, 12, 12};
  export_flux_weights(bfl, q, dir + "/axes.safetensors", WeightLayout::kBfl);
  EXPECT_EQ(inspect_flux_weights(dir + "/axes.safetensors").params.axes_dim, q.axes_dim);
  fs::remove_all(dir);
}

TEST(FluxWeights, ExportShardsBySize) {
  const std::string dir = temp_dir("shards");
  const auto p = fixtures::tiny_repo_flux_params(false);
  const std::string original = dir + "/original.safetensors";
  fixtures::write_tiny_flux_transformer(original, WeightLayout::kBfl, p, 6);
  const auto w = inspect_flux_weights(original);
  const int64_t max_bytes = 300 * 1024;  // the model is ~1 MB in fp32
  export_flux_weights(read_flux_tensors_bfl(w, torch::kFloat), p, dir + "/out",
                      WeightLayout::kDiffusers, max_bytes);
  std::ifstream in(dir + "/out/diffusion_pytorch_model.safetensors.index.json");
  ASSERT_TRUE(in.good());
  const auto index = nlohmann::json::parse(in);
  std::set<std::string> files;
  for (const auto& [name, file] : index["weight_map"].items())
    files.insert(file.get<std::string>());
  ASSERT_GT(files.size(), 3u);
  const size_t n = files.size();
  int64_t total = 0;
  for (size_t s = 1; s <= n; ++s) {
    const std::string file =
        fmt::format("diffusion_pytorch_model-{:05d}-of-{:05d}.safetensors", s, n);
    ASSERT_TRUE(files.count(file)) << file;
    SafetensorsFile f(dir + "/out/" + file);
    int64_t bytes = 0;
    for (const auto& name : f.names()) bytes += static_cast<int64_t>(f.info(name).nbytes());
    EXPECT_TRUE(bytes <= max_bytes || f.size() == 1) << file << " " << bytes;
    total += bytes;
  }
  EXPECT_EQ(index["metadata"]["total_size"].get<int64_t>(), total);
  EXPECT_EQ(total, w.num_params * 4);
  EXPECT_FALSE(fs::exists(dir + "/out/diffusion_pytorch_model.safetensors"));
  const auto back = inspect_flux_weights(dir + "/out");
  EXPECT_EQ(back.files.size(), n);
  EXPECT_EQ(params_str(back.params), params_str(p));
  expect_same_tensors(as_map(read_flux_tensors_bfl(back, torch::kFloat)),
                      fixtures::tiny_flux_bfl_weights(p, 6));

  // Streaming conversion to bf16, resharded; replacing the previous export in place.
  convert_flux_weights(back, dir + "/out", WeightLayout::kDiffusers, torch::kBFloat16, 200 * 1024);
  const auto bf = inspect_flux_weights(dir + "/out");
  EXPECT_EQ(bf.stored_dtype, torch::kBFloat16);
  EXPECT_LT(bf.files.size(), n);
  std::map<std::string, torch::Tensor> want;
  for (const auto& [name, t] : fixtures::tiny_flux_bfl_weights(p, 6))
    want[name] = t.to(torch::kBFloat16);
  expect_same_tensors(as_map(read_flux_tensors_bfl(bf, torch::kBFloat16)), want);
  fs::remove_all(dir);
}

TEST(FluxWeights, ExportRefusesWhatItCannotWrite) {
  const std::string dir = temp_dir("export_errors");
  const auto p = fixtures::tiny_repo_flux_params(false);
  const auto bfl = fixture_state(p, 2, WeightLayout::kBfl);
  auto q = p;
  q.mlp_ratio = 2.0;
  Flux m(q);
  NamedTensors narrow;
  for (const auto& kv : m->named_parameters()) narrow.emplace_back(kv.key(), kv.value().detach());
  expect_error([&] { export_flux_weights(narrow, q, dir + "/d", WeightLayout::kDiffusers); },
               {dir + "/d", "mlp_ratio", "2"});
  auto missing = bfl;
  missing.pop_back();
  expect_error([&] { export_flux_weights(missing, p, dir + "/m.safetensors", WeightLayout::kBfl); },
               {dir + "/m.safetensors", bfl.back().first, "missing"});
  fixtures::write_text(dir + "/busy/notes.txt", "mine");
  expect_error([&] { export_flux_weights(bfl, p, dir + "/busy", WeightLayout::kDiffusers); },
               {dir + "/busy", "notes.txt", "refusing"});
  EXPECT_TRUE(fs::exists(dir + "/busy/notes.txt"));
  expect_error([&] { export_flux_weights(bfl, p, dir + "/busy", WeightLayout::kBfl); },
               {dir + "/busy", "is a directory"});
  fs::remove_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Malformed checkpoints.

TEST(FluxWeights, MalformedCheckpointsAreOneLineErrors) {
  const std::string dir = temp_dir("malformed");
  const auto p = fixtures::tiny_repo_flux_params(false);
  const auto bfl = fixture_state(p, 8, WeightLayout::kBfl);
  const auto diffusers = fixture_state(p, 8, WeightLayout::kDiffusers);
  auto edited = [](NamedTensors t, const std::string& drop, const std::string& add = "",
                   torch::Tensor value = {}) {
    if (!drop.empty()) {
      auto it = std::find_if(t.begin(), t.end(), [&](const auto& kv) { return kv.first == drop; });
      EXPECT_NE(it, t.end()) << drop;
      if (it != t.end()) t.erase(it);
    }
    if (!add.empty()) t.emplace_back(add, value);
    return t;
  };
  auto bfl_file = [&](const std::string& name, const NamedTensors& t) {
    const std::string path = dir + "/" + name + ".safetensors";
    save_safetensors(path, t);
    return path;
  };
  auto diffusers_dir = [&](const std::string& name, const NamedTensors& t) {
    const std::string path = dir + "/" + name;
    fs::create_directories(path);
    fixtures::write_json(path + "/config.json", fixtures::tiny_flux_diffusers_config(p));
    save_safetensors(path + "/diffusion_pytorch_model.safetensors", t);
    return path;
  };
  auto inspect = [](const std::string& path) { return [path] { inspect_flux_weights(path); }; };

  // Missing tensors.
  auto f = bfl_file("missing", edited(bfl, "double_blocks.0.txt_mlp.2.bias"));
  expect_error(inspect(f), {f, "'double_blocks.0.txt_mlp.2.bias' is missing"});
  auto d =
      diffusers_dir("missing_piece", edited(diffusers, "transformer_blocks.0.attn.to_k.weight"));
  expect_error(inspect(d), {d + "/diffusion_pytorch_model.safetensors",
                            "'transformer_blocks.0.attn.to_k.weight' is missing"});
  // Wrong shapes.
  f = bfl_file("shape", edited(bfl, "double_blocks.0.txt_attn.proj.weight",
                               "double_blocks.0.txt_attn.proj.weight", torch::zeros({64, 65})));
  expect_error(inspect(f), {f, "'double_blocks.0.txt_attn.proj.weight'", "[64, 65]", "[64, 64]"});
  d = diffusers_dir("shape_piece",
                    edited(diffusers, "transformer_blocks.0.attn.add_k_proj.weight",
                           "transformer_blocks.0.attn.add_k_proj.weight", torch::zeros({66, 64})));
  expect_error(inspect(d),
               {"diffusion_pytorch_model.safetensors",
                "'transformer_blocks.0.attn.add_k_proj.weight'", "[66, 64]", "[64, 64]"});
  // Unexpected tensors: unknown names, and known names this architecture does not have.
  f = bfl_file(
      "lora", edited(bfl, "", "double_blocks.0.img_attn.qkv.lora_A.weight", torch::zeros({4, 64})));
  expect_error(inspect(f), {f, "'double_blocks.0.img_attn.qkv.lora_A.weight'", "not part of"});
  f = bfl_file("vae_key", edited(bfl, "", "encoder.conv_in.weight", torch::zeros({1})));
  expect_error(inspect(f), {f, "'encoder.conv_in.weight'", "not part of"});
  auto no_bias = edited(bfl, "double_blocks.0.img_attn.qkv.bias");
  no_bias = edited(no_bias, "double_blocks.0.txt_attn.qkv.bias");
  no_bias.emplace_back("double_blocks.0.txt_attn.qkv.bias", torch::zeros({192}));
  f = bfl_file("stray_bias", no_bias);  // block 0's img qkv has no bias, so qkv_bias is false
  expect_error(inspect(f), {f, "'double_blocks.0.txt_attn.qkv.bias'", "qkv bias no"});
  // A gap in the block indices.
  auto gap = bfl;
  for (const auto& [name, t] : bfl)
    if (name.rfind("double_blocks.0.", 0) == 0)
      gap.emplace_back("double_blocks.2." + name.substr(16), t);
  f = bfl_file("gap", gap);
  expect_error(inspect(f), {f, "double_blocks.1", "gap"});
  auto dgap = diffusers;
  for (const auto& [name, t] : diffusers)
    if (name.rfind("single_transformer_blocks.0.", 0) == 0)
      dgap.emplace_back("single_transformer_blocks.3." + name.substr(28), t);
  d = diffusers_dir("gap", dgap);
  expect_error(inspect(d), {"single_transformer_blocks.1", "gap"});
  // config.json fields that disagree with the tensors.
  d = diffusers_dir("config", diffusers);
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, nlohmann::json>>{{"num_layers", 2},
                                                           {"num_single_layers", 3},
                                                           {"attention_head_dim", 64},
                                                           {"num_attention_heads", 4},
                                                           {"joint_attention_dim", 4096},
                                                           {"pooled_projection_dim", 768},
                                                           {"in_channels", 16},
                                                           {"guidance_embeds", true},
                                                           {"axes_dims_rope", {16, 56, 56}},
                                                           {"_class_name", "AutoencoderKL"}}) {
    auto cfg = fixtures::tiny_flux_diffusers_config(p);
    cfg[key] = value;
    fixtures::write_json(d + "/config.json", cfg);
    expect_error(inspect(d), {d + "/config.json", "'" + key + "'"});
  }
  // Paths that hold no transformer.
  expect_error(inspect(dir + "/nonexistent"), {dir + "/nonexistent", "no such file"});
  fs::create_directories(dir + "/empty");
  expect_error(inspect(dir + "/empty"), {dir + "/empty", "diffusion_pytorch_model.safetensors"});
  const std::string vae = dir + "/ae.safetensors";
  save_safetensors(vae, {{"encoder.conv_in.weight", torch::zeros({2, 3, 3, 3})}});
  expect_error(inspect(vae), {vae, "holds no FLUX transformer"});
  fixtures::write_text(dir + "/junk.safetensors", "not a safetensors file at all");
  expect_error(inspect(dir + "/junk.safetensors"), {dir + "/junk.safetensors"});
  fs::remove_all(dir);
}
