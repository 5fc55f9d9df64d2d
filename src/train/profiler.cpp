// Per-op profiles from libtorch's legacy profiler (see profiler.h).
#include "train/profiler.h"

#include <fmt/format.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <unordered_map>

namespace fluxtrain {

namespace {

bool is_op(const std::string& name) {
  return name.rfind("aten::", 0) == 0;
}

struct Frame {
  std::string name;
  uint64_t id;
  double start_us;
  double child_us = 0, child_device_us = 0;
  bool outermost;  // no enclosing open range of the same name
};

}  // namespace

ProfileReport aggregate_profile(const ProfileThreads& threads,
                                const std::vector<std::string>& phase_names) {
  ProfileReport r;
  std::map<std::string, ProfileStat> ops, phases;
  for (const auto& events : threads) {
    std::vector<Frame> stack;
    std::unordered_map<std::string, int> open;  // open ranges per name
    for (const auto& e : events) {
      if (e.push) {
        stack.push_back({e.name, e.id, e.cpu_us, 0, 0, open[e.name]++ == 0});
        continue;
      }
      auto it =
          std::find_if(stack.rbegin(), stack.rend(), [&](const Frame& f) { return f.id == e.id; });
      if (it == stack.rend()) continue;  // a pop whose push was not recorded
      const size_t index = static_cast<size_t>(stack.rend() - it) - 1;
      while (stack.size() > index + 1) {  // ranges left open inside: their time stays the parent's
        --open[stack.back().name];
        stack.pop_back();
      }
      const Frame f = stack.back();
      stack.pop_back();
      --open[f.name];
      const double dur = std::max(0.0, e.cpu_us - f.start_us);
      const bool has_device = e.device_us >= 0;
      const double device = has_device ? e.device_us : 0.0;
      r.has_device |= has_device;
      const bool phase =
          std::find(phase_names.begin(), phase_names.end(), f.name) != phase_names.end();
      if (is_op(f.name) || phase) {
        ProfileStat& s = phase ? phases[f.name] : ops[f.name];
        s.name = f.name;
        s.calls += 1;
        s.self_us += std::max(0.0, dur - f.child_us);
        s.device_self_us += std::max(0.0, device - f.child_device_us);
        if (f.outermost) {
          s.total_us += dur;
          s.device_total_us += device;
        }
      }
      if (!stack.empty()) {
        stack.back().child_us += dur;
        stack.back().child_device_us += device;
      }
    }
  }
  for (auto& [name, s] : ops) {
    r.op_self_us += s.self_us;
    r.op_device_self_us += s.device_self_us;
  }
  for (auto& [name, s] : ops) {
    s.self_pct = r.op_self_us > 0 ? 100.0 * s.self_us / r.op_self_us : 0.0;
    s.device_self_pct =
        r.op_device_self_us > 0 ? 100.0 * s.device_self_us / r.op_device_self_us : 0.0;
    r.ops.push_back(s);
  }
  const bool by_device = r.has_device;
  std::stable_sort(r.ops.begin(), r.ops.end(), [&](const ProfileStat& a, const ProfileStat& b) {
    const double x = by_device ? a.device_self_us : a.self_us;
    const double y = by_device ? b.device_self_us : b.self_us;
    return x > y;
  });
  for (const auto& n : phase_names) {
    auto it = phases.find(n);
    if (it != phases.end()) r.phases.push_back(it->second);
  }
  return r;
}

namespace lp = torch::autograd::profiler;
namespace pimpl = torch::profiler::impl;

OpProfiler::OpProfiler(bool cuda) : cuda_(cuda) {
  lp::enableProfilerLegacy(
      pimpl::ProfilerConfig(cuda ? pimpl::ProfilerState::CUDA : pimpl::ProfilerState::CPU));
}

OpProfiler::~OpProfiler() {
  if (!running_) return;
  try {
    lp::disableProfilerLegacy();
  } catch (...) {  // a destructor must not throw; the events are discarded anyway
  }
}

ProfileThreads OpProfiler::stop() {
  running_ = false;
  const lp::thread_event_lists lists = lp::disableProfilerLegacy();
  ProfileThreads out;
  for (const auto& list : lists) {
    std::vector<ProfileEvent> events;
    events.reserve(list.size());
    std::unordered_map<uint64_t, const lp::LegacyEvent*> open;  // handle -> its push
    for (const auto& e : list) {
      if (e.kind() == lp::EventKind::PushRange) {
        open[e.handle()] = &e;
        events.push_back({true, e.name(), e.handle(), e.cpuUs(), -1.0});
      } else if (e.kind() == lp::EventKind::PopRange) {
        double device_us = -1.0;
        auto it = open.find(e.handle());
        if (it != open.end()) {
          if (it->second->hasCuda() && e.hasCuda()) device_us = it->second->cudaElapsedUs(e);
          open.erase(it);
        }
        events.push_back({false, "", e.handle(), e.cpuUs(), device_us});
      }  // marks (__start_profile) and memory events are not ranges
    }
    if (!events.empty()) out.push_back(std::move(events));
  }
  return out;
}

ProfileReport profile_calls(const std::function<void()>& fn, int64_t calls, bool cuda,
                            const std::vector<std::string>& phase_names) {
  const auto t0 = std::chrono::steady_clock::now();
  OpProfiler profiler(cuda);
  for (int64_t i = 0; i < calls; ++i) fn();
  if (cuda) torch::cuda::synchronize();
  const auto events = profiler.stop();
  const double wall_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ProfileReport r = aggregate_profile(events, phase_names);
  r.steps = calls;
  r.wall_ms = wall_ms;
  r.device = cuda ? "cuda" : "cpu";
  return r;
}

struct PhaseRange::Impl {
  at::RecordFunction range{at::RecordScope::USER_SCOPE};
};

PhaseRange::PhaseRange(const char* name) : impl_(std::make_unique<Impl>()) {
  if (impl_->range.isActive()) impl_->range.before(name, c10::ArrayRef<const c10::IValue>{});
}

PhaseRange::~PhaseRange() = default;  // RecordFunction's destructor ends it if still open

void PhaseRange::end() {
  impl_.reset();
}

const std::vector<std::string>& training_phases() {
  static const std::vector<std::string> phases = {"data", "forward", "backward", "optimizer"};
  return phases;
}

static std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string profile_csv(const ProfileReport& r) {
  std::string out = "op,calls,self_ms,total_ms,self_pct";
  if (r.has_device) out += ",device_self_ms,device_total_ms,device_self_pct";
  out += "\n";
  for (const auto& s : r.ops) {
    out += fmt::format("{},{},{:.4f},{:.4f},{:.3f}", csv_field(s.name), s.calls, s.self_us / 1e3,
                       s.total_us / 1e3, s.self_pct);
    if (r.has_device)
      out += fmt::format(",{:.4f},{:.4f},{:.3f}", s.device_self_us / 1e3, s.device_total_us / 1e3,
                         s.device_self_pct);
    out += "\n";
  }
  return out;
}

std::string profile_table(const ProfileReport& r, size_t top) {
  const bool dev = r.has_device;
  const double per_step = r.steps > 0 ? r.wall_ms / static_cast<double>(r.steps) : r.wall_ms;
  std::string h =
      fmt::format("Where the time goes: {} profiled step{}", r.steps, r.steps == 1 ? "" : "s");
  if (r.first_step > 0 && r.steps > 0)
    h += fmt::format(" ({}..{})", r.first_step, r.first_step + r.steps - 1);
  h += fmt::format(" on {}, {:.1f} ms wall ({:.1f} ms per step)\n",
                   r.device.empty() ? "?" : r.device, r.wall_ms, per_step);
  h += fmt::format("operator self time: CPU {:.1f} ms ({:.1f} % of wall)", r.op_self_us / 1e3,
                   r.wall_ms > 0 ? 100.0 * r.op_self_us / 1e3 / r.wall_ms : 0.0);
  if (dev)
    h += fmt::format(", device {:.1f} ms ({:.1f} % of wall)", r.op_device_self_us / 1e3,
                     r.wall_ms > 0 ? 100.0 * r.op_device_self_us / 1e3 / r.wall_ms : 0.0);
  h += fmt::format("; ops sorted by {} self time\n\n", dev ? "device" : "CPU");
  size_t width = 24;
  for (size_t i = 0; i < std::min(top, r.ops.size()); ++i)
    width = std::max(width, r.ops[i].name.size());
  h += fmt::format("{:>3}  {:<{}} {:>7} {:>11} {:>7} {:>11}", "#", "op", width, "calls", "self ms",
                   "self %", "total ms");
  if (dev) h += fmt::format(" {:>13} {:>9} {:>14}", "dev self ms", "dev self %", "dev total ms");
  h += "\n";
  for (size_t i = 0; i < std::min(top, r.ops.size()); ++i) {
    const auto& s = r.ops[i];
    h += fmt::format("{:>3}  {:<{}} {:>7} {:>11.2f} {:>7.1f} {:>11.2f}", i + 1, s.name, width,
                     s.calls, s.self_us / 1e3, s.self_pct, s.total_us / 1e3);
    if (dev)
      h += fmt::format(" {:>13.2f} {:>9.1f} {:>14.2f}", s.device_self_us / 1e3, s.device_self_pct,
                       s.device_total_us / 1e3);
    h += "\n";
  }
  if (r.ops.size() > top) {
    ProfileStat rest;
    for (size_t i = top; i < r.ops.size(); ++i) {
      rest.calls += r.ops[i].calls;
      rest.self_us += r.ops[i].self_us;
      rest.self_pct += r.ops[i].self_pct;
      rest.device_self_us += r.ops[i].device_self_us;
      rest.device_self_pct += r.ops[i].device_self_pct;
    }
    h += fmt::format("     {:<{}} {:>7} {:>11.2f} {:>7.1f} {:>11}",
                     fmt::format("({} other ops)", r.ops.size() - top), width, rest.calls,
                     rest.self_us / 1e3, rest.self_pct, "");
    if (dev)
      h += fmt::format(" {:>13.2f} {:>9.1f}", rest.device_self_us / 1e3, rest.device_self_pct);
    h += "\n";
  }
  if (!r.phases.empty()) {
    h += fmt::format("\n{:<12} {:>7} {:>11} {:>10}", "phase", "calls", "total ms", "% of wall");
    if (dev) h += fmt::format(" {:>14}", "dev total ms");
    h += "\n";
    for (const auto& p : r.phases) {
      h += fmt::format("{:<12} {:>7} {:>11.2f} {:>10.1f}", p.name, p.calls, p.total_us / 1e3,
                       r.wall_ms > 0 ? 100.0 * p.total_us / 1e3 / r.wall_ms : 0.0);
      if (dev) h += fmt::format(" {:>14.2f}", p.device_total_us / 1e3);
      h += "\n";
    }
  }
  return h;
}

}  // namespace fluxtrain
