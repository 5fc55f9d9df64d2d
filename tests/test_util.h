// Helpers shared by the test binaries.
#pragma once
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>

#include "core/errors.h"

namespace fluxtrain::testing {

// The message of the UserError that f throws; "" if it throws none (other exceptions escape).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

struct CommandResult {
  int code;         // exit code, -1 if killed by a signal
  std::string out;  // stdout and stderr together
};

// Runs the fluxtrain binary under test with `args` (a shell command line fragment).
inline CommandResult run_fluxtrain(const std::string& args) {
  std::string cmd = std::string(FLUXTRAIN_BINARY) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// An empty directory under the system temp dir, named for the test.
inline std::filesystem::path fresh_temp_dir(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / ("fluxtrain_test_" + name);
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

}  // namespace fluxtrain::testing
