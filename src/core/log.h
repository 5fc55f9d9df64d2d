// Logging to stderr with a time stamp; results go to files, never to the log.
#pragma once
#include <fmt/format.h>

#include <string>

namespace fluxtrain {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
void log_line(LogLevel level, const std::string& message);
// Raw text (e.g. the resolved configuration) to stderr and the log file, without a prefix.
void log_block(const std::string& text);
// While it lives, every log line (and every progress line) is also appended to
// `path` (a run's train.log). std::runtime_error if it cannot be opened. Scopes nest.
class LogFileScope {
 public:
  explicit LogFileScope(const std::string& path);
  ~LogFileScope();
  LogFileScope(const LogFileScope&) = delete;
  LogFileScope& operator=(const LogFileScope&) = delete;

 private:
  void* previous_ = nullptr;
};
// True when stderr is a terminal (progress lines then redraw in place).
bool stderr_is_tty();
// Redraws a single progress line in place on a terminal; prints it as a log line otherwise.
void progress_line(const std::string& message, bool final = false);

template <typename... A>
void log_info(fmt::format_string<A...> f, A&&... a) {
  if (log_level() <= LogLevel::kInfo)
    log_line(LogLevel::kInfo, fmt::format(f, std::forward<A>(a)...));
}
template <typename... A>
void log_warn(fmt::format_string<A...> f, A&&... a) {
  if (log_level() <= LogLevel::kWarn)
    log_line(LogLevel::kWarn, fmt::format(f, std::forward<A>(a)...));
}
template <typename... A>
void log_debug(fmt::format_string<A...> f, A&&... a) {
  if (log_level() <= LogLevel::kDebug)
    log_line(LogLevel::kDebug, fmt::format(f, std::forward<A>(a)...));
}

// "1h02m", "3m05s", "12s".
std::string format_duration(double seconds);
// 11901408320 -> "11,901,408,320".
std::string format_thousands(int64_t n);

}  // namespace fluxtrain
