// Helpers shared by the test binaries.
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

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

// A directory under the system temp dir, named after the running test (and the process), removed
// with everything in it at the end: what every test that writes files uses.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            ("fluxtrain_test_" + std::string(info->test_suite_name()) + "_" + info->name() + "_" +
             std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// An empty directory under the system temp dir, named for the test (and the process), removed
// with everything in it when the test process exits (ctest runs each test in its own process).
inline std::filesystem::path fresh_temp_dir(const std::string& name) {
  struct Registry {
    std::vector<std::filesystem::path> dirs;
    ~Registry() {
      std::error_code ec;
      for (const auto& d : dirs) std::filesystem::remove_all(d, ec);
    }
  };
  static Registry registry;
  auto d = std::filesystem::temp_directory_path() /
           ("fluxtrain_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  registry.dirs.push_back(d);
  return d;
}

}  // namespace fluxtrain::testing
