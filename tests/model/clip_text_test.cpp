// CLIP text encoder: the forward against an independent float64 computation written here from the
// weight tensors (embedding lookup, layer norm, causal softmax attention per head, quick_gelu /
// gelu MLP), the pooling rule, config.json parsing and weight-file errors.
#include "model/clip_text.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "fixtures/clip_fixture.h"
#include "fixtures/fixtures.h"
#include "io/safetensors.h"
#include "test_util.h"

using namespace fluxtrain;
using fluxtrain::testing::error_of;
using fluxtrain::testing::fresh_temp_dir;

namespace {

constexpr int64_t kBos = 530, kEos = 531;

// Layer norm over the last dim, written out.
torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
                         double eps) {
  const auto mean = x.mean(-1, true);
  const auto var = (x - mean).pow(2).mean(-1, true);
  return (x - mean) / torch::sqrt(var + eps) * w + b;
}

// The first position of the row's maximum (eos_token_id == 2) or of eos_token_id (else 0).
int64_t pool_position(const std::vector<int64_t>& row, int64_t eos_token_id) {
  int64_t best = 0;
  for (size_t i = 0; i < row.size(); ++i) {
    if (eos_token_id == 2) {
      if (row[i] > row[best]) best = static_cast<int64_t>(i);
    } else if (row[i] == eos_token_id) {
      return static_cast<int64_t>(i);
    }
  }
  return eos_token_id == 2 ? best : 0;
}

struct Reference {
  torch::Tensor last_hidden_state, pooled;  // float64
};

// CLIPTextModel in float64 from the tensors of `weights`, one head and one row at a time.
Reference reference_forward(const std::string& weights, const ClipTextConfig& cfg,
                            const std::vector<std::vector<int64_t>>& ids) {
  SafetensorsFile f(weights);
  auto W = [&](const std::string& name) { return f.load(name).to(torch::kFloat64); };
  const int64_t B = static_cast<int64_t>(ids.size()), L = static_cast<int64_t>(ids[0].size()),
                H = cfg.hidden_size, h = cfg.num_attention_heads, D = H / h;
  const auto tok = W("text_model.embeddings.token_embedding.weight");
  const auto pos = W("text_model.embeddings.position_embedding.weight");
  auto x = torch::zeros({B, L, H}, torch::kFloat64);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < L; ++i) x[b][i] = tok[ids[b][i]] + pos[i];
  auto linear = [&](const torch::Tensor& v, const std::string& name) {
    return torch::matmul(v, W(name + ".weight").t()) + W(name + ".bias");
  };
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    const std::string p = "text_model.encoder.layers." + std::to_string(l) + ".";
    const auto n1 =
        layer_norm(x, W(p + "layer_norm1.weight"), W(p + "layer_norm1.bias"), cfg.layer_norm_eps);
    const auto q = linear(n1, p + "self_attn.q_proj"), k = linear(n1, p + "self_attn.k_proj"),
               v = linear(n1, p + "self_attn.v_proj");
    auto attn = torch::zeros({B, L, H}, torch::kFloat64);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t head = 0; head < h; ++head) {
        const auto qh = q[b].narrow(1, head * D, D), kh = k[b].narrow(1, head * D, D),
                   vh = v[b].narrow(1, head * D, D);  // [L, D]
        auto scores = torch::matmul(qh, kh.t()) / std::sqrt(static_cast<double>(D));
        for (int64_t i = 0; i < L; ++i)
          for (int64_t j = i + 1; j < L; ++j) scores[i][j] = -1e300;  // token i sees j <= i
        const auto e = torch::exp(scores - std::get<0>(scores.max(1, true)));
        attn[b].narrow(1, head * D, D).copy_(torch::matmul(e / e.sum(1, true), vh));
      }
    }
    x = x + linear(attn, p + "self_attn.out_proj");
    const auto n2 =
        layer_norm(x, W(p + "layer_norm2.weight"), W(p + "layer_norm2.bias"), cfg.layer_norm_eps);
    auto m = linear(n2, p + "mlp.fc1");
    m = cfg.hidden_act == "quick_gelu" ? m * torch::sigmoid(1.702 * m)
                                       : 0.5 * m * (1 + torch::erf(m / std::sqrt(2.0)));
    x = x + linear(m, p + "mlp.fc2");
  }
  x = layer_norm(x, W("text_model.final_layer_norm.weight"), W("text_model.final_layer_norm.bias"),
                 cfg.layer_norm_eps);
  auto pooled = torch::zeros({B, H}, torch::kFloat64);
  for (int64_t b = 0; b < B; ++b) pooled[b] = x[b][pool_position(ids[b], cfg.eos_token_id)];
  return {x, pooled};
}

torch::Tensor to_tensor(const std::vector<std::vector<int64_t>>& ids) {
  std::vector<int64_t> flat;
  for (const auto& row : ids) flat.insert(flat.end(), row.begin(), row.end());
  return torch::tensor(flat).view({static_cast<int64_t>(ids.size()), -1});
}

std::string write_encoder(const std::string& name, const ClipTextConfig& cfg, int shards = 1) {
  const auto dir = fresh_temp_dir(name) / "text_encoder";
  fixtures::write_tiny_clip_text_encoder(dir.string(), cfg, /*seed=*/11, shards);
  return dir.string();
}

// Rows as the tokenizer pads them: [bos] ids [eos] pad(eos)...
const std::vector<std::vector<int64_t>> kRows = {
    {kBos, 513, 516, 518, kEos, kEos, kEos, kEos, kEos, kEos},
    {kBos, kEos, kEos, kEos, kEos, kEos, kEos, kEos, kEos, kEos},
    {kBos, 64, 65, 66, 67, 68, 69, 70, 71, kEos},
};

}  // namespace

TEST(ClipText, ForwardMatchesIndependentComputation) {
  const auto cfg = fixtures::tiny_clip_text_config();
  const auto dir = write_encoder("clip_text_forward", cfg);
  auto model = load_clip_text(dir);
  const auto out = model->forward(to_tensor(kRows));
  ASSERT_EQ(out.last_hidden_state.sizes(), (std::vector<int64_t>{3, 10, 32}));
  ASSERT_EQ(out.pooled.sizes(), (std::vector<int64_t>{3, 32}));
  EXPECT_EQ(out.pooled.scalar_type(), torch::kFloat32);
  const auto ref = reference_forward(dir + "/model.safetensors", cfg, kRows);
  EXPECT_TRUE(
      torch::allclose(out.last_hidden_state.to(torch::kFloat64), ref.last_hidden_state, 1e-4, 1e-4))
      << (out.last_hidden_state.to(torch::kFloat64) - ref.last_hidden_state).abs().max();
  EXPECT_TRUE(torch::allclose(out.pooled.to(torch::kFloat64), ref.pooled, 1e-4, 1e-4));
  // Pooled rows are the end-of-text positions 4, 1 and 9.
  EXPECT_TRUE(torch::equal(out.pooled[0], out.last_hidden_state[0][4]));
  EXPECT_TRUE(torch::equal(out.pooled[1], out.last_hidden_state[1][1]));
  EXPECT_TRUE(torch::equal(out.pooled[2], out.last_hidden_state[2][9]));
  // The states vary with the tokens (not a degenerate fixture).
  EXPECT_GT((out.pooled[0] - out.pooled[1]).abs().max().item<float>(), 1e-2);
}

TEST(ClipText, GeluActivationAndFullLength) {
  auto cfg = fixtures::tiny_clip_text_config();
  cfg.hidden_act = "gelu";
  cfg.eos_token_id = kEos;
  const auto dir = write_encoder("clip_text_gelu", cfg);
  auto model = load_clip_text(dir);
  std::vector<std::vector<int64_t>> rows = {std::vector<int64_t>(77, kEos)};
  rows[0][0] = kBos;
  for (int i = 1; i < 40; ++i) rows[0][i] = (i * 37) % 512;
  const auto out = model->forward(to_tensor(rows));
  const auto ref = reference_forward(dir + "/model.safetensors", cfg, rows);
  EXPECT_TRUE(torch::allclose(out.last_hidden_state.to(torch::kFloat64), ref.last_hidden_state,
                              1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(out.pooled.to(torch::kFloat64), ref.pooled, 1e-4, 1e-4));
  EXPECT_TRUE(torch::equal(out.pooled[0], out.last_hidden_state[0][40]));
}

TEST(ClipText, CausalMaskHidesLaterTokens) {
  const auto cfg = fixtures::tiny_clip_text_config();
  auto model = load_clip_text(write_encoder("clip_text_causal", cfg));
  auto a = model->forward(to_tensor({{kBos, 513, 516, kEos, kEos, kEos}}));
  auto b = model->forward(to_tensor({{kBos, 513, 516, kEos, 100, 200}}));
  // Positions 0..3 (up to the pooled end-of-text token) are unchanged by what follows.
  EXPECT_TRUE(torch::allclose(a.last_hidden_state.narrow(1, 0, 4),
                              b.last_hidden_state.narrow(1, 0, 4), 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(a.pooled, b.pooled, 1e-6, 1e-6));
  EXPECT_FALSE(torch::allclose(a.last_hidden_state[0][4], b.last_hidden_state[0][4], 1e-3, 1e-3));
}

TEST(ClipText, PoolingPositionRule) {
  const auto ids =
      torch::tensor(std::vector<int64_t>{kBos, 513, kEos, kEos, 5, 300, 7, 9, kBos, kEos, 9, kEos})
          .view({3, 4});
  // Legacy eos_token_id 2 (FLUX's config): argmax of the ids, first maximum.
  EXPECT_TRUE(
      torch::equal(clip_pooling_positions(ids, 2), torch::tensor(std::vector<int64_t>{2, 1, 1})));
  // Otherwise the first position equal to eos_token_id; 0 for a row without it.
  EXPECT_TRUE(torch::equal(clip_pooling_positions(ids, kEos),
                           torch::tensor(std::vector<int64_t>{2, 0, 1})));
  EXPECT_TRUE(
      torch::equal(clip_pooling_positions(ids, 9), torch::tensor(std::vector<int64_t>{0, 3, 2})));

  // The model pools by its config's rule: a row without eos differs between the two.
  auto cfg = fixtures::tiny_clip_text_config();
  const auto dir = write_encoder("clip_text_pool_rule", cfg);
  auto legacy = load_clip_text(dir);
  cfg.eos_token_id = kEos;
  fixtures::write_json(dir + "/config.json", clip_text_config_to_json(cfg));
  auto current = load_clip_text(dir);
  const auto row = torch::tensor({5, 300, 7, 9}).view({1, 4});
  const auto l = legacy->forward(row), c = current->forward(row);
  EXPECT_TRUE(torch::equal(l.pooled[0], l.last_hidden_state[0][1]));
  EXPECT_TRUE(torch::equal(c.pooled[0], c.last_hidden_state[0][0]));
}

TEST(ClipText, ConfigJsonParsing) {
  // FLUX.1's text_encoder/config.json (transformers 4.4x), as shipped.
  const auto flux = nlohmann::json::parse(R"({
    "_name_or_path": "openai/clip-vit-large-patch14", "architectures": ["CLIPTextModel"],
    "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0, "eos_token_id": 2,
    "hidden_act": "quick_gelu", "hidden_size": 768, "initializer_factor": 1.0,
    "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77, "model_type": "clip_text_model", "num_attention_heads": 12,
    "num_hidden_layers": 12, "pad_token_id": 1, "projection_dim": 768, "torch_dtype": "bfloat16",
    "transformers_version": "4.43.3", "vocab_size": 49408})");
  auto cfg = clip_text_config_from_json(flux, "config.json");
  EXPECT_EQ(cfg.vocab_size, 49408);
  EXPECT_EQ(cfg.hidden_size, 768);
  EXPECT_EQ(cfg.intermediate_size, 3072);
  EXPECT_EQ(cfg.num_hidden_layers, 12);
  EXPECT_EQ(cfg.num_attention_heads, 12);
  EXPECT_EQ(cfg.head_dim(), 64);
  EXPECT_EQ(cfg.max_position_embeddings, 77);
  EXPECT_EQ(cfg.hidden_act, "quick_gelu");
  EXPECT_DOUBLE_EQ(cfg.layer_norm_eps, 1e-5);
  EXPECT_EQ(cfg.eos_token_id, 2);
  EXPECT_EQ(cfg.bos_token_id, 0);
  EXPECT_EQ(cfg.pad_token_id, 1);

  // A CLIPConfig: the text tower's "text_config"; missing keys keep the defaults.
  cfg = clip_text_config_from_json(
      {{"model_type", "clip"}, {"text_config", {{"hidden_size", 512}, {"num_attention_heads", 8}}}},
      "config.json");
  EXPECT_EQ(cfg.hidden_size, 512);
  EXPECT_EQ(cfg.num_attention_heads, 8);
  EXPECT_EQ(cfg.vocab_size, 49408);
  EXPECT_EQ(cfg.eos_token_id, 49407);  // transformers' CLIPTextConfig default

  // The fixture's writer and the reader agree.
  const auto tiny = fixtures::tiny_clip_text_config();
  const auto back = clip_text_config_from_json(clip_text_config_to_json(tiny), "x");
  EXPECT_EQ(back.hidden_size, tiny.hidden_size);
  EXPECT_EQ(back.num_hidden_layers, tiny.num_hidden_layers);
  EXPECT_EQ(back.eos_token_id, tiny.eos_token_id);
  EXPECT_EQ(back.hidden_act, tiny.hidden_act);

  auto err = [](const nlohmann::json& j) {
    return error_of([&] { clip_text_config_from_json(j, "te/config.json"); });
  };
  std::string e = err({{"hidden_act", "relu"}});
  EXPECT_NE(e.find("te/config.json"), std::string::npos) << e;
  EXPECT_NE(e.find("hidden_act"), std::string::npos) << e;
  e = err({{"hidden_size", "768"}});
  EXPECT_NE(e.find("\"hidden_size\""), std::string::npos) << e;
  e = err({{"hidden_size", 100}, {"num_attention_heads", 12}});
  EXPECT_NE(e.find("not a multiple"), std::string::npos) << e;
  e = err({{"layer_norm_eps", -1}});
  EXPECT_NE(e.find("layer_norm_eps"), std::string::npos) << e;
  e = err(nlohmann::json::array());
  EXPECT_NE(e.find("te/config.json"), std::string::npos) << e;

  const auto dir = fresh_temp_dir("clip_text_bad_config");
  fixtures::write_text((dir / "config.json").string(), "{\"hidden_size\": ");
  e = error_of([&] { read_clip_text_config((dir / "config.json").string()); });
  EXPECT_NE(e.find("not valid JSON"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
}

TEST(ClipText, LoadsShardsIgnoresExtraKeysAndFreezes) {
  const auto cfg = fixtures::tiny_clip_text_config();
  const auto single = write_encoder("clip_text_single", cfg);
  const auto sharded = write_encoder("clip_text_sharded", cfg, /*shards=*/3);
  ASSERT_TRUE(std::filesystem::exists(sharded + "/model.safetensors.index.json"));
  ASSERT_FALSE(std::filesystem::exists(sharded + "/model.safetensors"));
  auto a = load_clip_text(single);
  auto b = load_clip_text(sharded);
  auto c = load_clip_text(sharded + "/model.safetensors.index.json");  // a file, config beside it
  const auto ids = to_tensor(kRows);
  EXPECT_TRUE(torch::equal(a->forward(ids).pooled, b->forward(ids).pooled));
  EXPECT_TRUE(torch::equal(a->forward(ids).pooled, c->forward(ids).pooled));
  for (const auto& p : a->parameters()) EXPECT_FALSE(p.requires_grad());
  EXPECT_FALSE(a->is_training());

  // Extra keys (position_ids is already there; a projection too) are ignored.
  SafetensorsFile f(single + "/model.safetensors");
  NamedTensors tensors;
  for (const auto& name : f.names()) tensors.emplace_back(name, f.load(name));
  tensors.emplace_back("text_projection.weight", torch::zeros({32, 32}));
  save_safetensors(single + "/model.safetensors", tensors);
  EXPECT_TRUE(torch::equal(load_clip_text(single)->forward(ids).pooled, a->forward(ids).pooled));

  // bf16 weights on request.
  auto bf = load_clip_text(single, torch::kCPU, torch::kBFloat16);
  EXPECT_EQ(bf->text_model->final_layer_norm->weight.scalar_type(), torch::kBFloat16);
  const auto pooled = bf->forward(ids).pooled;
  EXPECT_EQ(pooled.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::allclose(pooled.to(torch::kFloat32), a->forward(ids).pooled, 0.1, 0.1));
}

TEST(ClipText, MissingKeyWrongShapeAndBadInputAreOneLineErrors) {
  const auto cfg = fixtures::tiny_clip_text_config();
  const auto dir = write_encoder("clip_text_errors", cfg);
  const std::string file = dir + "/model.safetensors";
  NamedTensors original;
  {
    SafetensorsFile f(file);
    for (const auto& name : f.names()) original.emplace_back(name, f.load(name));
  }
  const std::string key = "text_model.encoder.layers.1.mlp.fc1.weight";

  NamedTensors missing;
  for (const auto& [name, t] : original)
    if (name != key) missing.emplace_back(name, t);
  save_safetensors(file, missing);
  std::string e = error_of([&] { load_clip_text(dir); });
  EXPECT_NE(e.find(file), std::string::npos) << e;
  EXPECT_NE(e.find(key), std::string::npos) << e;
  EXPECT_NE(e.find("missing"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;

  NamedTensors wrong = original;
  for (auto& [name, t] : wrong)
    if (name == key) t = torch::zeros({64, 31});
  save_safetensors(file, wrong);
  e = error_of([&] { load_clip_text(dir); });
  EXPECT_NE(e.find(file), std::string::npos) << e;
  EXPECT_NE(e.find(key), std::string::npos) << e;
  EXPECT_NE(e.find("[64, 31]"), std::string::npos) << e;
  EXPECT_NE(e.find("[64, 32]"), std::string::npos) << e;

  // A config that does not match the weights (hidden 48) names a key too.
  save_safetensors(file, original);
  auto big = cfg;
  big.hidden_size = 48;
  fixtures::write_json(dir + "/config.json", clip_text_config_to_json(big));
  e = error_of([&] { load_clip_text(dir); });
  EXPECT_NE(e.find("token_embedding.weight"), std::string::npos) << e;

  std::filesystem::remove(dir + "/config.json");
  e = error_of([&] { load_clip_text(dir); });
  EXPECT_NE(e.find("config.json"), std::string::npos) << e;
  std::filesystem::remove(file);
  e = error_of([&] { load_clip_text(dir); });
  EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;
  e = error_of([&] { load_clip_text(dir + "/nothing_here"); });
  EXPECT_NE(e.find("nothing_here"), std::string::npos) << e;

  // More tokens than positions.
  ClipTextModel model(cfg);
  e = error_of([&] { model->forward(torch::zeros({1, 78}, torch::kInt64)); });
  EXPECT_NE(e.find("77"), std::string::npos) << e;
}
