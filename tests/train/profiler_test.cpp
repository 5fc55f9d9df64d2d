// Per-op profiles: the aggregation on hand-made event lists (nesting -> self time), a real
// profile of known ops, and a training run with profile_steps (files written, losses unchanged).
#include "train/profiler.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "test_util.h"
#include "train/train_config.h"
#include "train/trainer.h"

using namespace fluxtrain;
namespace fs = std::filesystem;

namespace {

ProfileEvent push(const std::string& name, uint64_t id, double t) {
  return {true, name, id, t, -1.0};
}
ProfileEvent pop(uint64_t id, double t, double device_us = -1.0) {
  return {false, "", id, t, device_us};
}

const ProfileStat* find(const std::vector<ProfileStat>& v, const std::string& name) {
  for (const auto& s : v)
    if (s.name == name) return &s;
  return nullptr;
}

}  // namespace

// Worked by hand:
// thread 0: forward [0,100] { aten::linear [10,40] { aten::addmm [12,20], aten::t [22,25] },
//                             aten::to [50,60] { aten::to [52,58] { aten::copy_ [53,57] } } }
//   linear: total 30, self 30 - 8 - 3 = 19; addmm 8; t 3
//   to: 2 calls, self (10 - 6) + (6 - 4) = 6, total 10 (the outer call only); copy_ 4
//   forward (a phase): total 100; a pop without a push is ignored
// thread 1: MmBackward0 [0,7] { aten::mm [1,6] }; aten::add opened at 8, never closed (dropped);
//           aten::sum [10,14] { aten::fill_ opened at 11, never closed: its time stays sum's }
//   mm 5, sum 4
// all ops' self time: 19 + 8 + 3 + 6 + 4 + 5 + 4 = 49
TEST(Profiler, AggregationNestsSelfTimePerThread) {
  ProfileThreads threads = {
      {push("forward", 1, 0), push("aten::linear", 2, 10), push("aten::addmm", 3, 12), pop(3, 20),
       push("aten::t", 4, 22), pop(4, 25), pop(2, 40), push("aten::to", 5, 50),
       push("aten::to", 6, 52), push("aten::copy_", 7, 53), pop(7, 57), pop(6, 58), pop(5, 60),
       pop(1, 100), pop(99, 101)},
      {push("MmBackward0", 1, 0), push("aten::mm", 2, 1), pop(2, 6), pop(1, 7),
       push("aten::add", 3, 8), push("aten::sum", 4, 10), push("aten::fill_", 5, 11), pop(4, 14)}};
  const ProfileReport r = aggregate_profile(threads, {"forward", "backward"});
  EXPECT_FALSE(r.has_device);
  EXPECT_DOUBLE_EQ(r.op_self_us, 49.0);
  ASSERT_EQ(r.ops.size(), 7u);  // no forward, MmBackward0, never-closed add or fill_
  std::vector<std::string> order;
  for (const auto& s : r.ops) order.push_back(s.name);
  EXPECT_EQ(order, (std::vector<std::string>{"aten::linear", "aten::addmm", "aten::to", "aten::mm",
                                             "aten::copy_", "aten::sum", "aten::t"}));
  auto expect = [&](const std::string& name, int64_t calls, double self, double total) {
    const ProfileStat* s = find(r.ops, name);
    ASSERT_NE(s, nullptr) << name;
    EXPECT_EQ(s->calls, calls) << name;
    EXPECT_DOUBLE_EQ(s->self_us, self) << name;
    EXPECT_DOUBLE_EQ(s->total_us, total) << name;
    EXPECT_NEAR(s->self_pct, 100.0 * self / 49.0, 1e-9) << name;
  };
  expect("aten::linear", 1, 19, 30);
  expect("aten::addmm", 1, 8, 8);
  expect("aten::t", 1, 3, 3);
  expect("aten::to", 2, 6, 10);
  expect("aten::copy_", 1, 4, 4);
  expect("aten::mm", 1, 5, 5);
  expect("aten::sum", 1, 4, 4);
  EXPECT_EQ(find(r.ops, "aten::add"), nullptr);
  EXPECT_EQ(find(r.ops, "aten::fill_"), nullptr);
  ASSERT_EQ(r.phases.size(), 1u);  // backward did not occur
  EXPECT_EQ(r.phases[0].name, "forward");
  EXPECT_EQ(r.phases[0].calls, 1);
  EXPECT_DOUBLE_EQ(r.phases[0].total_us, 100.0);
}

// Device times: op device self = its device time minus its children's; ops sort by device time.
TEST(Profiler, AggregationOfDeviceTimes) {
  ProfileThreads threads = {{push("aten::linear", 1, 0), push("aten::addmm", 2, 1), pop(2, 3, 7.0),
                             pop(1, 10, 9.0), push("aten::relu", 3, 11), pop(3, 30, 1.0)}};
  const ProfileReport r = aggregate_profile(threads);
  ASSERT_TRUE(r.has_device);
  ASSERT_EQ(r.ops.size(), 3u);
  EXPECT_EQ(r.ops[0].name, "aten::addmm");  // CPU order would put relu (19 us) first
  EXPECT_DOUBLE_EQ(r.ops[0].device_self_us, 7.0);
  EXPECT_EQ(r.ops[1].name, "aten::linear");
  EXPECT_DOUBLE_EQ(r.ops[1].device_self_us, 2.0);
  EXPECT_DOUBLE_EQ(r.ops[1].device_total_us, 9.0);
  EXPECT_DOUBLE_EQ(r.op_device_self_us, 10.0);
  EXPECT_NEAR(r.ops[0].device_self_pct, 70.0, 1e-9);
  const std::string csv = profile_csv(r);
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "op,calls,self_ms,total_ms,self_pct,device_self_ms,device_total_ms,device_self_pct");
}

TEST(Profiler, RealProfileCountsKnownOps) {
  torch::manual_seed(0);
  auto x = torch::randn({64, 64}), y = torch::randn({64, 64}), z = torch::randn({64, 64});
  const ProfileReport r = profile_calls(
      [&] {
        PhaseRange phase("forward");
        auto a = torch::mm(x, y);
        auto b = torch::add(a, z);
        (void)b;
      },
      5, false, {"forward"});
  EXPECT_EQ(r.steps, 5);
  EXPECT_GT(r.wall_ms, 0.0);
  EXPECT_FALSE(r.has_device);
  const ProfileStat* mm = find(r.ops, "aten::mm");
  const ProfileStat* add = find(r.ops, "aten::add");
  ASSERT_NE(mm, nullptr);
  ASSERT_NE(add, nullptr);
  EXPECT_EQ(mm->calls, 5);
  EXPECT_EQ(add->calls, 5);
  double pct = 0;
  for (const auto& s : r.ops) {
    EXPECT_EQ(s.name.rfind("aten::", 0), 0u) << s.name;
    EXPECT_GE(s.self_us, 0.0) << s.name;
    EXPECT_LE(s.self_us, s.total_us + 1e-6) << s.name;
    pct += s.self_pct;
  }
  EXPECT_NEAR(pct, 100.0, 1e-6);
  ASSERT_EQ(r.phases.size(), 1u);
  EXPECT_EQ(r.phases[0].calls, 5);
  EXPECT_GE(r.phases[0].total_us, mm->total_us);
  const std::string table = profile_table(r, 15);
  EXPECT_NE(table.find("aten::mm"), std::string::npos);
  EXPECT_NE(table.find("forward"), std::string::npos);
  // Nothing is recorded once the profiler is stopped.
  const ProfileReport after = profile_calls([] {}, 1, false);
  EXPECT_EQ(find(after.ops, "aten::mm"), nullptr);
}

TEST(Profiler, TrainingWithProfileStepsWritesProfileAndKeepsLosses) {
  fluxtrain::testing::TempDir tmp;
  auto run = [&](const std::string& name, const std::string& profile_steps) {
    const fs::path out = tmp.path() / name;
    Config c(train_schema());
    parse_args(c, {"--output_dir",       out.string(), "--batch_size",  "4", "--steps",      "4",
                   "--warmup_steps",     "1",          "--val_samples", "0", "--final_eval", "none",
                   "--save_checkpoints", "false",      "--threads",     "1", "--log_every",  "100",
                   "--profile_steps",    profile_steps});
    return train(c).run_dir;
  };
  auto rows = [](const std::string& run_dir) {
    std::vector<nlohmann::json> out;
    std::ifstream in(fs::path(run_dir) / "metrics.jsonl");
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line);
      if (j["type"] == "train") out.push_back(j);
    }
    return out;
  };
  const std::string plain = run("plain", "0"), profiled = run("profiled", "2");
  EXPECT_FALSE(fs::exists(fs::path(plain) / "profile.csv"));
  const auto a = rows(plain), b = rows(profiled);
  ASSERT_EQ(a.size(), 4u);
  ASSERT_EQ(b.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(a[i]["loss"].get<double>(), b[i]["loss"].get<double>()) << "step " << i + 1;
    EXPECT_EQ(a[i]["grad_norm"].get<double>(), b[i]["grad_norm"].get<double>());
    EXPECT_EQ(b[i].value("profiled", false), i >= 2) << "step " << i + 1;  // the last 2
  }
  std::ifstream csv(fs::path(profiled) / "profile.csv");
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "op,calls,self_ms,total_ms,self_pct");
  std::set<std::string> ops;
  double pct = 0;
  while (std::getline(csv, line)) {
    std::stringstream ss(line);
    std::string op, calls, self_ms, total_ms, self_pct;
    std::getline(ss, op, ',');
    std::getline(ss, calls, ',');
    std::getline(ss, self_ms, ',');
    std::getline(ss, total_ms, ',');
    std::getline(ss, self_pct, ',');
    EXPECT_EQ(op.rfind("aten::", 0), 0u) << op;
    EXPECT_GT(std::stoll(calls), 0) << op;
    EXPECT_GE(std::stod(self_ms), 0.0) << op;
    EXPECT_LE(std::stod(self_ms), std::stod(total_ms) + 1e-3) << op;
    pct += std::stod(self_pct);
    ops.insert(op);
  }
  EXPECT_NEAR(pct, 100.0, 0.1);
  EXPECT_TRUE(ops.count("aten::addmm") || ops.count("aten::mm") || ops.count("aten::matmul"));
  EXPECT_TRUE(ops.count("aten::mul"));
  std::stringstream txt;
  txt << std::ifstream(fs::path(profiled) / "profile.txt").rdbuf();
  EXPECT_NE(txt.str().find("2 profiled steps (3..4)"), std::string::npos) << txt.str();
  for (const char* phase : {"data", "forward", "backward", "optimizer"})
    EXPECT_NE(txt.str().find(std::string("\n") + phase + " "), std::string::npos) << phase;
}
