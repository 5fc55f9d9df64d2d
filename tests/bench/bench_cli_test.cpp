// `fluxtrain bench` end to end with the binary on the tiny model: the shipped minimal sweep, a
// sweep whose points run out of memory or fail (and one with block swap that runs), and sample mode
// (presets with random weights, and a real-layout model given by path).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fixtures/flux_fixture.h"
#include "fixtures/flux_repo_fixture.h"
#include "model/flux.h"
#include "model/presets.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

using Result = fluxtrain::testing::CommandResult;

Result run(const std::string& args) {
  return fluxtrain::testing::run_fluxtrain(args);
}

fs::path fresh_dir(const std::string& name) {
  return fluxtrain::testing::fresh_temp_dir("bench_" + name);
}

std::string read(const fs::path& p) {
  std::stringstream ss;
  ss << std::ifstream(p).rdbuf();
  return ss.str();
}

// The bench directory the command printed ("bench: DIR").
fs::path bench_dir(const Result& r) {
  const auto at = r.out.find("bench: /");
  if (at == std::string::npos) return {};
  const auto end = r.out.find('\n', at);
  return r.out.substr(at + 7, end - at - 7);
}

std::vector<std::string> csv_lines(const fs::path& p) {
  std::vector<std::string> out;
  std::istringstream in(read(p));
  std::string l;
  while (std::getline(in, l)) out.push_back(l);
  return out;
}

}  // namespace

TEST(BenchCli, HelpAndUserErrors) {
  auto help = run("bench --help");
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("usage: fluxtrain bench"), std::string::npos);
  EXPECT_NE(help.out.find("--price_per_hour"), std::string::npos);
  auto none = run("bench");
  EXPECT_EQ(none.code, 2);
  EXPECT_NE(none.out.find("--config"), std::string::npos) << none.out;
  auto dir = fresh_dir("errors");
  std::ofstream(dir / "typo.yaml") << "model: tiny\nbatchsize: [1, 2]\n";
  auto typo = run("bench --config " + (dir / "typo.yaml").string());
  EXPECT_EQ(typo.code, 2);
  EXPECT_EQ(typo.out, "fluxtrain bench: error: " + (dir / "typo.yaml").string() +
                          " (line 2): unknown key 'batchsize' (did you mean 'batch_size'?)\n");
}

TEST(BenchCli, MinimalSweepWritesAllThreeOutputs) {
  auto dir = fresh_dir("minimal");
  auto r = run("bench --config " + std::string(FLUXTRAIN_SOURCE_DIR) +
               "/configs/bench/minimal.yaml --warmup 1 --measured 2 --output_dir " + dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  const fs::path out = bench_dir(r);
  ASSERT_EQ(out.parent_path(), dir / "bench") << r.out;
  for (const char* f : {"runs_summary.csv", "results.json", "report.html"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  const auto csv = csv_lines(out / "runs_summary.csv");
  ASSERT_EQ(csv.size(), 7u);  // header + 2 precisions x 3 batch sizes
  EXPECT_EQ(csv[1].rfind("001-fp32-bs1,ok,tiny,full,fp32,", 0), 0u) << csv[1];
  EXPECT_EQ(csv[6].rfind("006-bf16-bs4,ok,tiny,full,bf16,", 0), 0u) << csv[6];
  const auto j = nlohmann::json::parse(read(out / "results.json"));
  EXPECT_EQ(j["bench"]["measured"], 2);
  EXPECT_EQ(j["environment"]["libtorch"].get<std::string>().empty(), false);
  ASSERT_EQ(j["points"].size(), 6u);
  const double tiny_fwd =
      fluxtrain::flux_forward_flops(fluxtrain::model_preset("tiny").flux, 64, 12);
  for (const auto& p : j["points"]) {
    EXPECT_EQ(p["status"], "ok") << p.dump();
    const auto& f = p["figures"];
    EXPECT_EQ(f["measured"], 2);
    EXPECT_GT(f["images_per_s"].get<double>(), 0);
    EXPECT_LE(f["time_ms"]["p50"].get<double>(), f["time_ms"]["p99"].get<double>());
    EXPECT_DOUBLE_EQ(f["model_flops_per_image"].get<double>(), 3 * tiny_fwd);
    EXPECT_NEAR(f["tokens_per_s"].get<double>(), 76 * f["images_per_s"].get<double>(), 1e-6);
    EXPECT_TRUE(f["mfu"].is_null());  // a CPU: no datasheet peak
    EXPECT_EQ(f["peak_memory_kind"], "rss");
    EXPECT_GT(f["peak_memory_bytes"].get<int64_t>(), 0);
    // Each point ran as its own process with its own run directory and log.
    EXPECT_TRUE(fs::exists(out / p["run_dir"].get<std::string>() / "metrics.jsonl"));
    EXPECT_NE(read(out / p["log"].get<std::string>()).find("--steps=3"), std::string::npos);
  }
  const std::string html = read(out / "report.html");
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("Images/s per device"), std::string::npos);
}

TEST(BenchCli, FailedAndOutOfMemoryPointsAreRecordedAndTheSweepGoesOn) {
  auto dir = fresh_dir("failures");
  // bf16 weights need bf16 compute: the child exits with a UserError. 512 px makes the tiny
  // model's attention matrix 2 x 4 x 16396^2 floats (8.6 GB), beyond the 3 GB memory limit
  // (activation checkpointing does not help: one block's forward still needs it, nor does block
  // swap); gradient_checkpointing is passed on to every point.
  std::ofstream(dir / "sweep.yaml")
      << "model: tiny\ndevice: cpu\nthreads: 1\nbatch_size: 2\nwarmup: 1\n"
         "measured: 2\nmemory_limit_gb: 3\ngradient_checkpointing: yes\nweights: [fp32, bf16]\n"
         "resolution: [32, 512]\nblocks_to_swap: [0, 2]\n";
  auto r = run("bench --config " + (dir / "sweep.yaml").string() + " --output_dir " + dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(read(bench_dir(r) / "results.json"));
  ASSERT_EQ(j["points"].size(), 8u);
  const std::vector<std::string> want = {"ok",     "ok",     "oom",    "oom",
                                         "failed", "failed", "failed", "failed"};
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_EQ(j["points"][i]["status"], want[i]) << j["points"][i].dump();
  EXPECT_NE(j["points"][2]["error"].get<std::string>().find("can't allocate memory"),
            std::string::npos);
  EXPECT_NE(j["points"][4]["error"].get<std::string>().find("bf16 weights need --precision bf16"),
            std::string::npos);
  EXPECT_EQ(j["points"][0]["settings"]["gradient_checkpointing"], "true");
  EXPECT_NE(read(bench_dir(r) / j["points"][0]["log"].get<std::string>())
                .find("--gradient_checkpointing=true"),
            std::string::npos);
  EXPECT_EQ(j["points"][1]["settings"]["blocks_to_swap"], "2");
  EXPECT_NE(read(bench_dir(r) / j["points"][1]["log"].get<std::string>())
                .find("block swap: 3 blocks' linear weights"),
            std::string::npos);
  EXPECT_FALSE(j["points"][0]["figures"].is_null());
  EXPECT_FALSE(j["points"][1]["figures"].is_null());
  const auto csv = csv_lines(bench_dir(r) / "runs_summary.csv");
  ASSERT_EQ(csv.size(), 9u);
  EXPECT_EQ(csv[3].rfind("003-wfp32-512px-blocks_to_swap_0,oom,", 0), 0u) << csv[3];
}

TEST(BenchCli, SampleModeTimesGenerationInProcess) {
  auto dir = fresh_dir("sample");
  auto r = run(
      "bench --mode sample --model tiny --device cpu --threads 1 --warmup 1 --measured 3 --steps 2 "
      "--weights fp32,bf16 --batch_size 1,2 --peak_tflops 0.5 --price_per_hour 1.5 --output_dir " +
      dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  const fs::path out = bench_dir(r);
  for (const char* f : {"runs_summary.csv", "results.json", "report.html"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  const auto j = nlohmann::json::parse(read(out / "results.json"));
  EXPECT_EQ(j["bench"]["mode"], "sample");
  ASSERT_EQ(j["points"].size(), 4u);
  const double fwd = fluxtrain::flux_forward_flops(fluxtrain::model_preset("tiny").flux, 64, 12);
  for (int i = 0; i < 2; ++i) {
    const auto& p = j["points"][i];
    ASSERT_EQ(p["status"], "ok") << p.dump();
    const auto& f = p["figures"];
    const double batch = i + 1;
    EXPECT_EQ(f["measured"], 3);
    EXPECT_EQ(f["images_per_iteration"], i + 1);
    const auto& t = f["time_ms"];
    EXPECT_LE(t["min"].get<double>(), t["p50"].get<double>());
    EXPECT_LE(t["p50"].get<double>(), t["p90"].get<double>());
    EXPECT_LE(t["p90"].get<double>(), t["p99"].get<double>());
    EXPECT_LE(t["p99"].get<double>(), t["max"].get<double>());
    // images/s = batch x runs / total time = batch / mean latency.
    const double ips = f["images_per_s"].get<double>();
    EXPECT_NEAR(ips, batch * 1000.0 / t["mean"].get<double>(), 1e-9 * ips);
    EXPECT_DOUBLE_EQ(f["model_flops_per_image"].get<double>(), 2 * fwd);  // 2 steps, no CFG
    EXPECT_NEAR(f["mfu"].get<double>(), f["model_tflops"].get<double>() / 0.5, 1e-12);
    EXPECT_NEAR(f["cost_per_1k_images"].get<double>(), 1.5 / 3600 / ips * 1000, 1e-12);
    EXPECT_GT(f["peak_memory_bytes"].get<int64_t>(), 0);
    EXPECT_EQ(p["settings"]["steps"], "2");
  }
  for (int i = 2; i < 4; ++i) {  // bf16 weights with fp32 compute: failed, and the sweep went on
    EXPECT_EQ(j["points"][i]["status"], "failed");
    EXPECT_NE(j["points"][i]["error"].get<std::string>().find("bf16 weights need"),
              std::string::npos);
  }
  const auto csv = csv_lines(out / "runs_summary.csv");
  ASSERT_EQ(csv.size(), 5u);
  EXPECT_NE(csv[0].find("latency_ms_p50,latency_ms_p90,latency_ms_p99"), std::string::npos)
      << csv[0];
}

TEST(BenchCli, SampleModeWithAModelPathTimesTheRealModel) {
  auto dir = fresh_dir("sample_path");
  const std::string repo = (dir / "FLUX.1-tiny").string();
  fluxtrain::fixtures::write_tiny_flux_repo(repo, fluxtrain::fixtures::RepoLayout::kDiffusers,
                                            /*guidance=*/true, 11);
  auto r = run("bench --mode sample --model " + repo +
               " --resolution 16 --steps 2 --batch_size 1,2 --warmup 1 --measured 2 --device cpu "
               "--threads 1 --output_dir " +
               dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  const fs::path out = bench_dir(r);
  const auto j = nlohmann::json::parse(read(out / "results.json"));
  ASSERT_EQ(j["points"].size(), 2u);
  // 16 px / (VAE factor 2 x 2x2 patches) = 4 x 4 = 16 image tokens, 512 T5 tokens (dev-like).
  const double fwd =
      fluxtrain::flux_forward_flops(fluxtrain::fixtures::tiny_repo_flux_params(true), 16, 512);
  for (int i = 0; i < 2; ++i) {
    const auto& p = j["points"][i];
    ASSERT_EQ(p["status"], "ok") << p.dump();
    EXPECT_EQ(p["name"], i == 0 ? "001-bs1" : "002-bs2");
    EXPECT_EQ(p["settings"]["model"], repo);
    EXPECT_EQ(p["settings"]["resolution"], "16");
    EXPECT_EQ(p["settings"]["steps"], "2");
    EXPECT_EQ(p["image_tokens"], 16);
    EXPECT_EQ(p["text_tokens"], 512);
    const auto& f = p["figures"];
    EXPECT_EQ(f["measured"], 2);
    EXPECT_EQ(f["images_per_iteration"], i + 1);
    const auto& t = f["time_ms"];
    EXPECT_GT(t["p50"].get<double>(), 0.0);
    EXPECT_LE(t["p50"].get<double>(), t["p90"].get<double>());
    EXPECT_LE(t["p90"].get<double>(), t["p99"].get<double>());
    EXPECT_GT(f["images_per_s"].get<double>(), 0.0);
    EXPECT_DOUBLE_EQ(f["model_flops_per_image"].get<double>(), 2 * fwd);  // the transformer only
    EXPECT_GT(f["peak_memory_bytes"].get<int64_t>(), 0);
  }
  const auto csv = csv_lines(out / "runs_summary.csv");
  ASSERT_EQ(csv.size(), 3u);
  EXPECT_NE(csv[1].find(repo), std::string::npos) << csv[1];

  auto bad = run("bench --mode sample --model " + (dir / "missing").string() + " --dry_run");
  EXPECT_EQ(bad.code, 2);
  EXPECT_EQ(bad.out, "fluxtrain bench: error: --model: model '" + (dir / "missing").string() +
                         "': expected a preset (flux-dev, flux-schnell, tiny, tiny-guidance) or a "
                         "model directory/file\n");
}

TEST(BenchCli, DataModeTimesDecodingCachedLatentsAndPrepare) {
  auto dir = fresh_dir("data");
  const std::string repo = (dir / "FLUX.1-tiny").string();
  fluxtrain::fixtures::write_tiny_flux_repo(repo, fluxtrain::fixtures::RepoLayout::kBfl,
                                            /*guidance=*/true, 5);
  auto r = run("bench --mode data --task decode,cache,prepare --model tiny," + repo +
               " --resolution 32 --images 8 --batch_size 4 --source_width 48 --source_height 40 "
               "--warmup 1 --measured 3 --output_dir " +
               dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  const fs::path out = bench_dir(r);
  const auto j = nlohmann::json::parse(read(out / "results.json"));
  EXPECT_EQ(j["bench"]["mode"], "data");
  ASSERT_EQ(j["points"].size(), 6u);
  for (const auto& p : j["points"]) {
    ASSERT_EQ(p["status"], "ok") << p.dump();
    const auto& f = p["figures"];
    EXPECT_EQ(f["measured"], 3);
    // A loader batch holds batch_size examples (the 8 images repeat over epochs); a prepare
    // encodes all of them.
    const bool prepare = p["settings"]["task"] == "prepare";
    EXPECT_EQ(f["images_per_iteration"], prepare ? 8 : 4) << p["name"];
    const double ips = f["images_per_s"].get<double>();
    EXPECT_NEAR(ips, (prepare ? 8 : 4) * 1000.0 / f["time_ms"]["mean"].get<double>(), 1e-9 * ips);
    EXPECT_GT(f["peak_memory_bytes"].get<int64_t>(), 0);
    EXPECT_FALSE(fs::exists(out / "points" / p["name"].get<std::string>()))
        << "the inputs are removed after the point";
  }
  EXPECT_EQ(j["points"][0]["name"], "001-decode-tiny");
  const auto csv = csv_lines(out / "runs_summary.csv");
  ASSERT_EQ(csv.size(), 7u);
  EXPECT_NE(csv[0].find("point,status,task,model,resolution,batch_size"), std::string::npos)
      << csv[0];
  EXPECT_NE(csv[0].find("batch_ms_p50"), std::string::npos) << csv[0];
  // The cache points read latents, not pixels: the log names the latent cache the loader reads.
  // and the decode points' batches are 4 images of 3 x 32 x 32 float32 (48 KiB).
  size_t cache_lines = 0;
  for (size_t at = r.out.find("  latent cache "); at != std::string::npos;
       at = r.out.find("  latent cache ", at + 1))
    ++cache_lines;
  EXPECT_EQ(cache_lines, 2u) << r.out;
  EXPECT_NE(r.out.find("batches of 4 (0.05 MiB each)"), std::string::npos) << r.out;

  auto bad = run("bench --mode data --task resize --dry_run");
  EXPECT_EQ(bad.code, 2);
  EXPECT_EQ(bad.out,
            "fluxtrain bench: error: --task: bad value 'resize' for 'task': expected one of "
            "decode|cache|prepare\n");
  auto typo = run("bench --mode data --model flux-devv --dry_run");
  EXPECT_EQ(typo.code, 2);
  EXPECT_NE(typo.out.find("--model: model 'flux-devv': expected a preset"), std::string::npos)
      << typo.out;
  // A partial batch would make the timed batches unequal: the point fails saying why.
  auto partial =
      run("bench --mode data --images 6 --batch_size 4 --resolution 32 --source_width "
          "40 --source_height 40 --measured 1 --output_dir " +
          dir.string());
  ASSERT_EQ(partial.code, 0) << partial.out;
  const auto pj = nlohmann::json::parse(read(bench_dir(partial) / "results.json"));
  EXPECT_EQ(pj["points"][0]["status"], "failed");
  EXPECT_EQ(pj["points"][0]["error"],
            "images 6: a multiple of batch_size 4 (every timed batch full)");
}

TEST(BenchCli, ShippedSweepsAreValidAndDryRunListsTheirPoints) {
  const std::string dir = std::string(FLUXTRAIN_SOURCE_DIR) + "/configs/bench/";
  const std::vector<std::pair<std::string, int>> files = {
      {"minimal.yaml", 6},      {"full.yaml", 42},          {"gpu-train.yaml", 6},
      {"gpu-sample.yaml", 2},   {"data.yaml", 8},           {"methods.yaml", 8},
      {"gpu-lora.yaml", 3},     {"savers.yaml", 6},         {"controlnet.yaml", 4},
      {"gpu-finetune.yaml", 2}, {"gpu-controlnet.yaml", 1}, {"memory-plan.yaml", 12}};
  for (const auto& [file, points] : files) {
    auto r = run("bench --config " + dir + file + " --dry_run");
    ASSERT_EQ(r.code, 0) << file << ": " << r.out;
    EXPECT_NE(r.out.find(std::to_string(points) + " point(s)"), std::string::npos)
        << file << ": " << r.out;
  }
  auto full = run("bench --config " + dir + "full.yaml --dry_run");
  EXPECT_NE(full.out.find("042-flux-schnell-1024px-bs16: fluxtrain train"), std::string::npos);
  EXPECT_NE(full.out.find("--weights=bf16 --optimizer_state=bf16"), std::string::npos);
  EXPECT_NE(full.out.find("--method=full"), std::string::npos);                   // a train key now
  EXPECT_NE(full.out.find("--gradient_checkpointing=false"), std::string::npos);  // a train key
}
