// Running a child process (a benchmark point) with its output in a log file, an optional
// wall-clock limit and an optional memory limit, and telling how it ended.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace fluxtrain {

struct ProcessOutcome {
  bool exited = false;     // ended by exit(); else by a signal
  int exit_code = -1;      // when exited
  int signal = 0;          // when killed by a signal
  bool timed_out = false;  // we killed it at the time limit
  double seconds = 0;
};

// Runs argv[0] with argv (no shell), stdout and stderr appended to `log_path`. Kills it with
// SIGKILL after `timeout_s` seconds when > 0. `memory_limit_bytes` > 0 caps its heap and other
// private writable memory (RLIMIT_DATA; shared libraries' code does not count, so the limit
// means the same with a CPU or a CUDA libtorch). Throws std::runtime_error when the process
// cannot be started.
ProcessOutcome run_process(const std::vector<std::string>& argv, const std::string& log_path,
                           double timeout_s = 0, int64_t memory_limit_bytes = 0);

// The running executable's path (/proc/self/exe): benchmark points run this same binary.
std::string self_executable();

// "SIGKILL" for 9, ...
std::string signal_name(int signal);

}  // namespace fluxtrain
