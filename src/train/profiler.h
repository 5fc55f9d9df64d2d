// Where the time goes: libtorch's profiler around a stretch of work (training steps), aggregated
// per operator name (aten::*): calls, self time (own time minus the ops nested inside it), total
// time and share of all operators' self time, on the CPU and, on CUDA, on the device.
//
// Uses libtorch's legacy autograd profiler (torch/csrc/autograd/profiler_legacy.h:
// enableProfilerLegacy / disableProfilerLegacy), which has the same interface in libtorch 1.13
// and 2.x and needs no Kineto: each recorded function is a push/pop event pair per thread, with a
// CPU timestamp and, in CUDA mode, CUDA events whose elapsed time is the op's device time.
// User ranges (PhaseRange: "forward", "backward", ...) are reported separately as phases.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace fluxtrain {

// One profiler event, independent of libtorch's types (so the aggregation can be tested on
// hand-made lists). A push opens a range; the pop with the same id closes it.
struct ProfileEvent {
  bool push = true;
  std::string name;         // pushes only
  uint64_t id = 0;          // pairs a pop with its push (unique among open ranges of a thread)
  double cpu_us = 0;        // CPU timestamp
  double device_us = -1.0;  // pops only: device time between push and pop (< 0: none)
};
using ProfileThreads = std::vector<std::vector<ProfileEvent>>;  // events per thread, in order

struct ProfileStat {
  std::string name;
  int64_t calls = 0;
  double self_us = 0, total_us = 0;  // CPU
  double self_pct = 0;               // of the sum of all operators' CPU self time
  double device_self_us = 0, device_total_us = 0;
  double device_self_pct = 0;  // of the sum of all operators' device self time
};

struct ProfileReport {
  std::vector<ProfileStat> ops;     // aten::* ops, most (device, if any, else CPU) self time first
  std::vector<ProfileStat> phases;  // the phase ranges that occurred, in the order asked for
  bool has_device = false;          // device (CUDA) times were recorded
  double op_self_us = 0, op_device_self_us = 0;  // sums over ops (the percentages' 100 %)
  // Filled by the caller (the aggregation does not know them):
  int64_t steps = 0;       // profiled steps (or calls)
  int64_t first_step = 0;  // first profiled step (1-based), 0 when not steps
  double wall_ms = 0;      // wall time of the profiled stretch
  std::string device;      // "cpu", "cuda:0"
};

// Aggregates per name. Self time = a range's time minus that of the ranges directly nested in it
// (any kind: an autograd node or a user scope inside an op is not the op's own time). Total time
// counts only outermost calls of a name (aten::to inside aten::to is not counted twice). Pops
// without a push are ignored; ranges left open are closed by their enclosing range's pop or
// dropped at the end. Ops are the names starting with "aten::"; phases are the names listed.
ProfileReport aggregate_profile(const ProfileThreads& threads,
                                const std::vector<std::string>& phase_names = {});

// Records libtorch's operators (legacy profiler). cuda: also record CUDA events per op (use only
// when the work runs on a GPU). One at a time per process.
class OpProfiler {
 public:
  explicit OpProfiler(bool cuda);
  ~OpProfiler();  // stops without aggregating if still running
  OpProfiler(const OpProfiler&) = delete;
  OpProfiler& operator=(const OpProfiler&) = delete;
  ProfileThreads stop();  // the recorded events (device times need the GPU synchronized first)
  bool cuda() const { return cuda_; }

 private:
  bool cuda_, running_ = true;
};

// Profiles fn() called `calls` times: events aggregated, wall time and steps filled in.
ProfileReport profile_calls(const std::function<void()>& fn, int64_t calls, bool cuda,
                            const std::vector<std::string>& phase_names = {});

// A named user range (RecordScope::USER_SCOPE) from construction to end() or destruction: what
// the profiler reports as a phase. Costs nothing measurable while no profiler is running.
class PhaseRange {
 public:
  explicit PhaseRange(const char* name);
  ~PhaseRange();
  PhaseRange(const PhaseRange&) = delete;
  PhaseRange& operator=(const PhaseRange&) = delete;
  void end();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The phases the trainer marks with PhaseRange: data, forward, backward, optimizer.
const std::vector<std::string>& training_phases();

// profile.csv: op, calls, self_ms, total_ms, self_pct (+ device_self_ms, device_total_ms,
// device_self_pct on CUDA), every op, most self time first.
std::string profile_csv(const ProfileReport& r);
// A readable table of the top `top` ops and the phases, with a heading line.
std::string profile_table(const ProfileReport& r, size_t top = 15);

}  // namespace fluxtrain
