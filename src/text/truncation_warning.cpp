// Prompt truncation warnings (see truncation_warning.h).
#include "text/truncation_warning.h"

#include <mutex>
#include <set>
#include <utility>

#include "core/log.h"

namespace fluxtrain {

bool warn_if_truncated(const std::string& encoder, const std::string& prompt, int64_t tokens,
                       int64_t capacity, const std::string& unit, const std::string& cut) {
  if (tokens <= capacity) return false;
  static std::mutex mutex;
  static std::set<std::pair<std::string, std::string>> warned;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (!warned.emplace(encoder, prompt).second) return true;
  }
  const std::string shown = prompt.size() > 60 ? prompt.substr(0, 57) + "..." : prompt;
  log_warn("prompt '{}' is {} {}; {} takes {}: the last {} are cut{}", shown, tokens, unit, encoder,
           capacity, tokens - capacity, cut.empty() ? "" : " (" + cut + ")");
  return true;
}

}  // namespace fluxtrain
