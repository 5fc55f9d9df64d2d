// Logging implementation (see log.h).
#include "core/log.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <stdexcept>

namespace fluxtrain {
namespace {
LogLevel g_level = LogLevel::kInfo;
std::mutex g_mutex;
bool g_progress_open = false;  // a progress line is drawn and not yet ended
std::FILE* g_file = nullptr;   // the run's log file (LogFileScope), or none
}  // namespace

void set_log_level(LogLevel level) {
  g_level = level;
}
LogLevel log_level() {
  return g_level;
}

bool stderr_is_tty() {
  static const bool tty = isatty(fileno(stderr));
  return tty;
}

static std::string stamp() {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  return buf;
}

void log_line(LogLevel level, const std::string& message) {
  static const char* names[] = {"debug", "info", "warn", "error"};
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_progress_open) {
    std::fputs("\n", stderr);
    g_progress_open = false;
  }
  const std::string line =
      fmt::format("[{} {}] {}\n", stamp(), names[static_cast<int>(level)], message);
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  if (g_file) {
    std::fputs(line.c_str(), g_file);
    std::fflush(g_file);
  }
}

void log_block(const std::string& text) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_progress_open) {
    std::fputs("\n", stderr);
    g_progress_open = false;
  }
  std::fputs(text.c_str(), stderr);
  std::fflush(stderr);
  if (g_file) {
    std::fputs(text.c_str(), g_file);
    std::fflush(g_file);
  }
}

LogFileScope::LogFileScope(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (!f) throw std::runtime_error("cannot open log file " + path);
  std::lock_guard<std::mutex> lock(g_mutex);
  previous_ = g_file;
  g_file = f;
}

LogFileScope::~LogFileScope() {
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fclose(g_file);
  g_file = static_cast<std::FILE*>(previous_);
}

void progress_line(const std::string& message, bool final) {
  if (!stderr_is_tty()) {
    log_line(LogLevel::kInfo, message);
    return;
  }
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_file) {  // the file gets each state of the redrawn line as a line
    std::fprintf(g_file, "[%s info] %s\n", stamp().c_str(), message.c_str());
    std::fflush(g_file);
  }
  std::fprintf(stderr, "\r\033[K%s", message.c_str());
  g_progress_open = true;
  if (final) {
    std::fputs("\n", stderr);
    g_progress_open = false;
  }
  std::fflush(stderr);
}

std::string format_thousands(int64_t n) {
  const bool negative = n < 0;
  std::string s = std::to_string(negative ? -n : n), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return negative ? "-" + out : out;
}

std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e8) return "--";
  long s = static_cast<long>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

}  // namespace fluxtrain
