// Small string helpers shared across modules (no libtorch).
#pragma once
#include <string>

namespace fluxtrain {

// `s` without leading and trailing spaces, tabs, carriage returns and newlines.
inline std::string trim_whitespace(const std::string& s) {
  const auto a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t\r\n") - a + 1);
}

// Whether `s` begins / ends with `affix`.
inline bool starts_with(const std::string& s, const std::string& affix) {
  return s.rfind(affix, 0) == 0;
}
inline bool ends_with(const std::string& s, const std::string& affix) {
  return s.size() >= affix.size() && s.compare(s.size() - affix.size(), affix.size(), affix) == 0;
}

}  // namespace fluxtrain
