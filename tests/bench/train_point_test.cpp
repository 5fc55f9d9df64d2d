// Training points: child arguments, outcome classification, metrics parsing, child processes.
#include "bench/train_point.h"

#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "bench/environment.h"
#include "core/errors.h"
#include "test_util.h"

using namespace fluxtrain;
namespace fs = std::filesystem;

TEST(TrainPoint, ChildArgumentsForcePointSettingsAndLeaveUnbuiltValuesOut) {
  auto spec = make_sweep(read_sweep_yaml_string(
      "warmup: 2\nmeasured: 3\nmodel: tiny\nlr: 1e-3\nmethod: full\ngradient_checkpointing: "
      "on\nbatch_size: [1, 2]\n",
      "s.yaml"));
  const auto points = expand_grid(spec);
  const auto args = train_point_args(spec, points[1], "/out/points");
  auto has = [&](const std::string& a) {
    return std::find(args.begin(), args.end(), a) != args.end();
  };
  EXPECT_EQ(args[0], "train");
  for (const char* a :
       {"--steps=5", "--save_checkpoints=false", "--val_samples=0", "--final_eval=none",
        "--output_dir=/out/points", "--name=002-bs2", "--batch_size=2", "--model=tiny", "--lr=1e-3",
        "--lr_schedule=constant", "--stand_in_encoders=true", "--gradient_checkpointing=true"})
    EXPECT_TRUE(has(a)) << a;
  EXPECT_FALSE(has("--lr=1e-5"));     // the sweep's lr replaces bench's default
  EXPECT_TRUE(has("--method=full"));  // a train key with a built value
  auto cn =
      make_sweep(read_sweep_yaml_string("model: tiny\nmethod: [lora, controlnet]\n"
                                        "blocks_to_swap: [0, 8]\n",
                                        "c.yaml"));
  const auto cn_points = expand_grid(cn);
  ASSERT_EQ(cn_points.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    const auto args = train_point_args(cn, cn_points[i], "/out");
    EXPECT_NE(std::find(args.begin(), args.end(), i < 2 ? "--method=lora" : "--method=controlnet"),
              args.end());
    // A built train key: passed on.
    EXPECT_NE(
        std::find(args.begin(), args.end(), i % 2 ? "--blocks_to_swap=8" : "--blocks_to_swap=0"),
        args.end());
  }
}

TEST(TrainPoint, OutcomesAreClassified) {
  ProcessOutcome exit1;
  exit1.exited = true;
  exit1.exit_code = 1;
  auto [s1, e1] = classify_failure(exit1,
                                   "[info] step 1/5\nfluxtrain train: internal error (libtorch): "
                                   "CUDA out of memory. Tried to allocate "
                                   "2.00 GiB (GPU 0; 79.1 GiB total capacity)\n");
  EXPECT_EQ(s1, "oom");
  EXPECT_NE(e1.find("CUDA out of memory"), std::string::npos);
  auto [s2, e2] = classify_failure(
      exit1,
      "fluxtrain train: internal error (libtorch): [enforce fail at alloc_cpu.cpp:75] "
      "DefaultCPUAllocator: can't allocate memory: you tried to allocate 134316032 bytes.\n");
  EXPECT_EQ(s2, "oom");
  ProcessOutcome exit2 = exit1;
  exit2.exit_code = 2;
  auto [s3, e3] = classify_failure(exit2,
                                   "# fluxtrain train --weights=bf16\n[info] resolved "
                                   "config\nfluxtrain train: error: weights: bf16 weights "
                                   "need --precision bf16\n");
  EXPECT_EQ(s3, "failed");
  EXPECT_EQ(e3, "exit code 2: fluxtrain train: error: weights: bf16 weights need --precision bf16");
  ProcessOutcome killed;
  killed.signal = SIGKILL;
  EXPECT_EQ(classify_failure(killed, "step 3\n").first, "oom");
  killed.signal = SIGSEGV;
  auto [s4, e4] = classify_failure(killed, "step 3\n");
  EXPECT_EQ(s4, "failed");
  EXPECT_NE(e4.find("SIGSEGV"), std::string::npos);
  ProcessOutcome ctrl_c = exit1;
  ctrl_c.exit_code = 130;
  EXPECT_EQ(classify_failure(ctrl_c, "").first, "interrupted");
  ProcessOutcome late;
  late.signal = SIGKILL;
  late.timed_out = true;
  EXPECT_EQ(classify_failure(late, "").first, "timeout");
}

TEST(PointOutcome, ExceptionsOfInProcessPointsAreClassified) {
  auto outcome = [](const std::function<void()>& f) {
    PointResult r;
    try {
      f();
    } catch (const std::exception&) {
      record_point_exception(r);
    }
    return std::make_pair(r.status, r.error);
  };
  using P = std::pair<std::string, std::string>;
  EXPECT_EQ(outcome([] { user_error("images {}: a multiple of batch_size {}", 6, 4); }),
            (P{"failed", "images 6: a multiple of batch_size 4"}));
  EXPECT_EQ(outcome([] { TORCH_CHECK(false, "CUDA out of memory. Tried to allocate 2.00 GiB"); }),
            (P{"oom", "CUDA out of memory. Tried to allocate 2.00 GiB"}));
  EXPECT_EQ(outcome([] { throw std::bad_alloc(); }), (P{"oom", "std::bad_alloc"}));
  EXPECT_EQ(
      outcome([] { throw std::runtime_error("loading batch 3\nerror: shard-7.tar is gone"); }),
      (P{"failed", "error: shard-7.tar is gone"}));
}

TEST(TrainPoint, LastErrorLineSkipsLaterProgressLines) {
  EXPECT_EQ(last_error_line("a\nerror: first\nb\nError: second\n[info] step 4\n\n"),
            "Error: second");
  EXPECT_EQ(last_error_line("a\nlast line  \n"), "last line");
  EXPECT_EQ(last_error_line(std::string(400, 'x') + "\n").size(), 300u);
}

TEST(TrainPoint, MeasuredStepsComeFromTrainRowsAfterWarmup) {
  fluxtrain::testing::TempDir tmp;
  const fs::path p = tmp.path() / "metrics.jsonl";
  std::ofstream(p) << R"({"type":"train","step":1,"step_ms":900.0}
{"type":"train","step":2,"step_ms":110.0}
{"type":"val","step":2,"val_loss":0.5}
{"type":"train","step":4,"step_ms":130.0}
{"type":"train","step":3,"step_ms":120.0}
{"type":"train","step":5,"step_m)";
  EXPECT_EQ(measured_step_ms(p.string(), 1), (std::vector<double>{110.0, 120.0, 130.0}));
  EXPECT_EQ(measured_step_ms(p.string(), 3), (std::vector<double>{130.0}));
}

TEST(Subprocess, ExitCodesSignalsTimeoutsAndLogs) {
  fluxtrain::testing::TempDir tmp;
  const std::string log = tmp / "child.log";
  auto o = run_process({"/bin/sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"}, log);
  EXPECT_TRUE(o.exited);
  EXPECT_EQ(o.exit_code, 3);
  std::stringstream ss;
  ss << std::ifstream(log).rdbuf();
  EXPECT_NE(ss.str().find("to-stdout"), std::string::npos);
  EXPECT_NE(ss.str().find("to-stderr"), std::string::npos);
  o = run_process({"/bin/sh", "-c", "kill -9 $$"}, log);
  EXPECT_FALSE(o.exited);
  EXPECT_EQ(o.signal, SIGKILL);
  o = run_process({"/bin/sleep", "10"}, log, 0.2);
  EXPECT_TRUE(o.timed_out);
  EXPECT_LT(o.seconds, 5.0);
  o = run_process({"/nonexistent/binary"}, log);
  EXPECT_EQ(o.exit_code, 127);
}

TEST(Environment, NvidiaSmiParsingAndDeviceNames) {
  auto gpus = parse_nvidia_smi_gpus(
      "0, NVIDIA H100 80GB HBM3, 550.54.15, 81559\n1, NVIDIA H200, 550.54.15, 143771\n");
  ASSERT_EQ(gpus.size(), 2u);
  EXPECT_EQ(gpus[1].index, 1);
  EXPECT_EQ(gpus[1].name, "NVIDIA H200");
  EXPECT_EQ(gpus[0].driver, "550.54.15");
  EXPECT_EQ(gpus[0].memory_mib, 81559);
  EXPECT_TRUE(parse_nvidia_smi_gpus("").empty());
  EXPECT_EQ(parse_nvidia_smi_cuda_version(
                "| NVIDIA-SMI 550.54.15  Driver Version: 550.54.15  CUDA Version: 12.4  |"),
            "12.4");
  Environment env;
  env.cpu_model = "AMD EPYC";
  env.gpus = gpus;
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  const std::string saved = visible ? visible : "";
  unsetenv("CUDA_VISIBLE_DEVICES");
  EXPECT_EQ(env.device_name("cpu (2 threads)"), "CPU: AMD EPYC");
  EXPECT_EQ(env.device_name("cuda:1"), "NVIDIA H200");
  EXPECT_EQ(env.device_name("cuda:0"), "NVIDIA H100 80GB HBM3");
  setenv("CUDA_VISIBLE_DEVICES", "1", 1);  // the process's cuda:0 is nvidia-smi's GPU 1
  EXPECT_EQ(env.device_name("cuda:0"), "NVIDIA H200");
  if (visible)
    setenv("CUDA_VISIBLE_DEVICES", saved.c_str(), 1);
  else
    unsetenv("CUDA_VISIBLE_DEVICES");
  const auto here = collect_environment();
  EXPECT_FALSE(here.libtorch.empty());
  EXPECT_GT(here.cpu_cores, 0);
}
