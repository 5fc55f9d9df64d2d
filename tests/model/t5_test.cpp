// The T5 encoder: relative position buckets against values worked out by hand, the forward pass
// against an independent float64 re-computation from the weight tensors (per-head loops, buckets
// by integer comparisons), HF config parsing, sharded = single-file loading, the tied embedding
// name, and loading errors.
#include "model/t5.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "fixtures/fixtures.h"
#include "fixtures/t5_fixture.h"
#include "io/safetensors.h"
#include "test_util.h"

using namespace fluxtrain;
using fluxtrain::fixtures::max_abs_diff;
using fluxtrain::testing::error_of;
using fluxtrain::testing::fresh_temp_dir;
using Weights = std::map<std::string, torch::Tensor>;

namespace {

// ---- Reference: HF's T5EncoderModel written out with plain ATen ops in float64, reading the
// weights by name. It shares no code with model/t5.cpp.

Weights as_double(const NamedTensors& tensors) {
  Weights w;
  for (const auto& [name, t] : tensors) w[name] = t.to(torch::kDouble);
  return w;
}

// Bucket of the distance d = key - query for 32 buckets and max_distance 128, by integer
// comparisons: half 16 per sign (+16 for d > 0); |d| < 8 is its own bucket, else
// 8 + max{k : 8 * 16^(k/8) <= |d|} = 8 + max{k : 64 * 2^k <= d^2}, at most 15.
int64_t ref_bucket(int64_t d) {
  int64_t bucket = d > 0 ? 16 : 0;
  const int64_t n = d < 0 ? -d : d;
  if (n < 8) return bucket + n;
  int64_t k = 0;
  while (k + 1 <= 7 && (int64_t(64) << (k + 1)) <= n * n) ++k;
  return bucket + std::min<int64_t>(8 + k, 15);
}

torch::Tensor ref_rms(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  return w * (x / torch::sqrt(x.pow(2).mean(-1, true) + eps));
}

torch::Tensor ref_gelu_tanh(const torch::Tensor& x) {
  return 0.5 * x * (1 + torch::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

// ids: [T] -> [T, d_model]; mask: [T] of 0/1 or undefined (nothing masked).
torch::Tensor reference_encoder(const Weights& w, const T5Config& c, const torch::Tensor& ids,
                                const torch::Tensor& mask = {}) {
  const int64_t T = ids.size(0);
  auto h = w.at("shared.weight").index_select(0, ids);  // [T, D]
  const auto& table = w.at("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string b = "encoder.block." + std::to_string(l) + ".layer.";
    const auto x = ref_rms(h, w.at(b + "0.layer_norm.weight"), c.layer_norm_epsilon);
    const auto q = x.matmul(w.at(b + "0.SelfAttention.q.weight").t());
    const auto k = x.matmul(w.at(b + "0.SelfAttention.k.weight").t());
    const auto v = x.matmul(w.at(b + "0.SelfAttention.v.weight").t());
    std::vector<torch::Tensor> heads;
    for (int64_t hd = 0; hd < c.num_heads; ++hd) {
      const auto qh = q.narrow(1, hd * c.d_kv, c.d_kv), kh = k.narrow(1, hd * c.d_kv, c.d_kv),
                 vh = v.narrow(1, hd * c.d_kv, c.d_kv);
      auto scores = qh.matmul(kh.t());  // [T, T], no 1/sqrt(d_kv)
      for (int64_t i = 0; i < T; ++i)
        for (int64_t j = 0; j < T; ++j) {
          double add = table[ref_bucket(j - i)][hd].item<double>();
          if (mask.defined() && mask[j].item<int64_t>() == 0) add += -1e300;
          scores[i][j] += add;
        }
      heads.push_back(torch::softmax(scores, -1).matmul(vh));
    }
    h = h + torch::cat(heads, 1).matmul(w.at(b + "0.SelfAttention.o.weight").t());
    const auto y = ref_rms(h, w.at(b + "1.layer_norm.weight"), c.layer_norm_epsilon);
    torch::Tensor ff;
    if (c.is_gated_act)
      ff = ref_gelu_tanh(y.matmul(w.at(b + "1.DenseReluDense.wi_0.weight").t())) *
           y.matmul(w.at(b + "1.DenseReluDense.wi_1.weight").t());
    else
      ff = torch::relu(y.matmul(w.at(b + "1.DenseReluDense.wi.weight").t()));
    h = h + ff.matmul(w.at(b + "1.DenseReluDense.wo.weight").t());
  }
  return ref_rms(h, w.at("encoder.final_layer_norm.weight"), c.layer_norm_epsilon);
}

// Ids long enough for every bucket: 150 tokens reach distances past max_distance 128.
torch::Tensor test_ids(int64_t T, int64_t vocab, int64_t seed) {
  return torch::remainder(torch::arange(T, torch::kLong) * 7 + seed * 13, vocab);
}

}  // namespace

TEST(T5RelativePositionBucket, HandWorkedBidirectional) {
  // 32 buckets: 16 per sign (key after query: +16); 8 exact, then 8 + trunc(8 log(n/8) / log 16)
  // = 8 + trunc(2 log2(n/8)), at most 15.
  const std::vector<std::pair<int64_t, int64_t>> cases = {
      {0, 0},     {-1, 1},    {1, 17},    {-7, 7},
      {7, 23},    {-8, 8},    {8, 24},    {-11, 8},  // 2 log2(11/8) = 0.92
      {-12, 9},                                      // 2 log2(1.5) = 1.17
      {-15, 9},   {-16, 10},  {16, 26},  // exact boundary: log 2 / log 16 = 1/4 in float32
      {-22, 10},                         // 2.92
      {-23, 11},                         // 3.05
      {-32, 12},  {-45, 12},             // 4.98
      {-46, 13},                         // 5.05
      {-64, 14},  {-90, 14},             // 6.98
      {-91, 15},                         // 7.02
      {-127, 15}, {-128, 15}, {-129, 15}, {-1000, 15},
      {90, 30},   {91, 31},   {128, 31},  {5000, 31}};
  std::vector<int64_t> rel;
  for (const auto& c : cases) rel.push_back(c.first);
  const auto b = t5_relative_position_bucket(torch::tensor(rel), true, 32, 128);
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(b[i].item<int64_t>(), cases[i].second) << "distance " << cases[i].first;
    EXPECT_EQ(ref_bucket(cases[i].first), cases[i].second) << "reference, " << cases[i].first;
  }
  // Every distance the tests' sequences reach agrees with the integer reference.
  const auto all = torch::arange(-300, 301, torch::kLong);
  const auto got = t5_relative_position_bucket(all, true, 32, 128);
  for (int64_t i = 0; i < all.size(0); ++i)
    ASSERT_EQ(got[i].item<int64_t>(), ref_bucket(all[i].item<int64_t>())) << all[i].item<int64_t>();
}

TEST(T5RelativePositionBucket, HandWorkedUnidirectional) {
  // Decoder form: only d <= 0 counts (by -d), 32 buckets: 16 exact, then
  // 16 + trunc(16 log(n/16) / log 8), at most 31.
  const std::vector<std::pair<int64_t, int64_t>> cases = {
      {5, 0},     {0, 0},     {-5, 5},
      {-15, 15},  {-16, 16},  {-20, 17},  // 16 log(1.25)/log 8 = 1.72
      {-100, 30},                         // 14.1
      {-127, 31}, {-128, 31}, {-500, 31}};
  for (const auto& [d, want] : cases)
    EXPECT_EQ(t5_relative_position_bucket(torch::tensor({d}), false, 32, 128)[0].item<int64_t>(),
              want)
        << d;
}

TEST(T5Config, ReadsHuggingFaceConfigs) {
  // FLUX.1's text_encoder_2/config.json (google/t5-v1_1-xxl), as stored there.
  const nlohmann::json xxl = {{"_name_or_path", "google/t5-v1_1-xxl"},
                              {"architectures", {"T5EncoderModel"}},
                              {"d_ff", 10240},
                              {"d_kv", 64},
                              {"d_model", 4096},
                              {"decoder_start_token_id", 0},
                              {"dense_act_fn", "gelu_new"},
                              {"dropout_rate", 0.1},
                              {"eos_token_id", 1},
                              {"feed_forward_proj", "gated-gelu"},
                              {"initializer_factor", 1.0},
                              {"is_encoder_decoder", true},
                              {"is_gated_act", true},
                              {"layer_norm_epsilon", 1e-06},
                              {"model_type", "t5"},
                              {"num_decoder_layers", 24},
                              {"num_heads", 64},
                              {"num_layers", 24},
                              {"output_past", true},
                              {"pad_token_id", 0},
                              {"relative_attention_max_distance", 128},
                              {"relative_attention_num_buckets", 32},
                              {"tie_word_embeddings", false},
                              {"torch_dtype", "bfloat16"},
                              {"use_cache", true},
                              {"vocab_size", 32128}};
  const auto c = T5Config::from_json(xxl, "config.json");
  EXPECT_EQ(c.d_model, 4096);
  EXPECT_EQ(c.d_kv, 64);
  EXPECT_EQ(c.d_ff, 10240);
  EXPECT_EQ(c.num_layers, 24);
  EXPECT_EQ(c.num_heads, 64);
  EXPECT_EQ(c.vocab_size, 32128);
  EXPECT_EQ(c.relative_attention_num_buckets, 32);
  EXPECT_EQ(c.relative_attention_max_distance, 128);
  EXPECT_DOUBLE_EQ(c.layer_norm_epsilon, 1e-6);
  EXPECT_EQ(c.dense_act_fn, "gelu_new");
  EXPECT_TRUE(c.is_gated_act);

  // T5 v1.0 style: "relu", not gated; feed_forward_proj absent means relu (HF's default).
  auto v10 = xxl;
  v10.erase("dense_act_fn");
  v10.erase("is_gated_act");
  v10["feed_forward_proj"] = "relu";
  EXPECT_FALSE(T5Config::from_json(v10, "c").is_gated_act);
  EXPECT_EQ(T5Config::from_json(v10, "c").dense_act_fn, "relu");
  v10.erase("feed_forward_proj");
  EXPECT_EQ(T5Config::from_json(v10, "c").dense_act_fn, "relu");

  auto bad = xxl;
  bad["feed_forward_proj"] = "gated-gelu-x";
  EXPECT_NE(error_of([&] { T5Config::from_json(bad, "cfg.json"); }).find("cfg.json"),
            std::string::npos);
  bad = xxl;
  bad.erase("d_model");
  EXPECT_NE(error_of([&] { T5Config::from_json(bad, "cfg.json"); }).find("'d_model' is missing"),
            std::string::npos);
  bad = xxl;
  bad["dense_act_fn"] = "tanh";
  EXPECT_NE(error_of([&] { T5Config::from_json(bad, "cfg.json"); }).find("tanh"),
            std::string::npos);
}

TEST(T5Encoder, XxlParameterCountAndNamesWithoutAllocating) {
  T5Encoder enc(T5Config{}, torch::TensorOptions().device(torch::kMeta));
  int64_t n = 0;
  for (const auto& p : enc->parameters()) n += p.numel();
  EXPECT_EQ(n, 4762310656);  // T5 v1.1 XXL encoder: 4.76B
  const auto params = enc->named_parameters();
  EXPECT_TRUE(params.contains("shared.weight"));
  EXPECT_TRUE(
      params.contains("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"));
  EXPECT_FALSE(
      params.contains("encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"));
  EXPECT_TRUE(params.contains("encoder.block.23.layer.1.DenseReluDense.wi_1.weight"));
  EXPECT_TRUE(params.contains("encoder.final_layer_norm.weight"));
  EXPECT_EQ(params["encoder.block.5.layer.1.DenseReluDense.wo.weight"].sizes(),
            (std::vector<int64_t>{4096, 10240}));
  EXPECT_FALSE(params.contains("encoder.embed_tokens.weight"));
}

TEST(T5Encoder, ComputeBiasIsTheTableAtEachBucket) {
  const auto dir = fresh_temp_dir("t5_bias");
  const auto cfg = fixtures::tiny_t5_config();
  const auto written = as_double(fixtures::write_tiny_t5_encoder(dir.string(), cfg, 3, false));
  auto enc = load_t5_encoder(dir.string());
  auto attn = enc->encoder->block[0]->as<T5BlockImpl>()->self_attention->SelfAttention;
  const auto bias = attn->compute_bias(20, 140);  // [1, heads, 20, 140]
  ASSERT_EQ(bias.sizes(), (std::vector<int64_t>{1, 4, 20, 140}));
  const auto& table =
      written.at("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
  for (int64_t i : {0, 7, 19})
    for (int64_t j : {0, 3, 19, 27, 60, 139})
      for (int64_t h = 0; h < 4; ++h)
        EXPECT_EQ(bias[0][h][i][j].item<double>(), table[ref_bucket(j - i)][h].item<double>())
            << i << " " << j << " " << h;
}

TEST(T5Encoder, ForwardMatchesPlainAtenReference) {
  const auto dir = fresh_temp_dir("t5_forward");
  const auto cfg = fixtures::tiny_t5_config();
  const auto w = as_double(fixtures::write_tiny_t5_encoder(dir.string(), cfg, 11, false));
  torch::NoGradGuard no_grad;
  auto enc = load_t5_encoder(dir.string());
  EXPECT_FALSE(enc->is_training());
  for (const auto& p : enc->parameters()) EXPECT_FALSE(p.requires_grad());

  const int64_t T = 150;  // distances past max_distance: every bucket is used
  const auto ids = torch::stack({test_ids(T, cfg.vocab_size, 1), test_ids(T, cfg.vocab_size, 2)});
  const auto out = enc->forward(ids);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{2, T, 32}));
  EXPECT_EQ(out.scalar_type(), torch::kFloat32);
  for (int64_t b = 0; b < 2; ++b) {
    const auto ref = reference_encoder(w, cfg, ids[b]);
    EXPECT_LT(max_abs_diff(out[b], ref), 2e-4) << "batch " << b;
    EXPECT_GT(ref.abs().mean().item<double>(), 0.3);  // not a degenerate output
  }

  // FLUX's default: no mask, so padding takes part. With a mask the masked keys drop out (the
  // masked positions' own outputs still exist) and the result differs.
  auto mask = torch::ones({2, T}, torch::kLong);
  mask.narrow(1, 100, 50).zero_();
  const auto masked = enc->forward(ids, mask);
  const auto ref_masked = reference_encoder(w, cfg, ids[0], mask[0]);
  EXPECT_LT(max_abs_diff(masked[0], ref_masked), 2e-4);
  EXPECT_GT(max_abs_diff(masked[0], out[0]), 1e-2);
  // An all-ones mask is the same as none.
  EXPECT_LT(max_abs_diff(enc->forward(ids, torch::ones({2, T}, torch::kLong)), out), 1e-6);
}

TEST(T5Encoder, ReluFeedForwardOfT5v10) {
  const auto dir = fresh_temp_dir("t5_relu");
  auto cfg = fixtures::tiny_t5_config();
  cfg.set_feed_forward_proj("relu");
  const auto w = as_double(fixtures::write_tiny_t5_encoder(dir.string(), cfg, 5, false));
  torch::NoGradGuard no_grad;
  auto enc = load_t5_encoder(dir.string());
  EXPECT_TRUE(enc->named_parameters().contains("encoder.block.1.layer.1.DenseReluDense.wi.weight"));
  const auto ids = test_ids(40, cfg.vocab_size, 3);
  EXPECT_LT(max_abs_diff(enc->forward(ids.unsqueeze(0))[0], reference_encoder(w, cfg, ids)), 2e-4);
}

TEST(T5Encoder, ShardedEqualsSingleFileAndTiedEmbeddingName) {
  const auto root = fresh_temp_dir("t5_sharded");
  const auto cfg = fixtures::tiny_t5_config();
  const auto single_dir = root / "single", sharded_dir = root / "repo" / "text_encoder_2";
  const auto tensors = fixtures::write_tiny_t5_encoder(single_dir.string(), cfg, 7, false);
  fixtures::write_tiny_t5_encoder(sharded_dir.string(), cfg, 7, true);
  EXPECT_TRUE(std::filesystem::exists(sharded_dir / "model-00002-of-00002.safetensors"));
  torch::NoGradGuard no_grad;
  auto a = load_t5_encoder(single_dir.string());
  auto b = load_t5_encoder((root / "repo").string());  // a FLUX repository root
  auto c = load_t5_encoder((sharded_dir / "model.safetensors.index.json").string());
  const auto ids = test_ids(30, cfg.vocab_size, 4).unsqueeze(0);
  const auto out = a->forward(ids);
  EXPECT_TRUE(torch::equal(out, b->forward(ids)));
  EXPECT_TRUE(torch::equal(out, c->forward(ids)));

  // encoder.embed_tokens.weight instead of shared.weight; decoder.* and lm_head.* ignored; a
  // single file loads with the config.json beside it.
  NamedTensors renamed;
  for (const auto& [name, t] : tensors)
    renamed.emplace_back(name == "shared.weight" ? "encoder.embed_tokens.weight" : name, t);
  renamed.emplace_back("decoder.block.0.layer.0.SelfAttention.q.weight", torch::zeros({4, 4}));
  renamed.emplace_back("lm_head.weight", torch::zeros({2, 2}));
  const auto tied_dir = root / "tied";
  std::filesystem::create_directories(tied_dir);
  save_safetensors((tied_dir / "model.safetensors").string(), renamed);
  fixtures::write_json((tied_dir / "config.json").string(), cfg.to_json());
  EXPECT_TRUE(torch::equal(out, load_t5_encoder(tied_dir.string())->forward(ids)));
  EXPECT_TRUE(
      torch::equal(out, load_t5_encoder((tied_dir / "model.safetensors").string())->forward(ids)));

  // bf16 weights: parameters and output in bf16, close to float32.
  auto half = load_t5_encoder(single_dir.string(), torch::kCPU, torch::kBFloat16);
  EXPECT_EQ(half->shared->weight.scalar_type(), torch::kBFloat16);
  const auto out16 = half->forward(ids);
  EXPECT_EQ(out16.scalar_type(), torch::kBFloat16);
  EXPECT_LT(max_abs_diff(out16, out), 0.1);
}

TEST(T5Encoder, LoadingErrorsNameFileAndKey) {
  const auto root = fresh_temp_dir("t5_errors");
  const auto cfg = fixtures::tiny_t5_config();
  const auto tensors = fixtures::write_tiny_t5_encoder((root / "good").string(), cfg, 9, false);
  const auto write = [&](const std::string& name, const NamedTensors& t) {
    const auto dir = root / name;
    std::filesystem::create_directories(dir);
    save_safetensors((dir / "model.safetensors").string(), t);
    fixtures::write_json((dir / "config.json").string(), cfg.to_json());
    return (dir / "model.safetensors").string();
  };
  const std::string key = "encoder.block.1.layer.1.DenseReluDense.wi_0.weight";

  NamedTensors missing;
  for (const auto& [n, t] : tensors)
    if (n != key) missing.emplace_back(n, t);
  const auto missing_file = write("missing", missing);
  auto e = error_of([&] { load_t5_encoder((root / "missing").string()); });
  EXPECT_NE(e.find(missing_file), std::string::npos) << e;
  EXPECT_NE(e.find(key), std::string::npos) << e;
  EXPECT_NE(e.find("missing"), std::string::npos) << e;

  NamedTensors misshapen;
  for (const auto& [n, t] : tensors) misshapen.emplace_back(n, n == key ? t.narrow(0, 0, 60) : t);
  const auto misshapen_file = write("misshapen", misshapen);
  e = error_of([&] { load_t5_encoder((root / "misshapen").string()); });
  EXPECT_NE(e.find(misshapen_file), std::string::npos) << e;
  EXPECT_NE(e.find(key), std::string::npos) << e;
  EXPECT_NE(e.find("[60, 32]"), std::string::npos) << e;
  EXPECT_NE(e.find("[64, 32]"), std::string::npos) << e;

  NamedTensors extra = tensors;  // a third block's tensor: the config says 2 layers
  extra.emplace_back("encoder.block.2.layer.0.layer_norm.weight", torch::ones({32}));
  write("extra", extra);
  e = error_of([&] { load_t5_encoder((root / "extra").string()); });
  EXPECT_NE(e.find("encoder.block.2.layer.0.layer_norm.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("not part of the T5 encoder"), std::string::npos) << e;

  // Sharded: the shard holding the misshapen tensor is named.
  const auto sharded = root / "sharded";
  fixtures::write_tiny_t5_encoder(sharded.string(), cfg, 9, true);
  NamedTensors shard2;
  SafetensorsFile s2((sharded / "model-00002-of-00002.safetensors").string());
  for (const auto& n : s2.names())
    shard2.emplace_back(n, n == key ? s2.load(n).narrow(0, 0, 60) : s2.load(n));
  save_safetensors((sharded / "model-00002-of-00002.safetensors").string(), shard2);
  e = error_of([&] { load_t5_encoder(sharded.string()); });
  EXPECT_NE(e.find("model-00002-of-00002.safetensors"), std::string::npos) << e;
  EXPECT_NE(e.find(key), std::string::npos) << e;

  // A single file with no config.json beside it gets the XXL config, and fails on shapes.
  std::filesystem::create_directories(root / "lone");
  std::filesystem::copy_file(root / "good" / "model.safetensors", root / "lone" / "x.safetensors");
  e = error_of([&] { load_t5_encoder((root / "lone" / "x.safetensors").string()); });
  EXPECT_NE(e.find("shared.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("no config.json"), std::string::npos) << e;

  // No such path; a folder without weights; weights without config.json; a broken config.json.
  e = error_of([&] { load_t5_encoder((root / "nope").string()); });
  EXPECT_NE(e.find((root / "nope").string()), std::string::npos) << e;
  std::filesystem::create_directories(root / "empty");
  e = error_of([&] { load_t5_encoder((root / "empty").string()); });
  EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;
  std::filesystem::remove(root / "missing" / "config.json");
  e = error_of([&] { load_t5_encoder((root / "missing").string()); });
  EXPECT_NE(e.find("config.json"), std::string::npos) << e;
  fixtures::write_text((root / "missing" / "config.json").string(), "{not json");
  e = error_of([&] { load_t5_encoder((root / "missing").string()); });
  EXPECT_NE(e.find((root / "missing" / "config.json").string()), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos);
}
