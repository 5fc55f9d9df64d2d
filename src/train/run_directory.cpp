// Run directories and their config.yaml (see run_directory.h).
#include "train/run_directory.h"

#include <ctime>
#include <filesystem>
#include <fstream>

#include "core/errors.h"

namespace fluxtrain {
namespace fs = std::filesystem;

namespace {

std::string time_text(const char* format) {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

}  // namespace

std::string local_time_text() {
  return time_text("%Y-%m-%d %H:%M:%S");
}

std::string create_run_dir(const std::string& output_dir, const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
    user_error("name '{}': expected a plain directory name", name);
  const std::string stamp = time_text("%Y%m%d-%H%M%S");
  fs::path base = fs::path(output_dir) / name;
  std::error_code ec;
  fs::create_directories(base, ec);
  if (ec)
    user_error("output_dir '{}': cannot create '{}': {}", output_dir, base.string(), ec.message());
  for (int k = 1;; ++k) {
    fs::path dir = base / (k == 1 ? stamp : fmt::format("{}-{}", stamp, k));
    if (fs::create_directory(dir, ec)) return dir.string();
    if (ec) user_error("cannot create run directory '{}': {}", dir.string(), ec.message());
  }
}

bool is_run_dir(const std::string& dir) {
  std::error_code ec;
  return fs::exists(fs::path(dir) / "config.yaml", ec) ||
         fs::exists(fs::path(dir) / "metrics.jsonl", ec);
}

void write_run_config(const std::string& run_dir, const std::string& yaml) {
  const fs::path path = fs::path(run_dir) / "config.yaml";
  std::ofstream out(path, std::ios::trunc);
  out << yaml;
  if (!out) user_error("cannot write '{}'", path.string());
}

void append_resume_record(const std::string& run_dir, const ResumeRecord& r) {
  const fs::path path = fs::path(run_dir) / "config.yaml";
  std::ofstream out(path, std::ios::app);
  out << fmt::format("# resumed {} from {} (step {}): {}\n", r.time, r.checkpoint, r.step,
                     r.changes.empty() ? "no changes" : "changed");
  for (const auto& c : r.changes) out << "#   " << c << "\n";
  if (!out) user_error("cannot append to '{}'", path.string());
}

}  // namespace fluxtrain
