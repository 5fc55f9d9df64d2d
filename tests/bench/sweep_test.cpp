// Sweep files: YAML and command-line parsing, validation of keys and values, grid expansion.
#include "bench/sweep.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>

#include "bench/results.h"
#include "core/errors.h"
#include "fixtures/flux_repo_fixture.h"
#include "test_util.h"

using namespace fluxtrain;

namespace {

SweepSpec spec_of(const std::string& yaml) {
  return make_sweep(read_sweep_yaml_string(yaml, "sweep.yaml"));
}

std::string error_of(const std::string& yaml) {
  try {
    spec_of(yaml);
  } catch (const UserError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(Sweep, GridIsTheCartesianProductWithFixedKeysAtEveryPoint) {
  auto spec = spec_of("model: tiny\nprecision: [fp32, bf16]\nbatch_size: [1, 2, 4]\nwarmup: 3\n");
  EXPECT_EQ(spec.mode, "train");
  EXPECT_EQ(spec.bench.i("warmup"), 3);
  ASSERT_EQ(spec.fixed.size(), 1u);
  EXPECT_EQ(spec.fixed[0], (std::pair<std::string, std::string>{"model", "tiny"}));
  ASSERT_EQ(spec.axes.size(), 2u);
  const auto points = expand_grid(spec);
  ASSERT_EQ(points.size(), 6u);
  // First axis outermost, last axis fastest.
  const std::vector<std::pair<std::string, std::string>> want = {
      {"fp32", "1"}, {"fp32", "2"}, {"fp32", "4"}, {"bf16", "1"}, {"bf16", "2"}, {"bf16", "4"}};
  for (size_t i = 0; i < points.size(); ++i) {
    EXPECT_EQ(points[i].index, static_cast<int64_t>(i + 1));
    EXPECT_EQ(setting(points[i], "model"), "tiny");
    EXPECT_EQ(setting(points[i], "precision"), want[i].first);
    EXPECT_EQ(setting(points[i], "batch_size"), want[i].second);
    EXPECT_EQ(points[i].settings.size(), 3u);
  }
  EXPECT_EQ(points[0].name, "001-fp32-bs1");
  EXPECT_EQ(points[5].name, "006-bf16-bs4");
}

TEST(Sweep, ThreeAxesGiveEveryCombinationOnce) {
  auto spec = spec_of(
      "precision: [fp32, bf16]\nresolution: [32, 64, 128]\ngradient_checkpointing: [false, "
      "true]\n");
  const auto points = expand_grid(spec);
  ASSERT_EQ(points.size(), 12u);
  std::set<std::string> combos, names;
  for (const auto& p : points) {
    combos.insert(setting(p, "precision") + "/" + setting(p, "resolution") + "/" +
                  setting(p, "gradient_checkpointing"));
    names.insert(p.name);
  }
  EXPECT_EQ(combos.size(), 12u);
  EXPECT_EQ(names.size(), 12u);
  EXPECT_EQ(points[1].name, "002-fp32-32px-gc");
}

TEST(Sweep, NoAxesIsOnePoint) {
  auto points = expand_grid(spec_of("model: tiny\nbatch_size: 8\n"));
  ASSERT_EQ(points.size(), 1u);
  EXPECT_EQ(points[0].name, "001");
  EXPECT_EQ(setting(points[0], "batch_size"), "8");
}

TEST(Sweep, UnknownKeysAndBadValuesAreUserErrorsThatNameThem) {
  const std::string unknown = error_of("model: tiny\nbatchsize: [1, 2]\n");
  EXPECT_NE(unknown.find("unknown key 'batchsize'"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("did you mean 'batch_size'"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("sweep.yaml (line 2)"), std::string::npos) << unknown;
  const std::string bad = error_of("precision: [fp32, fp8]\n");
  EXPECT_NE(bad.find("bad value 'fp8' for 'precision'"), std::string::npos) << bad;
  EXPECT_NE(error_of("batch_size: [1, 0]\n").find("'batch_size'"), std::string::npos);
  EXPECT_NE(error_of("steps: 10\n").find("key 'steps' is set by bench"), std::string::npos);
  EXPECT_NE(error_of("warmup: [1, 2]\n").find("'warmup' is a setting of the whole bench"),
            std::string::npos);
  EXPECT_NE(error_of("gradient_checkpointing: maybe\n").find("'maybe'"), std::string::npos);
  EXPECT_NE(error_of("method: [full, dora]\n").find("bad value 'dora' for 'method'"),
            std::string::npos);
  EXPECT_NE(error_of("batch_size: [1, 1]\n").find("listed twice"), std::string::npos);
  EXPECT_NE(error_of("batch_size: []\n").find("empty"), std::string::npos);
  EXPECT_NE(error_of("batch_size: {a: 1}\n").find("not a mapping"), std::string::npos);
  EXPECT_NE(error_of("mode: sample\nlr: 1e-4\n").find("unknown key 'lr'"), std::string::npos);
  EXPECT_NE(error_of("mode: serve\n").find("'mode'"), std::string::npos);
}

TEST(Sweep, PendingKeysAreAcceptedAndBooleansNormalised) {
  auto spec = spec_of("gradient_checkpointing: [no, yes]\nmethod: full\n");
  ASSERT_EQ(spec.axes.size(), 1u);
  EXPECT_EQ(spec.axes[0].values, (std::vector<std::string>{"false", "true"}));
  EXPECT_NE(error_of("gradient_checkpointing: [no, false]\n").find("listed twice"),
            std::string::npos);
  // gradient_checkpointing is a train key now, no longer pending.
  for (const auto& pk : pending_keys("train")) EXPECT_NE(pk.name, "gradient_checkpointing");
  // Resolved columns: keys at their value, unset ones at today's behaviour.
  auto points = expand_grid(spec);
  auto cols = resolve_columns(spec, points[1]);
  auto get = [&](const std::string& k) {
    for (const auto& [key, v] : cols)
      if (key == k) return v;
    return std::string("?");
  };
  EXPECT_EQ(get("gradient_checkpointing"), "true");
  EXPECT_EQ(get("method"), "full");
  EXPECT_EQ(get("resolution"), "32");  // 0 -> the tiny preset's default
  EXPECT_EQ(get("batch_size"), "32");  // fluxtrain train's default
}

TEST(Sweep, PointConfigHasBenchDefaultsUnlessTheSweepSetsThem) {
  auto spec = spec_of("model: flux-dev\nlr: 1e-4\n");
  auto cfg = point_config(spec, expand_grid(spec)[0]);
  EXPECT_DOUBLE_EQ(cfg.f("lr"), 1e-4);
  EXPECT_EQ(cfg.s("lr_schedule"), "constant");
  EXPECT_TRUE(cfg.b("stand_in_encoders"));
  auto cols = resolve_columns(spec, expand_grid(spec)[0]);
  EXPECT_EQ(cols[0], (std::pair<std::string, std::string>{"model", "flux-dev"}));
  for (const auto& [k, v] : cols) {
    if (k == "resolution") {
      EXPECT_EQ(v, "1024");
    }
  }
}

TEST(Sweep, SampleModeHasItsOwnKeys) {
  auto spec = spec_of("mode: sample\nmodel: tiny\nsteps: [4, 8]\nbatch_size: [1, 2]\n");
  EXPECT_EQ(spec.mode, "sample");
  auto points = expand_grid(spec);
  ASSERT_EQ(points.size(), 4u);
  EXPECT_EQ(points[0].name, "001-4steps-bs1");
  auto cols = setting_columns(spec);
  EXPECT_NE(std::find(cols.begin(), cols.end(), "cfg_scale"), cols.end());
  EXPECT_EQ(std::find(cols.begin(), cols.end(), "gradient_checkpointing"), cols.end());
}

TEST(Sweep, SampleModelIsAPresetOrAPathWithDefaultsFromItsFiles) {
  const auto dir = fluxtrain::testing::fresh_temp_dir("sweep_model_path");
  const std::string repo = (dir / "FLUX.1-tiny").string();
  fixtures::write_tiny_flux_repo(repo, fixtures::RepoLayout::kDiffusers, /*guidance=*/true, 1);
  EXPECT_TRUE(is_sample_model_path(repo));
  EXPECT_FALSE(is_sample_model_path("tiny-guidance"));
  auto spec = spec_of("mode: sample\nmodel: [tiny, " + repo + "/]\n");
  auto points = expand_grid(spec);
  ASSERT_EQ(points.size(), 2u);
  EXPECT_EQ(points[1].name, "002-FLUX.1-tiny");  // a path's last name
  auto cols = resolve_columns(spec, points[1]);
  std::map<std::string, std::string> c(cols.begin(), cols.end());
  EXPECT_EQ(c["model"], repo + "/");
  EXPECT_EQ(c["resolution"], "1024");  // the defaults of a guidance-distilled (dev-like) model
  EXPECT_EQ(c["steps"], "28");
  EXPECT_EQ(error_of("mode: sample\nmodel: flux-pro\n"),
            "sweep.yaml (line 2): model 'flux-pro': expected a preset (flux-dev, flux-schnell, "
            "tiny, tiny-guidance) or a model directory/file");
}

TEST(Sweep, CommandLineListsFlagsAndOverrides) {
  fluxtrain::testing::TempDir tmp;
  const std::string path = tmp / "sweep.yaml";
  { std::ofstream(path) << "model: tiny\nprecision: [fp32, bf16]\nbatch_size: 4\n"; }
  auto entries = parse_bench_args({"--batch_size", "1,2", "--config", path, "--precision=bf16",
                                   "--stand_in_encoders", "--no-zero_init", "--warmup", "0"});
  ASSERT_TRUE(entries.has_value());
  auto spec = make_sweep(*entries);
  ASSERT_EQ(spec.axes.size(), 1u);
  EXPECT_EQ(spec.axes[0].key, "batch_size");
  EXPECT_EQ(spec.axes[0].values, (std::vector<std::string>{"1", "2"}));
  auto points = expand_grid(spec);
  ASSERT_EQ(points.size(), 2u);
  EXPECT_EQ(setting(points[0], "precision"), "bf16");
  EXPECT_EQ(setting(points[0], "stand_in_encoders"), "true");
  EXPECT_EQ(setting(points[0], "zero_init"), "false");
  EXPECT_EQ(spec.bench.i("warmup"), 0);
  EXPECT_FALSE(parse_bench_args({"--config", path, "--help"}).has_value());
  EXPECT_THROW(parse_bench_args({"stray"}), UserError);
  EXPECT_THROW(parse_bench_args({"--config", "/nonexistent/sweep.yaml"}), UserError);
}
