// Logging to stderr with a time stamp; results go to files, never to the log.
#pragma once
#include <fmt/format.h>

#include <string>

namespace fluxtrain {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
void log_line(LogLevel level, const std::string& message);
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

}  // namespace fluxtrain
